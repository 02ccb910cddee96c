//! A DataFusion session with Delta tables registered by name and lakecat's functions bound to
//! one or more model bundles.

use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use lakecat_udfs::{Device, Engine, EngineBuilder, ModelRegistry};

use crate::bundles::{BundleStore, ResolvedBundle};
use crate::storage::StorageOptions;
use crate::{Result, delta};

/// Builds a [`LakecatSession`].
#[derive(Debug, Clone, Default)]
pub struct SessionBuilder {
    tables: Vec<(String, String, Option<u64>)>,
    models: Vec<(String, String)>,
    settings: Vec<(String, String)>,
    taxonomy_store: Option<String>,
    migration_rules: Vec<(String, String, lakecat_udfs::taxonomy_versions::Rules)>,
    batch_size: Option<usize>,
    device: Device,
    storage: StorageOptions,
    cluster: Option<String>,
}

impl SessionBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the Delta table at `location` (path or URL) as `name`, at its latest version.
    pub fn with_table(self, name: impl Into<String>, location: impl Into<String>) -> Self {
        self.with_table_version(name, location, None)
    }

    /// Registers the Delta table at `location` as `name` at `version` (latest when `None`).
    pub fn with_table_version(
        mut self,
        name: impl Into<String>,
        location: impl Into<String>,
        version: Option<u64>,
    ) -> Self {
        self.tables.push((name.into(), location.into(), version));
        self
    }

    /// Loads the bundle at `location` as model `name`; the first model is the session's
    /// default. A local directory, or a bundle in object storage (`s3://models/fashion` takes
    /// its latest version, `…@VERSION` pins one; see [`crate::bundles`]).
    pub fn with_model(mut self, name: impl Into<String>, location: impl AsRef<Path>) -> Self {
        self.models.push((name.into(), location.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Options for the object stores of every table and bundle (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// Rows per ONNX Runtime call for every model (default: the engine's, 64).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Loads every taxonomy version stored at `location` (a `lakecat taxonomy` store) for
    /// `taxonomy_migrate` and `taxonomy_id`.
    pub fn with_taxonomy_store(mut self, location: impl Into<String>) -> Self {
        self.taxonomy_store = Some(location.into());
        self
    }

    /// Migration rules (old path, new path) from version `from` to `to`.
    pub fn with_migration_rules(
        mut self,
        from: impl Into<String>,
        to: impl Into<String>,
        rules: lakecat_udfs::taxonomy_versions::Rules,
    ) -> Self {
        self.migration_rules.push((from.into(), to.into(), rules));
        self
    }

    /// Runs the session's queries on the Ballista cluster whose scheduler is at `url`
    /// (`df://HOST:PORT`; see [`crate::cluster`]). Its executors load the same tables and
    /// bundles themselves.
    pub fn with_cluster(mut self, url: impl Into<String>) -> Self {
        self.cluster = Some(url.into());
        self
    }

    /// A session setting, as `SET key = value` would set it (e.g. `lakecat.fetch_timeout_secs`,
    /// `datafusion.execution.target_partitions`); checked when the session is built.
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Loads every model (refusing a bad bundle before any query runs) and registers every table.
    pub async fn build(self) -> Result<LakecatSession> {
        // A cluster session knows Ballista's settings (`ballista.*`) as well as lakecat's.
        let mut config = match &self.cluster {
            Some(_) => crate::cluster::cluster_config(),
            None => lakecat_udfs::config::session_config(),
        };
        for (key, value) in &self.settings {
            config.options_mut().set(key, value)?;
        }
        let settings = lakecat_udfs::config::LakecatOptions::from_config(config.options());
        let ctx = match &self.cluster {
            Some(url) => crate::cluster::client_context(url, config, self.storage.clone()).await?,
            None => SessionContext::new_with_config(config),
        };
        let mut registry = ModelRegistry::new().with_settings(settings);
        let store = BundleStore::new().with_storage_options(self.storage.clone());
        let mut bundles = Vec::with_capacity(self.models.len());
        for (name, location) in &self.models {
            let (bundle, engine) = load_engine(&store, location, self.device, self.batch_size).await?;
            // Named so that any machine can find it: a cluster's executors load it too.
            let location = match std::path::absolute(&bundle.dir) {
                Ok(dir) if !bundle.location.contains("://") => dir.display().to_string(),
                _ => bundle.location.clone(),
            };
            registry = registry.with_model_from(name, engine, location);
            bundles.push((name.clone(), bundle));
        }
        let models = Arc::new(registry);
        lakecat_udfs::register_all(&ctx, models.clone());
        let mut versions = lakecat_udfs::TaxonomyVersions::new();
        if let Some(location) = &self.taxonomy_store {
            let store = crate::jobs::TaxonomyStore::new(location).with_storage_options(self.storage.clone());
            let stored = store.versions().await?;
            if stored.is_empty() {
                return Err(crate::Error::Input(format!(
                    "{location} holds no taxonomy versions; add one with `lakecat taxonomy import`"
                )));
            }
            for version in stored {
                versions = versions.with_version(store.load(&version).await?);
            }
        }
        for (from, to, rules) in self.migration_rules {
            versions = versions.with_rules(from, to, rules);
        }
        lakecat_udfs::register_taxonomy_functions(&ctx, Arc::new(versions));
        let cluster = self.cluster.is_some().then(|| self.storage.clone());
        let session = LakecatSession { ctx, models, bundles, cluster };
        for (name, location, version) in &self.tables {
            session.register_table(name, &delta::open_table(location, *version, &self.storage).await?).await?;
        }
        Ok(session)
    }
}

/// Resolves the bundle at `location` (downloading a remote one into the cache) and builds its
/// engine.
pub(crate) async fn load_engine(
    store: &BundleStore,
    location: &str,
    device: Device,
    batch_size: Option<usize>,
) -> Result<(ResolvedBundle, Engine)> {
    let bundle = store.resolve(location).await?;
    let mut engine = EngineBuilder::new(&bundle.dir).with_device(device);
    if let Some(batch_size) = batch_size {
        engine = engine.with_batch_size(batch_size);
    }
    let engine = engine.build()?;
    Ok((bundle, engine))
}

/// The session and the models its functions score with.
#[derive(Clone)]
pub struct LakecatSession {
    pub ctx: SessionContext,
    pub models: Arc<ModelRegistry>,
    /// Where each model's bundle came from (model name, resolved bundle).
    pub bundles: Vec<(String, ResolvedBundle)>,
    /// On a cluster: the storage options its tables are opened with.
    cluster: Option<StorageOptions>,
}

impl LakecatSession {
    /// Registers an opened Delta table as `name` (replacing any table of that name).
    pub async fn register_table(&self, name: &str, table: &deltalake::DeltaTable) -> Result<()> {
        let location = table.table_url().to_string();
        table.update_datafusion_session(&self.ctx.state()).map_err(|source| crate::Error::delta(&location, source))?;
        let mut provider = table.table_provider().await?;
        if let Some(storage) = &self.cluster {
            let version = table.version().ok_or_else(|| crate::Error::NotATable(location.clone()))?;
            let at = crate::cluster::scan::TableAt { location, version };
            provider = Arc::new(crate::cluster::scan::ClusterTable::new(at, provider.schema(), storage.clone()));
        }
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, provider)?;
        Ok(())
    }
}
