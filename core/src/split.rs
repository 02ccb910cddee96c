//! The train/validation split, shared by training (which holds the validation rows out) and
//! `lakecat eval` (which scores exactly those rows).

use serde::{Deserialize, Serialize};

/// The deterministic train/validation split: a product is in validation when the first 8 bytes
/// of BLAKE3(`salt` ‖ product id), read as a big-endian integer, fall below `fraction` of 2⁶⁴.
/// The same id always lands on the same side, whatever else the table holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub validation_fraction: f64,
    pub salt: String,
}

impl Default for Split {
    fn default() -> Self {
        Self { validation_fraction: 0.2, salt: "lakecat-split-v1".into() }
    }
}

impl Split {
    /// The split a bundle's training run used, from its manifest's hyperparameters: `data.split`
    /// of the training configuration (`split` in bundles written before it was nested).
    pub fn recorded_in(recorded: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let split = recorded.get("data").and_then(|data| data.get("split")).or_else(|| recorded.get("split"))?;
        serde_json::from_value(split.clone()).ok()
    }

    pub fn is_validation(&self, id: &str) -> bool {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.salt.as_bytes());
        hasher.update(id.as_bytes());
        let digest = hasher.finalize();
        let head = u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("a BLAKE3 digest has 32 bytes"));
        (head as f64) < self.validation_fraction * u64::MAX as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bundles record the split under `data` (the nested training configuration); older ones
    /// at the top of their hyperparameters.
    #[test]
    fn the_split_is_read_from_old_and_new_manifests() {
        let split = serde_json::json!({"validation_fraction": 0.25, "salt": "s"});
        let expected = Split { validation_fraction: 0.25, salt: "s".into() };
        for recorded in [serde_json::json!({"data": {"split": split}}), serde_json::json!({"split": split})] {
            assert_eq!(Split::recorded_in(recorded.as_object().unwrap()), Some(expected.clone()));
        }
        assert_eq!(Split::recorded_in(&serde_json::Map::new()), None);
    }

    #[test]
    fn split_is_deterministic_and_near_its_fraction() {
        let split = Split::default();
        let validation = (0..10_000).filter(|i| split.is_validation(&i.to_string())).count();
        assert!((1_800..2_200).contains(&validation), "{validation}");
        assert_eq!(split.is_validation("15970"), split.is_validation("15970"));
        let other = Split { salt: "other".into(), ..Split::default() };
        let moved = (0..1_000).filter(|i| split.is_validation(&i.to_string()) != other.is_validation(&i.to_string()));
        assert!(moved.count() > 100, "the salt changes the split");
    }

    /// Pinned membership: a change to the hash, the salt or the comparison would move products
    /// between training and validation (and every reported metric with them).
    #[test]
    fn known_ids_stay_on_their_side_of_the_split() {
        let split = Split::default();
        let sample = ["10102", "10223", "10240", "10257", "10300", "10303", "10393", "10632", "14063", "45245"];
        let validation: Vec<&str> = sample.into_iter().filter(|id| split.is_validation(id)).collect();
        assert_eq!(validation, ["10632"]);
        let small: Vec<u32> = (0..60).filter(|i| split.is_validation(&i.to_string())).collect();
        assert_eq!(small, [2, 5, 7, 11, 12, 18, 19, 20, 27, 33, 36, 46, 49, 52, 55, 59]);
        assert_eq!((0..10_000).filter(|i| split.is_validation(&i.to_string())).count(), 1968);
    }
}
