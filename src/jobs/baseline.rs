//! Fits the closed-form baseline model on a Delta table snapshot (see
//! `lakecat_training::baseline`) and records the table and version it was trained on.

use std::path::{Path, PathBuf};

use lakecat_training::{BaselineReport, BaselineTrainer};

use super::{SnapshotAt, SnapshotColumns, TrainingSnapshot};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct BaselineJob {
    table: String,
    version: Option<u64>,
    filter: Option<String>,
    bundle_dir: PathBuf,
    trainer: BaselineTrainer,
    storage: crate::StorageOptions,
}

impl BaselineJob {
    /// Trains on the Delta table at `table` (written by `lakecat import`) into `bundle_dir`.
    pub fn new(table: impl Into<String>, bundle_dir: impl AsRef<Path>) -> Self {
        Self {
            table: table.into(),
            version: None,
            filter: None,
            bundle_dir: bundle_dir.as_ref().to_path_buf(),
            trainer: BaselineTrainer::default(),
            storage: crate::StorageOptions::default(),
        }
    }

    /// Options for the object stores of every table this job reads and writes (see
    /// [`crate::storage`]).
    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// Trains on this table version instead of the latest.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// A SQL predicate selecting the training rows (e.g. a split on a hash of `product_id`).
    pub fn with_filter(mut self, predicate: impl Into<String>) -> Self {
        self.filter = Some(predicate.into());
        self
    }

    pub fn with_trainer(mut self, trainer: BaselineTrainer) -> Self {
        self.trainer = trainer;
        self
    }

    pub async fn execute(self) -> Result<BaselineReport> {
        let at = self.version.map_or(SnapshotAt::Latest, SnapshotAt::Version);
        let snapshot = TrainingSnapshot::load(
            &self.table,
            &at,
            self.filter.as_deref(),
            &SnapshotColumns::default(),
            &self.storage,
        )
        .await?;
        if snapshot.rows() == 0 {
            let filter = self.filter.as_deref().map(|predicate| format!(" WHERE {predicate}")).unwrap_or_default();
            return Err(Error::Input(format!("{}{filter} has no rows to train on", self.table)));
        }
        Ok(self.trainer.with_training_source(snapshot.source()).fit(&snapshot.examples(), &self.bundle_dir)?)
    }
}
