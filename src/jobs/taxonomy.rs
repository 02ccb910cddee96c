//! Named taxonomy versions kept in a Delta table, so that labels, pruned taxonomies and models
//! can say which version they use. One row per category: version, category_id, name,
//! parent_id, depth, path (`A > B > C`). A version, once stored, is never changed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::protocol::SaveMode;
use lakecat_core::{Node, Pruned, Taxonomy};

use crate::storage::StorageOptions;
use crate::{Error, Result, SessionBuilder, delta};

/// The taxonomy versions stored at one Delta table location.
#[derive(Debug, Clone)]
pub struct TaxonomyStore {
    location: String,
    storage: StorageOptions,
}

impl TaxonomyStore {
    pub fn new(location: impl Into<String>) -> Self {
        Self { location: location.into(), storage: StorageOptions::default() }
    }

    /// Options for the object store the store lives in (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    async fn exists(&self) -> Result<bool> {
        delta::table_exists(&self.location, &self.storage).await
    }

    /// A plain DataFusion session over the store (no lakecat functions: sessions load stores).
    async fn session(&self) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let table = delta::open_table(&self.location, None, &self.storage).await?;
        table.update_datafusion_session(&ctx.state()).map_err(|source| Error::delta(&self.location, source))?;
        ctx.register_table("taxonomies", table.table_provider().await?)?;
        Ok(ctx)
    }

    /// Stored versions, oldest first.
    pub async fn versions(&self) -> Result<Vec<String>> {
        if !self.exists().await? {
            return Ok(Vec::new());
        }
        let ctx = self.session().await?;
        let batches = ctx
            .sql("SELECT version, min(stored_at) AS stored FROM taxonomies GROUP BY version ORDER BY stored, version")
            .await?
            .collect()
            .await?;
        let mut versions = Vec::new();
        for batch in &batches {
            let names = cast(batch.column(0), &DataType::Utf8)?;
            versions.extend(names.as_string::<i32>().iter().flatten().map(str::to_string));
        }
        Ok(versions)
    }

    /// Stores `taxonomy` under its version; refuses a version that is already stored.
    pub async fn save(&self, taxonomy: &Taxonomy) -> Result<u64> {
        if self.versions().await?.iter().any(|version| version == taxonomy.version()) {
            return Err(Error::Input(format!(
                "{}: taxonomy version {:?} is already stored, and stored versions never change; pick another `name`",
                self.location,
                taxonomy.version()
            )));
        }
        delta::write_table(&self.location, vec![to_batch(taxonomy)?], SaveMode::Append, &self.storage).await
    }

    /// The stored taxonomy `version`.
    pub async fn load(&self, version: &str) -> Result<Taxonomy> {
        let nodes = if self.exists().await? { self.nodes(version).await? } else { Vec::new() };
        if nodes.is_empty() {
            // Only an error needs the list of what is stored.
            let known = self.versions().await?;
            return Err(Error::Input(format!(
                "{}: no taxonomy version {version:?} (stored: {}); add one with `lakecat taxonomy import`",
                self.location,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
        Ok(Taxonomy::new(version, nodes)?)
    }

    /// The rows of `version` as nodes (none when it is not stored).
    async fn nodes(&self, version: &str) -> Result<Vec<Node>> {
        let ctx = self.session().await?;
        let batches = ctx
            .table("taxonomies")
            .await?
            .filter(col("version").eq(lit(version)))?
            .select_columns(&["category_id", "name", "parent_id"])?
            .collect()
            .await?;
        let mut nodes = Vec::new();
        for batch in &batches {
            let ids = cast(batch.column(0), &DataType::Int64)?;
            let names = cast(batch.column(1), &DataType::Utf8)?;
            let parents = cast(batch.column(2), &DataType::Int64)?;
            let (ids, names, parents) =
                (ids.as_primitive::<Int64Type>(), names.as_string::<i32>(), parents.as_primitive::<Int64Type>());
            for row in 0..batch.num_rows() {
                nodes.push(Node {
                    id: ids.value(row) as u32,
                    name: names.value(row).to_string(),
                    parent: parents.is_valid(row).then(|| parents.value(row) as u32),
                });
            }
        }
        Ok(nodes)
    }
}

fn to_batch(taxonomy: &Taxonomy) -> Result<RecordBatch> {
    let nodes = taxonomy.nodes();
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::Utf8, false),
        Field::new("category_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("depth", DataType::UInt32, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("is_leaf", DataType::Boolean, false),
        Field::new(
            "stored_at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let now = chrono::Utc::now().timestamp_micros();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(nodes.iter().map(|_| taxonomy.version()))),
            Arc::new(Int64Array::from_iter_values(nodes.iter().map(|node| i64::from(node.id)))),
            Arc::new(StringArray::from_iter_values(nodes.iter().map(|node| node.name.as_str()))),
            Arc::new(Int64Array::from_iter(nodes.iter().map(|node| node.parent.map(i64::from)))),
            Arc::new(UInt32Array::from_iter_values(
                nodes.iter().map(|node| taxonomy.depth(node.id).unwrap_or(0) as u32),
            )),
            Arc::new(StringArray::from_iter_values(nodes.iter().map(|node| taxonomy.path(node.id).join(" > ")))),
            Arc::new(arrow::array::BooleanArray::from_iter(nodes.iter().map(|node| Some(taxonomy.is_leaf(node.id))))),
            Arc::new(arrow::array::TimestampMicrosecondArray::from_value(now, nodes.len()).with_timezone("UTC")),
        ],
    )?)
}

/// Rows per category path (`A > B > C`) in `column` of the Delta table at `labels`; NULL and
/// empty labels are counted apart.
pub async fn label_counts(labels: &str, column: &str, storage: &StorageOptions) -> Result<(HashMap<String, u64>, u64)> {
    let ctx =
        SessionBuilder::new().with_storage_options(storage.clone()).with_table("labels", labels).build().await?.ctx;
    let schema = ctx.table("labels").await?.schema().as_arrow().clone();
    crate::jobs::require_columns(&schema, labels, &[("label", column, "`label_column`")])?;
    let sql = format!(
        "SELECT CAST({} AS VARCHAR) AS label, count(*) AS n FROM labels GROUP BY 1",
        crate::jobs::quote(column)
    );
    let mut counts = HashMap::new();
    let mut unlabelled = 0;
    for batch in ctx.sql(&sql).await?.collect().await? {
        let labels = cast(batch.column(0), &DataType::Utf8)?;
        let n = cast(batch.column(1), &DataType::Int64)?;
        for (label, n) in labels.as_string::<i32>().iter().zip(n.as_primitive::<Int64Type>().iter()) {
            let n = n.unwrap_or(0) as u64;
            match label.map(str::trim).filter(|label| !label.is_empty()) {
                Some(label) => *counts.entry(label.to_string()).or_default() += n,
                None => unlabelled += n,
            }
        }
    }
    Ok((counts, unlabelled))
}

/// The prune report as a table: one row per original category (and per new "Other" leaf).
pub fn prune_report_batch(pruned: &Pruned, version: &str) -> Result<RecordBatch> {
    let rows = &pruned.report;
    let schema = Arc::new(Schema::new(vec![
        Field::new("category_id", DataType::Int64, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("rows_before", DataType::Int64, false),
        Field::new("rows_after", DataType::Int64, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("merged_into", DataType::Int64, true),
        Field::new("pruned_version", DataType::Utf8, false),
    ]));
    let action = |row: &lakecat_core::PruneRow| match row.action {
        lakecat_core::PruneAction::Kept => "kept",
        lakecat_core::PruneAction::MergedInto(_) => "merged",
        lakecat_core::PruneAction::Dropped => "dropped",
    };
    let merged_into = |row: &lakecat_core::PruneRow| match row.action {
        lakecat_core::PruneAction::MergedInto(into) => Some(i64::from(into)),
        _ => None,
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| i64::from(row.id)))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.path.join(" > ")))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.rows_before as i64))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.rows_after as i64))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(action))),
            Arc::new(Int64Array::from_iter(rows.iter().map(merged_into))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| version))),
        ],
    )?)
}

/// Prunes a taxonomy to what the labels of a Delta table can train (see `lakecat_core::prune`).
#[derive(Debug, Clone)]
pub struct PruneJob {
    labels: String,
    label_column: String,
    base: Option<(TaxonomyStore, String)>,
    pruner: lakecat_core::Pruner,
    version: String,
    save_to: Option<TaxonomyStore>,
    report_table: Option<String>,
    storage: StorageOptions,
}

/// The pruned taxonomy, its report, and the rows that had no label.
#[derive(Debug, Clone)]
pub struct PruneOutcome {
    pub pruned: Pruned,
    pub unlabelled: u64,
}

impl PruneJob {
    /// Prunes by the labels (`A > B > C` paths) in `label_column` of the table at `labels`; the
    /// result is named `version`.
    pub fn new(labels: impl Into<String>, pruner: lakecat_core::Pruner, version: impl Into<String>) -> Self {
        Self {
            labels: labels.into(),
            label_column: "category".into(),
            base: None,
            pruner,
            version: version.into(),
            save_to: None,
            report_table: None,
            storage: StorageOptions::default(),
        }
    }

    /// Options for the object store of the labels and report tables (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    pub fn with_label_column(mut self, column: impl Into<String>) -> Self {
        self.label_column = column.into();
        self
    }

    /// Prunes this stored taxonomy (default: the tree the labels themselves form); every label
    /// must be one of its categories.
    pub fn with_taxonomy(mut self, store: TaxonomyStore, version: impl Into<String>) -> Self {
        self.base = Some((store, version.into()));
        self
    }

    /// Stores the pruned taxonomy there under the job's version.
    pub fn with_save_to(mut self, store: TaxonomyStore) -> Self {
        self.save_to = Some(store);
        self
    }

    /// Writes the before/after report to this Delta table (appended).
    pub fn with_report_table(mut self, location: impl Into<String>) -> Self {
        self.report_table = Some(location.into());
        self
    }

    pub async fn execute(self) -> Result<PruneOutcome> {
        let (labels, unlabelled) = label_counts(&self.labels, &self.label_column, &self.storage).await?;
        if labels.is_empty() {
            return Err(Error::Input(format!("{}: no row has a label in {:?}", self.labels, self.label_column)));
        }
        let taxonomy = match &self.base {
            Some((store, version)) => store.load(version).await?,
            None => Taxonomy::from_paths(
                format!("labels of {}", self.labels),
                labels.keys().map(|label| lakecat_core::taxonomy::split_path(label)),
            )?,
        };
        let mut counts: HashMap<u32, u64> = HashMap::new();
        let mut unknown: Vec<(&String, &u64)> = Vec::new();
        for (label, rows) in &labels {
            match taxonomy.find_path(&lakecat_core::taxonomy::split_path(label)) {
                Some(id) => *counts.entry(id).or_default() += rows,
                None => unknown.push((label, rows)),
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            let examples: Vec<String> =
                unknown.iter().take(5).map(|(label, rows)| format!("{label:?} ({rows} rows)")).collect();
            return Err(Error::Input(format!(
                "{} labels are not categories of taxonomy {:?}, e.g. {}; migrate them first or prune the labels' own tree",
                unknown.len(),
                taxonomy.version(),
                examples.join(", ")
            )));
        }
        let pruned = self.pruner.prune(&taxonomy, &counts, &self.version)?;
        if let Some(store) = &self.save_to {
            store.save(&pruned.taxonomy).await?;
        }
        if let Some(location) = &self.report_table {
            delta::write_table(
                location,
                vec![prune_report_batch(&pruned, &self.version)?],
                SaveMode::Append,
                &self.storage,
            )
            .await?;
        }
        Ok(PruneOutcome { pruned, unlabelled })
    }
}
