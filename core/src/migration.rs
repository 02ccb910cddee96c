//! Moving labels and predictions from one taxonomy version to another. A category keeps its
//! path when the new version has it; rules say what else happened (a rename, a merge: several
//! rules into one target; a split: one source into several targets). A rule on a category also
//! carries its subcategories along (`A > B => C` maps `A > B > D` to `C > D` when that exists,
//! else to `C`, marked as broader). Anything else is unmapped, and a split cannot be decided from the label alone:
//! both are reported, never guessed.

use std::collections::HashMap;

use crate::taxonomy::Taxonomy;
use crate::{Error, Result};

/// Where one category of the old version goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    To(u32),
    /// A rule moved its parent, but the new version has no category for it below the rule's
    /// target: it lands on that broader category (or the nearest one on the way down).
    Broader(u32),
    /// Split into these categories: the label alone cannot say which.
    Split(Vec<u32>),
    Unmapped,
}

/// The mapping from one taxonomy version to another.
#[derive(Debug, Clone)]
pub struct Migration {
    from_version: String,
    to_version: String,
    targets: HashMap<u32, Migrated>,
}

impl Migration {
    /// Builds the mapping; `rules` are (old path, new path) pairs.
    pub fn new(from: &Taxonomy, to: &Taxonomy, rules: &[(Vec<String>, Vec<String>)]) -> Result<Self> {
        let mut by_rule: HashMap<u32, Vec<u32>> = HashMap::new();
        for (old, new) in rules {
            let missing = |path: &Vec<String>, version: &str| {
                Error::Taxonomy(format!("migration rule: taxonomy {version:?} has no category {:?}", path.join(" > ")))
            };
            let old_id = from.find_path(old).ok_or_else(|| missing(old, from.version()))?;
            let new_id = to.find_path(new).ok_or_else(|| missing(new, to.version()))?;
            let targets = by_rule.entry(old_id).or_default();
            if !targets.contains(&new_id) {
                targets.push(new_id);
            }
        }
        let mut targets = HashMap::with_capacity(from.len());
        for node in from.nodes() {
            let lineage = from.lineage(node.id);
            // The deepest category on the way down that a rule names, and what is below it.
            let ruled = lineage.iter().enumerate().rev().find_map(|(depth, id)| by_rule.get(id).map(|t| (depth, t)));
            let migrated = match ruled {
                Some((_, rule_targets)) if rule_targets.len() > 1 => Migrated::Split(rule_targets.clone()),
                Some((depth, rule_targets)) => {
                    let target = rule_targets[0];
                    let below: Vec<&str> = lineage[depth + 1..]
                        .iter()
                        .filter_map(|id| from.node(*id).map(|node| node.name.as_str()))
                        .collect();
                    let mut path: Vec<&str> = to.path(target);
                    path.extend(below);
                    match to.find_path(&path) {
                        Some(found) => Migrated::To(found),
                        None => Migrated::Broader(target),
                    }
                }
                None => to.find_path(&from.path(node.id)).map_or(Migrated::Unmapped, Migrated::To),
            };
            targets.insert(node.id, migrated);
        }
        Ok(Self { from_version: from.version().to_string(), to_version: to.version().to_string(), targets })
    }

    pub fn from_version(&self) -> &str {
        &self.from_version
    }

    pub fn to_version(&self) -> &str {
        &self.to_version
    }

    /// Where category `id` of the old version goes (`Unmapped` for an id it does not have).
    pub fn migrate(&self, id: u32) -> Migrated {
        self.targets.get(&id).cloned().unwrap_or(Migrated::Unmapped)
    }

    /// The reverse mapping's rules: for every old category mapped to exactly one new one,
    /// (new path, old path); what a round trip back needs.
    pub fn reverse_rules(&self, from: &Taxonomy, to: &Taxonomy) -> Vec<(Vec<String>, Vec<String>)> {
        let mut rules: Vec<(Vec<String>, Vec<String>)> = self
            .targets
            .iter()
            .filter_map(|(old, migrated)| match migrated {
                Migrated::To(new) => Some((owned(to.path(*new)), owned(from.path(*old)))),
                _ => None,
            })
            .collect();
        rules.sort();
        rules
    }
}

fn owned(path: Vec<&str>) -> Vec<String> {
    path.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::split_path;

    fn taxonomy(version: &str, paths: &[&str]) -> Taxonomy {
        Taxonomy::from_paths(version, paths.iter().map(|path| split_path(path))).unwrap()
    }

    fn rule(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
        (split_path(old), split_path(new))
    }

    #[test]
    fn same_paths_renames_merges_splits_and_the_unmapped() {
        let v1 = taxonomy(
            "v1",
            &[
                "Apparel > Topwear > Shirts",
                "Apparel > Topwear > Tops",
                "Apparel > Socks",
                "Footwear > Sandal > Sandals",
                "Toys",
            ],
        );
        let v2 = taxonomy(
            "v2",
            &["Clothing > Upper > Shirts", "Clothing > Upper > Blouses", "Footwear > Sandals", "Footwear > Slides"],
        );
        let migration = Migration::new(
            &v1,
            &v2,
            &[
                rule("Apparel", "Clothing"),
                rule("Apparel > Topwear", "Clothing > Upper"),
                rule("Apparel > Topwear > Tops", "Clothing > Upper > Blouses"),
                rule("Footwear > Sandal > Sandals", "Footwear > Sandals"),
                rule("Footwear > Sandal > Sandals", "Footwear > Slides"),
            ],
        )
        .unwrap();
        let old = |path: &str| v1.find_path(&split_path(path)).unwrap();
        let new = |path: &str| v2.find_path(&split_path(path)).unwrap();
        // Carried along under a renamed parent.
        assert_eq!(
            migration.migrate(old("Apparel > Topwear > Shirts")),
            Migrated::To(new("Clothing > Upper > Shirts"))
        );
        assert_eq!(migration.migrate(old("Apparel > Topwear > Tops")), Migrated::To(new("Clothing > Upper > Blouses")));
        assert_eq!(migration.migrate(old("Footwear")), Migrated::To(new("Footwear")));
        assert_eq!(migration.migrate(old("Apparel > Socks")), Migrated::Broader(new("Clothing")));
        assert_eq!(
            migration.migrate(old("Footwear > Sandal > Sandals")),
            Migrated::Split(vec![new("Footwear > Sandals"), new("Footwear > Slides")])
        );
        assert_eq!(migration.migrate(old("Footwear > Sandal")), Migrated::Unmapped);
        assert_eq!(migration.migrate(old("Toys")), Migrated::Unmapped);
        assert_eq!(migration.migrate(999), Migrated::Unmapped);
        let bad = Migration::new(&v1, &v2, &[rule("Apparel", "Garments")]).unwrap_err();
        assert!(bad.to_string().contains("taxonomy \"v2\" has no category \"Garments\""), "{bad}");
    }

    #[test]
    fn round_trip_through_the_reverse_rules() {
        let v1 = taxonomy("v1", &["A > B > C", "A > B > D", "E"]);
        let v2 = taxonomy("v2", &["X > B > C", "X > B > D", "E"]);
        let forward = Migration::new(&v1, &v2, &[rule("A", "X")]).unwrap();
        let back = Migration::new(&v2, &v1, &forward.reverse_rules(&v1, &v2)).unwrap();
        for node in v1.nodes() {
            let Migrated::To(there) = forward.migrate(node.id) else { panic!("{:?} unmapped", v1.path(node.id)) };
            assert_eq!(back.migrate(there), Migrated::To(node.id), "{:?}", v1.path(node.id));
        }
    }
}
