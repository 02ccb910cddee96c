//! Session settings of lakecat's functions, set in SQL with `SET lakecat.<name> = <value>`.
//! Every value is checked when it is set: a value out of range is refused by `SET` with the
//! range in the message, so no later query can fail (or panic) because of it.

use std::path::Path;

use datafusion::common::config::{ConfigEntry, ConfigExtension, DATAFUSION_FFI_CONFIG_NAMESPACE, ExtensionOptions};
use datafusion::common::{config_err, extensions_options};
use datafusion::config::ConfigOptions;
use datafusion::prelude::SessionConfig;

use crate::allow_list::{AllowList, canonical_root};

extensions_options! {
    /// lakecat's settings; every one can be changed per session with `SET lakecat.<name> = …`.
    pub struct LakecatOptions {
        /// `confident_path` ends at the deepest category whose probability (the sum over its
        /// leaves) reaches this threshold.
        pub confidence_threshold: f64, default = 0.5
        /// Number of alternatives in `top_k`.
        pub top_k: usize, default = 3
        /// Image fetches in flight at once per batch.
        pub fetch_concurrency: usize, default = 32
        /// Seconds before one image request gives up (per attempt for object stores).
        pub fetch_timeout_secs: f64, default = 30.0
        /// Retries of a transient object-store failure (5xx, 429, timeout, dropped connection),
        /// with exponential backoff.
        pub fetch_retries: usize, default = 3
        /// The largest image, in bytes, that is read (checked against Content-Length first, then
        /// while streaming). A larger one is that row's `refused` error.
        pub max_image_bytes: usize, default = 16 * 1024 * 1024
        /// Whether `http://` and `https://` image URIs may be fetched.
        pub allow_http: bool, default = false
        /// Directory that relative image paths are resolved against (default: the current one).
        /// Without `allowed_locations`, local images must lie under it.
        pub image_root: String, default = String::new()
        /// Comma-separated prefixes that image URIs must start with, e.g.
        /// `s3://bucket/images/, /data/images`. Empty: local files under `image_root`, any
        /// s3/gs/az location, and http(s) hosts except link-local and metadata addresses.
        pub allowed_locations: String, default = String::new()
    }
}

/// The bounds of the numeric settings: (name, lowest, highest).
const RANGES: [(&str, f64, f64); 6] = [
    ("confidence_threshold", 0.0, 1.0),
    ("top_k", 0.0, 1000.0),
    ("fetch_concurrency", 1.0, 1024.0),
    ("fetch_timeout_secs", 0.001, 3600.0),
    ("fetch_retries", 0.0, 10.0),
    ("max_image_bytes", 1.0, 1024.0 * 1024.0 * 1024.0),
];

impl LakecatOptions {
    /// The session's lakecat settings, or the defaults when the session did not register them.
    pub fn from_config(config: &ConfigOptions) -> Self {
        config.extensions.get::<CheckedOptions>().map(|checked| checked.0.clone()).unwrap_or_default()
    }

    /// The settings a function scores with: the session's own when it registered them (every
    /// lakecat session does); otherwise `defaults`, with the `lakecat.*` values of a host
    /// session that reached the function through DataFusion's FFI (datafusion-python, where
    /// `SET lakecat.top_k = 5` lands in the FFI namespace) laid over them, each checked as
    /// `SET` checks it.
    pub fn resolve(config: &ConfigOptions, defaults: &LakecatOptions) -> datafusion::error::Result<Self> {
        if let Some(checked) = config.extensions.get::<CheckedOptions>() {
            return Ok(checked.0.clone());
        }
        let mut checked = CheckedOptions(defaults.clone());
        let foreign = config.extensions.iter().filter(|(prefix, _)| *prefix == DATAFUSION_FFI_CONFIG_NAMESPACE);
        let namespace = format!("{DATAFUSION_FFI_CONFIG_NAMESPACE}.");
        let prefix = format!("{}.", CheckedOptions::PREFIX);
        for (_, extension) in foreign {
            for entry in extension.entries() {
                // Crossing the FFI prefixes each key with its namespace once more.
                let key = entry.key.strip_prefix(&namespace).unwrap_or(&entry.key);
                if let (Some(key), Some(value)) = (key.strip_prefix(&prefix), entry.value) {
                    checked.set(key, &value)?;
                }
            }
        }
        Ok(checked.0)
    }

    /// `Err` names the first setting out of its range and says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            self.confidence_threshold,
            self.top_k as f64,
            self.fetch_concurrency as f64,
            self.fetch_timeout_secs,
            self.fetch_retries as f64,
            self.max_image_bytes as f64,
        ];
        for ((name, low, high), value) in RANGES.iter().zip(values) {
            // NaN fails both comparisons, so it is refused too.
            if !(value >= *low && value <= *high) {
                return Err(format!("lakecat.{name} must be between {low} and {high}"));
            }
        }
        if !self.image_root.is_empty() {
            canonical_root(Path::new(&self.image_root)).map_err(|message| format!("lakecat.image_root: {message}"))?;
        }
        AllowList::parse(&self.allowed_locations, Path::new("/"))?;
        Ok(())
    }

    /// The settings that change what `categorize` returns for a row (which rows are refused,
    /// how many alternatives, where the confident path stops), as one stable string: a
    /// predictions table records it, and a refresh rescores the rows scored with other values.
    /// Concurrency, timeouts and retries are left out: they change only transient errors,
    /// which a refresh retries anyway.
    pub fn scoring_identity(&self) -> String {
        serde_json::json!({
            "allow_http": self.allow_http,
            "allowed_locations": self.allowed_locations,
            "confidence_threshold": self.confidence_threshold,
            "image_root": self.image_root,
            "max_image_bytes": self.max_image_bytes,
            "top_k": self.top_k,
        })
        .to_string()
    }
}

/// What a session registers: [`LakecatOptions`], validated on every `SET`. A refused value
/// leaves the setting as it was.
#[derive(Debug, Clone, Default)]
pub struct CheckedOptions(LakecatOptions);

impl ExtensionOptions for CheckedOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        let mut next = self.0.clone();
        ExtensionOptions::set(&mut next, key, value).map_err(|error| {
            datafusion::error::DataFusionError::Configuration(format!("lakecat.{key} = {value:?}: {error}"))
        })?;
        if let Err(message) = next.validate() {
            return config_err!("{message}; got {value:?}");
        }
        self.0 = next;
        Ok(())
    }

    /// Full names (`lakecat.top_k`), so `information_schema.df_settings` and `SHOW` list them
    /// as they are SET; DataFusion adds no prefix to an extension's entries.
    fn entries(&self) -> Vec<ConfigEntry> {
        let mut entries = self.0.entries();
        for entry in &mut entries {
            entry.key = format!("{}.{}", Self::PREFIX, entry.key);
        }
        entries
    }
}

impl ConfigExtension for CheckedOptions {
    const PREFIX: &'static str = "lakecat";
}

/// A session config with lakecat's settings registered and `information_schema` enabled (where
/// the functions' documentation is listed).
///
/// Leaf-expression pushdown is off: in DataFusion 55 it rewrites
/// `SELECT c.a, c.b FROM (SELECT categorize(…) AS c …)` into one `get_field(categorize(…))` per
/// field, so the model runs once per field selected (apache/datafusion#23655, fixed upstream by
/// #23691). Its gain, reading one field of a struct column from Parquet, is small next to that.
pub fn session_config() -> SessionConfig {
    let mut config =
        SessionConfig::new().with_information_schema(true).with_option_extension(CheckedOptions::default());
    config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    config
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// What a host session carries through DataFusion's FFI: full keys under one namespace.
    #[derive(Debug, Clone, Default)]
    struct ForeignOptions(BTreeMap<String, String>);

    impl ExtensionOptions for ForeignOptions {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
        fn cloned(&self) -> Box<dyn ExtensionOptions> {
            Box::new(self.clone())
        }
        fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
            self.0.insert(key.to_string(), value.to_string());
            Ok(())
        }
        fn entries(&self) -> Vec<ConfigEntry> {
            let entry = |(key, value): (&String, &String)| ConfigEntry {
                key: key.clone(),
                value: Some(value.clone()),
                description: "",
            };
            self.0.iter().map(entry).collect()
        }
    }

    impl ConfigExtension for ForeignOptions {
        const PREFIX: &'static str = DATAFUSION_FFI_CONFIG_NAMESPACE;
    }

    fn foreign(entries: &[(&str, &str)]) -> ConfigOptions {
        let mut options = ForeignOptions::default();
        for (key, value) in entries {
            options.0.insert(key.to_string(), value.to_string());
        }
        let mut config = ConfigOptions::default();
        config.extensions.insert(options);
        config
    }

    #[test]
    fn a_session_of_its_own_wins_over_defaults() {
        let mut config = session_config();
        config.options_mut().set("lakecat.top_k", "7").unwrap();
        let defaults = LakecatOptions { top_k: 1, ..Default::default() };
        assert_eq!(LakecatOptions::resolve(config.options(), &defaults).unwrap().top_k, 7);
    }

    #[test]
    fn foreign_values_are_laid_over_the_defaults_and_checked() {
        let defaults = LakecatOptions { top_k: 1, confidence_threshold: 0.9, ..Default::default() };
        let config = foreign(&[("lakecat.top_k", "5"), ("other.setting", "x")]);
        let crossed = foreign(&[("datafusion_ffi.lakecat.top_k", "5")]);
        assert_eq!(LakecatOptions::resolve(&crossed, &defaults).unwrap().top_k, 5);
        let resolved = LakecatOptions::resolve(&config, &defaults).unwrap();
        assert_eq!((resolved.top_k, resolved.confidence_threshold), (5, 0.9));

        let without = LakecatOptions::resolve(&ConfigOptions::default(), &defaults).unwrap();
        assert_eq!(without.top_k, 1);

        let error = LakecatOptions::resolve(&foreign(&[("lakecat.top_k", "5000")]), &defaults).unwrap_err();
        assert!(error.to_string().contains("lakecat.top_k must be between 0 and 1000"), "{error}");
    }
}
