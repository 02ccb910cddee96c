//! Session settings of lakecat's functions, set in SQL with `SET lakecat.<name> = <value>`.

use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;
use datafusion::config::ConfigOptions;
use datafusion::prelude::SessionConfig;

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

impl ConfigExtension for LakecatOptions {
    const PREFIX: &'static str = "lakecat";
}

impl LakecatOptions {
    /// The session's lakecat settings, or the defaults when the session did not register them.
    pub fn from_config(config: &ConfigOptions) -> Self {
        config.extensions.get::<Self>().cloned().unwrap_or_default()
    }
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
        SessionConfig::new().with_information_schema(true).with_option_extension(LakecatOptions::default());
    config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    config
}
