//! Evaluating a bundle on a Delta table snapshot (`lakecat eval`), and the snapshot reader that
//! training shares. Builds without the training crate: metrics, the split and the confusion
//! picture are `lakecat_core`'s.
//!
//! A [`TrainingSnapshot`] pins the table version (given, or the one current at a timestamp, or
//! the latest) and records it in the bundle manifest, so a model always says what it learnt from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use lakecat_core::metrics::{ClassMetrics, Confusion, Metrics, Scored};
use lakecat_core::split::Split;
use lakecat_core::taxonomy::split_path;
use lakecat_core::{Bundle, Taxonomy, TrainingSource};
use serde::Serialize;

use super::{quote, require_columns};
use crate::bundles::BundleStore;
use crate::storage::StorageOptions;
use crate::{Error, Result, SessionBuilder};

/// Which version of the table to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotAt {
    #[default]
    Latest,
    Version(u64),
    /// The version current at this RFC 3339 timestamp.
    Timestamp(String),
}

/// The columns training reads; defaults are those `lakecat import` writes.
#[derive(Debug, Clone)]
pub struct SnapshotColumns {
    pub id: String,
    /// Image bytes; `None` trains without images.
    pub image: Option<String>,
    pub title: String,
    pub description: Option<String>,
    /// The category: a list of names (top level first) or a string path `A > B > C`.
    pub label: String,
}

impl Default for SnapshotColumns {
    fn default() -> Self {
        Self {
            id: "product_id".into(),
            image: Some("image".into()),
            title: "title".into(),
            description: Some("description".into()),
            label: "category_path".into(),
        }
    }
}

/// Rows of one table version, in the shape training reads.
#[derive(Debug)]
pub struct TrainingSnapshot {
    location: String,
    version: u64,
    /// product_id, image, title, description: Utf8/Binary; label: List<Utf8>.
    pub(crate) batches: Vec<RecordBatch>,
}

impl TrainingSnapshot {
    /// Reads `location` at `at`, keeping the rows that match the SQL `filter`.
    pub async fn load(
        location: &str,
        at: &SnapshotAt,
        filter: Option<&str>,
        columns: &SnapshotColumns,
        storage: &StorageOptions,
    ) -> Result<Self> {
        let version = match at {
            SnapshotAt::Latest => None,
            SnapshotAt::Version(version) => Some(*version),
            SnapshotAt::Timestamp(timestamp) => Some(crate::delta::version_at(location, timestamp, storage).await?),
        };
        let table = crate::delta::open_table(location, version, storage).await?;
        let version = table.version().ok_or_else(|| Error::Input(format!("{location} has no committed version")))?;
        let session = SessionBuilder::new().build().await?;
        session.register_table("training_data", &table).await?;
        let schema = session.ctx.table("training_data").await?.schema().as_arrow().clone();
        let mut required = vec![
            ("product id", columns.id.as_str(), "`id_column`"),
            ("title", columns.title.as_str(), "`title_column`"),
        ];
        required.push(("label", columns.label.as_str(), "`label_column`"));
        if let Some(image) = &columns.image {
            required.push(("image", image.as_str(), "`image_column` (or `no_images`)"));
        }
        if let Some(description) = &columns.description {
            required.push(("description", description.as_str(), "`description_column`"));
        }
        require_columns(&schema, location, &required)?;
        if let Some(image) = &columns.image {
            let data_type = schema.field_with_name(image)?.data_type();
            if !matches!(data_type, DataType::Binary | DataType::BinaryView | DataType::LargeBinary) {
                return Err(Error::Input(format!(
                    "{location}: training reads image bytes, but column {image:?} is {data_type}; import the images \
                     into the table (`lakecat import --images`) or train on text alone (`no_images`)"
                )));
            }
        }
        let optional = |column: &Option<String>| column.as_deref().map_or("NULL".to_string(), quote);
        let filter = filter.map(|predicate| format!(" WHERE {predicate}")).unwrap_or_default();
        let sql = format!(
            "SELECT CAST({} AS VARCHAR), {}, {}, {}, {} FROM training_data{filter}",
            quote(&columns.id),
            optional(&columns.image),
            quote(&columns.title),
            optional(&columns.description),
            quote(&columns.label)
        );
        let batches = session.ctx.sql(&sql).await?.collect().await?;
        let batches = batches.iter().map(normalize).collect::<Result<Vec<_>>>()?;
        Ok(Self { location: location.to_string(), version, batches })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn source(&self) -> TrainingSource {
        TrainingSource { table_uri: self.location.clone(), delta_version: Some(self.version), rows: self.rows() as u64 }
    }
}

/// The category path of `row` (empty when NULL).
pub(crate) fn label_at(labels: &arrow::array::ListArray, row: usize) -> Vec<String> {
    if labels.is_valid(row) {
        labels.value(row).as_string::<i32>().iter().flatten().map(str::to_string).collect()
    } else {
        Vec::new()
    }
}

/// Delta scans return view types; training reads plain Utf8 / Binary / List<Utf8>. A string
/// label (`A > B > C` or `A >> B >> C`) becomes the list of its names.
fn normalize(batch: &RecordBatch) -> Result<RecordBatch> {
    let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let names = ["product_id", "image", "title", "description", "label"];
    let targets = [DataType::Utf8, DataType::Binary, DataType::Utf8, DataType::Utf8];
    let mut columns = batch.columns()[..4]
        .iter()
        .zip(&targets)
        .map(|(column, target)| cast(column, target))
        .collect::<Result<Vec<_>, _>>()?;
    let label = batch.column(4);
    let label = match label.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let strings = cast(label, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let mut builder = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
            for value in strings {
                match value {
                    Some(path) => builder.append_value(split_path(path).into_iter().map(Some)),
                    None => builder.append_null(),
                }
            }
            Arc::new(builder.finish()) as Arc<dyn Array>
        }
        _ => cast(label, &list)?,
    };
    columns.push(label);
    let fields: Vec<Field> = names
        .iter()
        .zip(columns.iter())
        .map(|(name, column)| Field::new(*name, column.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Which rows `lakecat eval` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EvalRows {
    /// The bundle's validation split (by its recorded split); all rows if it records none.
    #[default]
    Validation,
    /// The bundle's training split.
    Train,
    All,
}

/// What `lakecat eval` measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub table: String,
    pub version: u64,
    pub rows: String,
    pub metrics: Metrics,
    pub per_class: Vec<ClassMetrics>,
    /// Reason → rows not evaluated.
    pub skipped: BTreeMap<String, usize>,
    #[serde(skip)]
    pub confusion: Confusion,
    #[serde(skip)]
    pub taxonomy: Taxonomy,
}

/// `lakecat eval`: scores a labelled table with a bundle through `categorize` (the same path as
/// analysts' SQL) and compares with the labels.
#[derive(Debug, Clone)]
pub struct EvalJob {
    bundle: String,
    table: String,
    at: SnapshotAt,
    filter: Option<String>,
    columns: SnapshotColumns,
    rows: EvalRows,
    output: Option<String>,
    storage: StorageOptions,
}

impl EvalJob {
    /// Evaluates the bundle at `bundle` (a directory or a location in object storage, see
    /// [`crate::bundles`]) on the table at `table`.
    pub fn new(bundle: impl AsRef<Path>, table: impl Into<String>) -> Self {
        Self {
            bundle: bundle.as_ref().to_string_lossy().into_owned(),
            table: table.into(),
            at: SnapshotAt::Latest,
            filter: None,
            columns: SnapshotColumns::default(),
            rows: EvalRows::Validation,
            output: None,
            storage: StorageOptions::default(),
        }
    }

    /// Also writes `eval.json` and `confusion-matrix.png` (grouped by parent, rows normalised)
    /// to `location`: a directory, or a prefix in object storage (written to a scratch
    /// directory, then uploaded), as training writes its reports next to the bundle.
    pub fn with_output(mut self, location: impl Into<String>) -> Self {
        self.output = Some(location.into());
        self
    }

    /// Options for the object stores of the table and the bundle (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    pub fn with_snapshot(mut self, at: SnapshotAt) -> Self {
        self.at = at;
        self
    }

    pub fn with_filter(mut self, predicate: impl Into<String>) -> Self {
        self.filter = Some(predicate.into());
        self
    }

    pub fn with_columns(mut self, columns: SnapshotColumns) -> Self {
        self.columns = columns;
        self
    }

    pub fn with_rows(mut self, rows: EvalRows) -> Self {
        self.rows = rows;
        self
    }

    pub async fn execute(self) -> Result<EvalReport> {
        let resolved = BundleStore::new().with_storage_options(self.storage.clone()).resolve(&self.bundle).await?;
        let bundle = Bundle::load(&resolved.dir)?;
        let split = Split::recorded_in(&bundle.manifest().hyperparameters);
        let mut columns = self.columns.clone();
        if bundle.image().is_none() {
            columns.image = None;
        }
        let snapshot =
            TrainingSnapshot::load(&self.table, &self.at, self.filter.as_deref(), &columns, &self.storage).await?;
        let session = SessionBuilder::new().with_model("model", &resolved.dir).build().await?;
        let taxonomy = bundle.taxonomy().clone();
        let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
        let mut scored = Vec::new();
        let rows_label = match (self.rows, &split) {
            (EvalRows::All, _) | (_, None) => "all",
            (EvalRows::Validation, Some(_)) => "validation split",
            (EvalRows::Train, Some(_)) => "training split",
        };
        for batch in &snapshot.batches {
            let keep: Vec<bool> = batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .map(|id| match (self.rows, &split, id) {
                    (EvalRows::All, _, _) | (_, None, _) => true,
                    (_, Some(_), None) => false,
                    (rows, Some(split), Some(id)) => split.is_validation(id) == (rows == EvalRows::Validation),
                })
                .collect();
            let batch = arrow::compute::filter_record_batch(batch, &keep.into())?;
            if batch.num_rows() == 0 {
                continue;
            }
            session.ctx.deregister_table("eval_rows")?;
            session.ctx.register_batch("eval_rows", batch.clone())?;
            let predictions = session
                .ctx
                .sql("SELECT c.category_id, c.top_k, c.error FROM (SELECT categorize(image, title, description) AS c FROM eval_rows)")
                .await?
                .collect()
                .await?;
            let labels = batch.column(4).as_list::<i32>();
            let mut row = 0;
            for prediction in &predictions {
                let top_k = prediction.column(1).as_list::<i32>();
                let errors = cast(prediction.column(2), &DataType::Utf8)?;
                let errors = errors.as_string::<i32>();
                for index in 0..prediction.num_rows() {
                    let label = label_at(labels, row);
                    row += 1;
                    let Some(truth) = truth_class(&taxonomy, &label) else {
                        let reason = if label.is_empty() { "no label" } else { "label not in the model's taxonomy" };
                        *skipped.entry(reason.into()).or_default() += 1;
                        continue;
                    };
                    if errors.is_valid(index) {
                        *skipped.entry(format!("not scored: {}", errors.value(index))).or_default() += 1;
                        continue;
                    }
                    let ranked: Vec<u32> = if top_k.is_valid(index) {
                        let alternatives = top_k.value(index);
                        let ids = cast(
                            alternatives.as_struct().column_by_name("category_id").expect("top_k has ids"),
                            &DataType::Int64,
                        )?;
                        ids.as_primitive::<arrow::datatypes::Int64Type>().iter().flatten().map(|id| id as u32).collect()
                    } else {
                        Vec::new()
                    };
                    scored.push(Scored { truth, ranked });
                }
            }
        }
        if scored.is_empty() {
            return Err(Error::Input(format!(
                "no rows of {} to evaluate ({rows_label}); skipped: {skipped:?}",
                self.table
            )));
        }
        let confusion = Confusion::new(bundle.classes().to_vec(), &scored);
        let report = EvalReport {
            model: bundle.fingerprint().to_string(),
            table: self.table.clone(),
            version: snapshot.version(),
            rows: rows_label.into(),
            metrics: Metrics::compute(&taxonomy, &scored),
            per_class: confusion.per_class(&taxonomy),
            skipped,
            confusion,
            taxonomy,
        };
        if let Some(output) = &self.output {
            write_eval_outputs(&report, output, &self.storage).await?;
        }
        Ok(report)
    }
}

/// eval.json and confusion-matrix.png of `report` at `output` (local, or uploaded from scratch).
async fn write_eval_outputs(report: &EvalReport, output: &str, storage: &StorageOptions) -> Result<()> {
    let staging =
        if crate::storage::is_remote_location(output)? { Some(crate::storage::StagingDir::new()?) } else { None };
    let dir = staging.as_ref().map_or_else(|| Path::new(output).to_path_buf(), |staging| staging.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|source| Error::io(dir.display(), source))?;
    let json = serde_json::to_vec_pretty(report).map_err(|error| Error::Input(format!("eval.json: {error}")))?;
    let path = dir.join("eval.json");
    std::fs::write(&path, json).map_err(|source| Error::io(path.display(), source))?;
    let title = format!("{} on {} ({}, {} rows)", report.model, report.table, report.rows, report.metrics.rows);
    lakecat_core::plots::confusion_matrix(
        &report.confusion,
        &report.taxonomy,
        &title,
        &dir.join("confusion-matrix.png"),
    )?;
    if staging.is_some() {
        crate::storage::upload_dir(&dir, output, "eval.json", false, storage).await?;
    }
    Ok(())
}

/// The model class a label counts for: its node in the model's (pruned) taxonomy, or the
/// nearest ancestor that survived pruning, or that ancestor's "Other …" leaf.
fn truth_class(taxonomy: &Taxonomy, label: &[String]) -> Option<u32> {
    (1..=label.len()).rev().find_map(|depth| {
        let node = taxonomy.find_path(&label[..depth])?;
        if taxonomy.is_leaf(node) {
            return Some(node);
        }
        let mut other = label[..depth].to_vec();
        other.push(format!("Other {}", label[depth - 1]));
        taxonomy.find_path(&other)
    })
}
