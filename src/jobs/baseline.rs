//! Fits the closed-form baseline model on a Delta table snapshot (see
//! `lakecat_training::baseline`) and records the table and version it was trained on.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field};
use lakecat_core::TrainingSource;
use lakecat_training::{BaselineReport, BaselineTrainer, Example};
use std::sync::Arc;

use crate::{Error, Result, SessionBuilder};

#[derive(Debug, Clone)]
pub struct BaselineJob {
    table: String,
    version: Option<u64>,
    filter: Option<String>,
    bundle_dir: PathBuf,
    trainer: BaselineTrainer,
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
        }
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
        let session =
            SessionBuilder::new().with_table_version("training_data", &self.table, self.version).build().await?;
        let version = crate::delta::open_table(&self.table, self.version).await?.version();
        let filter = self.filter.as_deref().map(|predicate| format!(" WHERE {predicate}")).unwrap_or_default();
        let sql = format!("SELECT image, title, description, category_path FROM training_data{filter}");
        let batches = session.ctx.sql(&sql).await?.collect().await?;
        let batches = batches.iter().map(normalize).collect::<Result<Vec<_>>>()?;
        let mut examples = Vec::new();
        for batch in &batches {
            let images = batch.column(0).as_binary::<i32>();
            let titles = batch.column(1).as_string::<i32>();
            let descriptions = batch.column(2).as_string::<i32>();
            let labels = batch.column(3).as_list::<i32>();
            for row in 0..batch.num_rows() {
                let label = if labels.is_valid(row) {
                    labels.value(row).as_string::<i32>().iter().flatten().map(str::to_string).collect()
                } else {
                    Vec::new()
                };
                examples.push(Example {
                    image: images.is_valid(row).then(|| images.value(row)),
                    title: titles.is_valid(row).then(|| titles.value(row)),
                    description: descriptions.is_valid(row).then(|| descriptions.value(row)),
                    label,
                });
            }
        }
        if examples.is_empty() {
            return Err(Error::Input(format!("{}{filter} has no rows to train on", self.table)));
        }
        let source =
            TrainingSource { table_uri: self.table.clone(), delta_version: version, rows: examples.len() as u64 };
        Ok(self.trainer.with_training_source(source).fit(&examples, &self.bundle_dir)?)
    }
}

/// Delta scans return view types; the trainer reads plain Binary / Utf8 / List<Utf8>.
fn normalize(batch: &RecordBatch) -> Result<RecordBatch> {
    let targets = [
        DataType::Binary,
        DataType::Utf8,
        DataType::Utf8,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
    ];
    let columns = batch
        .columns()
        .iter()
        .zip(&targets)
        .map(|(column, target)| cast(column, target))
        .collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&targets)
        .map(|(field, target)| Field::new(field.name(), target.clone(), true))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)?)
}
