//! The scheduled refresh: keeps a predictions Delta table in step with a products table,
//! scoring only what changed and writing with MERGE keyed on product id.
//!
//! Why a crash can never duplicate or lose a row: every chunk is one Delta commit (all of it or
//! nothing), a chunk is appended only when none of its ids is in the table and MERGEd on product
//! id otherwise (so no id is inserted twice), and which rows still need scoring
//! is recomputed from the table itself (content hash and model fingerprint) at the start of
//! every run. A killed run leaves the table at its last commit; the next run scores the rest.
//! Commits carry the application transaction `lakecat-refresh` (the run number) and the run's
//! source version, model and chunk in their commit info.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionContext, col};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::errors::DeltaTableError;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use lakecat_core::{Progress, Quiet};
use lakecat_udfs::Device;
use lakecat_udfs::config::LakecatOptions;
use lakecat_udfs::error::Stage;
use lakecat_udfs::prediction::prediction_fields;
use serde::Serialize;

use crate::jobs::{image_column, quote, require_columns};
use crate::{Error, LakecatSession, Result, SessionBuilder, delta};

/// The application id of refresh commits; its version counts the runs.
pub const APP_ID: &str = "lakecat-refresh";
/// The largest share of a predictions table `--delete-missing` deletes without `--force-delete`.
pub const MAX_DELETE_FRACTION: f64 = 0.5;
/// The key of a refresh's record in each commit's info.
pub const COMMIT_INFO_KEY: &str = "lakecat.refresh";

const CHANGES_SQL: &str = include_str!("../../sql/refresh/changes.sql");
const SCORE_SQL: &str = include_str!("../../sql/refresh/score.sql");
const MISSING_SQL: &str = include_str!("../../sql/refresh/missing.sql");
const DUPLICATES_SQL: &str = include_str!("../../sql/refresh/duplicates.sql");

/// Scores the products at `source` into the predictions table at `target` with `model`.
#[derive(Debug, Clone)]
pub struct RefreshJob {
    source: String,
    source_version: Option<u64>,
    target: String,
    model: String,
    id_column: String,
    image_column: Option<String>,
    chunk_rows: usize,
    delete_missing: bool,
    max_delete_fraction: f64,
    force_delete: bool,
    batch_size: Option<usize>,
    device: Device,
    settings: Vec<(String, String)>,
    max_attempts: usize,
    storage: crate::StorageOptions,
    cluster: Option<String>,
    progress: Arc<dyn Progress>,
}

/// What a refresh did; printed at the end and, with `--json`, for schedulers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshReport {
    pub source: String,
    pub source_version: u64,
    pub target: String,
    /// The predictions table's version after the run.
    pub target_version: u64,
    pub model: String,
    /// This run's number (the `lakecat-refresh` application transaction version).
    pub run: i64,
    /// Products in the source table.
    pub scanned: u64,
    /// Rows scored and written.
    pub scored: u64,
    /// Rows whose prediction was already current.
    pub skipped: u64,
    /// Products with a NULL id: they cannot be keyed, so they are not scored (see the warning).
    pub without_id: u64,
    /// Scored rows whose `error` is set (they are written too; fetch errors are retried next run).
    pub failed: u64,
    /// Of those, the rows whose image could not be fetched (retried next run; rows `refused`
    /// by policy are not).
    pub fetch_errors: u64,
    /// The scoring settings of this run (`lakecat.top_k`, `confidence_threshold`, the fetch
    /// policy), as recorded in the table's `scored_with` column: rows scored with others are
    /// rescored.
    pub scored_with: String,
    /// The source version, model and settings are those of the complete run that wrote the
    /// table's latest commit: nothing was read.
    pub source_unchanged: bool,
    /// Predictions removed because their product is gone (`with_delete_missing`).
    pub deleted: u64,
    /// Table versions this run committed, one per chunk.
    pub commits: Vec<u64>,
    /// Times the run started over because another writer committed first.
    pub conflicts: u32,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Peak resident memory of the process (Linux), bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Why one attempt stopped: another writer won (start over) or anything else.
enum Stop {
    Conflict(String),
    Failed(Error),
}

impl<E: Into<Error>> From<E> for Stop {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

impl RefreshJob {
    /// `model` is a bundle directory or a bundle in object storage (see [`crate::bundles`]).
    pub fn new(source: impl Into<String>, target: impl Into<String>, model: impl AsRef<std::path::Path>) -> Self {
        Self {
            source: source.into(),
            source_version: None,
            target: target.into(),
            model: model.as_ref().to_string_lossy().into_owned(),
            id_column: "product_id".into(),
            image_column: None,
            chunk_rows: 10_000,
            delete_missing: false,
            max_delete_fraction: MAX_DELETE_FRACTION,
            force_delete: false,
            batch_size: None,
            device: Device::Auto,
            settings: Vec::new(),
            max_attempts: 5,
            storage: crate::StorageOptions::default(),
            cluster: None,
            progress: Arc::new(Quiet),
        }
    }

    /// Options for the object stores of the source, the target and the bundle (see
    /// [`crate::storage`]).
    /// Where progress and warnings go (default: nowhere; the CLI renders them).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// Reads this version of the products table instead of the latest.
    pub fn with_source_version(mut self, version: u64) -> Self {
        self.source_version = Some(version);
        self
    }

    /// The products table's key (default `product_id`); unique per row.
    pub fn with_id_column(mut self, column: impl Into<String>) -> Self {
        self.id_column = column.into();
        self
    }

    /// The image column (bytes or URIs); default `image`, else `image_uri`.
    pub fn with_image_column(mut self, column: impl Into<String>) -> Self {
        self.image_column = Some(column.into());
        self
    }

    /// Rows per commit (default 10,000): a crash loses at most this much scoring work, and the
    /// run holds at most this many predictions in memory.
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows.max(1);
        self
    }

    /// Also deletes predictions whose product is no longer in the source table.
    pub fn with_delete_missing(mut self, delete: bool) -> Self {
        self.delete_missing = delete;
        self
    }

    /// Rows per ONNX Runtime call.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Scores on the Ballista cluster at `url` (`df://HOST:PORT`); this process still compares
    /// and commits, so the predictions table is written from one place.
    pub fn with_cluster(mut self, url: impl Into<String>) -> Self {
        self.cluster = Some(url.into());
        self
    }

    /// How much `with_delete_missing` may delete: refuse when more than `max_fraction` of the
    /// table's predictions (or any, from an empty source) would go, unless `force`. A wrong
    /// path or a truncated snapshot reads as "every product is gone".
    pub fn with_delete_guard(mut self, max_fraction: f64, force: bool) -> Self {
        self.max_delete_fraction = max_fraction;
        self.force_delete = force;
        self
    }

    /// A session setting such as `lakecat.allowed_locations` or `lakecat.fetch_timeout_secs`.
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// How many times the run starts over when a concurrent writer commits first (default 5).
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub async fn execute(self) -> Result<RefreshReport> {
        let started = Instant::now();
        let source_table = delta::open_table(&self.source, self.source_version, &self.storage).await?;
        let mut builder = SessionBuilder::new()
            .with_storage_options(self.storage.clone())
            .with_model("model", &self.model)
            .with_device(self.device)
            // score.sql names the small side (changed ids and hashes) first: keep that order, and
            // collect it once instead of hash-partitioning both sides, so the products, images
            // included, stream through the join without being copied into partitions.
            .with_setting("datafusion.optimizer.join_reordering", "false")
            .with_setting("datafusion.optimizer.hash_join_single_partition_threshold", usize::MAX.to_string())
            .with_setting("datafusion.optimizer.hash_join_single_partition_threshold_rows", usize::MAX.to_string())
            .with_setting("datafusion.execution.batch_size", self.chunk_rows.min(1024).to_string());
        if let Some(batch_size) = self.batch_size {
            builder = builder.with_batch_size(batch_size);
        }
        if let Some(url) = &self.cluster {
            builder = builder.with_cluster(url);
        }
        for (key, value) in &self.settings {
            builder = builder.with_setting(key, value);
        }
        let session = builder.build().await?;
        session.register_table("products", &source_table).await?;
        let (id_type, images_by_uri) = self.create_source_view(&session.ctx).await?;

        let engine = session.models.get(None)?;
        let depth = engine.bundle().taxonomy().max_depth();
        let mut report = RefreshReport {
            source: self.source.clone(),
            source_version: source_table.version().unwrap_or_default(),
            target: self.target.clone(),
            model: engine.bundle().fingerprint().to_string(),
            scored_with: LakecatOptions::from_config(session.ctx.state().config_options()).scoring_identity(),
            ..RefreshReport::default()
        };
        // The source version is fixed for the run: count once, not per attempt. The total comes
        // from the Delta log's statistics (no data file is read).
        report.scanned = count(&session.ctx, "SELECT count(*) FROM source").await?;
        let schema = predictions_schema(&id_type, depth);
        let mut source_checked = false;
        loop {
            match self.attempt(&session, &schema, images_by_uri, &mut source_checked, &mut report).await {
                Ok(()) => break,
                Err(Stop::Conflict(message)) if (report.conflicts as usize) + 1 < self.max_attempts => {
                    report.conflicts += 1;
                    self.progress.log(&format!("refresh: {message}; starting over from the table's new version"));
                    // Give the other writer time to finish before comparing again.
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(report.conflicts))).await;
                }
                Err(Stop::Conflict(message)) => {
                    return Err(Error::Refresh(format!(
                        "{message}; gave up after {} attempts ({}). Another refresh of {} is probably running; run again when it has finished",
                        self.max_attempts,
                        committed(&report.commits),
                        self.target
                    )));
                }
                Err(Stop::Failed(error)) if report.commits.is_empty() => return Err(error),
                Err(Stop::Failed(error)) => {
                    return Err(Error::Refresh(format!(
                        "{error} ({}; a new run continues from there)",
                        committed(&report.commits)
                    )));
                }
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        report.rows_per_second = report.scored as f64 / report.seconds.max(1e-9);
        report.peak_rss_bytes = peak_rss_bytes();
        Ok(report)
    }

    /// Registers `source` (product_id, title, description, image, image_version) over the
    /// products table and returns the type of product_id and whether images are named by URI.
    async fn create_source_view(&self, ctx: &SessionContext) -> Result<(DataType, bool)> {
        let schema = ctx.table("products").await?.schema().as_arrow().clone();
        let image = image_column(&schema, self.image_column.as_deref());
        require_columns(
            &schema,
            &self.source,
            &[
                ("id", &self.id_column, "`id_column`"),
                ("image", &image, "`image_column`"),
                ("title", "title", "`lakecat import --title`"),
                ("description", "description", "`lakecat import --description`"),
            ],
        )?;
        let id_type = schema.field_with_name(&self.id_column)?.data_type().clone();
        // Images named by URI can change behind the same URI: their object version (one HEAD
        // each, no bytes read) is part of the content hash.
        let by_uri = matches!(
            schema.field_with_name(&image)?.data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        );
        let version = if by_uri { format!("image_version({})", quote(&image)) } else { "CAST(NULL AS VARCHAR)".into() };
        let sql = format!(
            "CREATE VIEW source AS SELECT {} AS product_id, title, description, {} AS image, {version} AS image_version \
             FROM products",
            quote(&self.id_column),
            quote(&image)
        );
        ctx.sql(&sql).await?.collect().await?;
        // Delta scans return view types; the predictions table stores the plain ones.
        Ok((crate::delta::plain_type(&id_type), by_uri))
    }

    /// One pass: compare, score the changes chunk by chunk, delete what is gone.
    async fn attempt(
        &self,
        session: &LakecatSession,
        schema: &SchemaRef,
        images_by_uri: bool,
        source_checked: &mut bool,
        report: &mut RefreshReport,
    ) -> Result<(), Stop> {
        let ctx = &session.ctx;
        let mut target = open_or_create_target(&self.target, schema, &self.storage).await?;
        register_target(session, &target).await?;
        let previous_run = target
            .snapshot()
            .map_err(|source| Error::delta(&self.target, source))?
            .transaction_version(target.log_store().as_ref(), APP_ID)
            .await
            .map_err(|source| Error::delta(&self.target, source))?;
        report.run = previous_run.unwrap_or(0) + 1;
        // Rows that failed to fetch in an attempt that lost a race are fetched again in this one.
        report.fetch_errors = 0;
        // An unchanged source version says nothing about images behind URIs: those are checked.
        let current = if images_by_uri { None } else { self.target_is_current(&target, report).await? };
        if let Some(without_id) = current {
            report.without_id = without_id;
            report.skipped = report.scanned - report.without_id;
            report.source_unchanged = true;
            report.target_version = target.version().unwrap_or_default();
            return Ok(());
        }
        // Only a run that reads the source checks its ids (the skipped run above reads no data file).
        if !*source_checked {
            self.check_source(ctx, report).await?;
            *source_checked = true;
        }

        let changes = ctx
            .sql(CHANGES_SQL)
            .await?
            .with_param_values(vec![
                ScalarValue::Utf8(Some(report.model.clone())),
                ScalarValue::Utf8(Some(report.scored_with.clone())),
            ])?
            .collect()
            .await?;
        let changed: usize = changes.iter().map(RecordBatch::num_rows).sum();
        report.skipped = report.scanned.saturating_sub(changed as u64 + report.without_id);
        let missing = if self.delete_missing { count(ctx, MISSING_SQL).await? } else { 0 };
        let delete = missing > 0;
        if delete {
            // Before anything is scored or written: a refused run changes nothing.
            self.check_delete(ctx, missing, report).await?;
        }
        ctx.deregister_table("changes")?;
        if changed > 0 {
            let changes_schema = changes[0].schema();
            ctx.register_table("changes", Arc::new(MemTable::try_new(changes_schema, vec![changes])?))?;
            target = self.score_changes(ctx, target, schema, changed, !delete, report).await?;
        }
        if delete {
            let ids = ctx.sql("SELECT DISTINCT product_id FROM source").await?;
            let (table, metrics) = target
                .merge(ids, col("target.product_id").eq(col("source.product_id")))
                .with_source_alias("source")
                .with_target_alias("target")
                .with_commit_properties(self.commit_properties(report, None, true))
                .when_not_matched_by_source_delete(|delete| delete)
                .map_err(|source| Error::delta(&self.target, source))?
                .await
                .map_err(|source| self.commit_error(source))?;
            report.deleted = metrics.num_target_rows_deleted as u64;
            report.commits.extend(table.version());
            target = table;
        }
        report.target_version = target.version().unwrap_or_default();
        Ok(())
    }

    /// The mass-delete guard of `with_delete_guard`.
    async fn check_delete(&self, ctx: &SessionContext, missing: u64, report: &RefreshReport) -> Result<()> {
        if self.force_delete {
            return Ok(());
        }
        let held = count(ctx, "SELECT count(*) FROM target").await?;
        let source = format!("{} (version {})", self.source, report.source_version);
        if report.scanned == 0 {
            return Err(Error::Refresh(format!(
                "refusing to delete: {source} has no products, so `delete_missing` would delete all {held} \
                 predictions in {}; check the source path and version, or set `force_delete` if it really is empty",
                self.target
            )));
        }
        if missing as f64 > self.max_delete_fraction * held as f64 {
            return Err(Error::Refresh(format!(
                "refusing to delete: `delete_missing` would delete {missing} of the {held} predictions in {} \
                 ({:.0}%, over `max_delete_fraction` {}), as {source} has {} products; check the source, \
                 or set `force_delete` (or a higher `max_delete_fraction`) if so many products are really gone",
                self.target,
                100.0 * missing as f64 / held.max(1) as f64,
                self.max_delete_fraction,
                report.scanned
            )));
        }
        Ok(())
    }

    /// Products without an id (counted and reported) and repeated ids (refused).
    async fn check_source(&self, ctx: &SessionContext, report: &mut RefreshReport) -> Result<()> {
        report.without_id = count(ctx, "SELECT count(*) FROM source WHERE product_id IS NULL").await?;
        if report.without_id > 0 {
            self.progress.log(&format!(
                "refresh: warning: {} products of {} have a NULL {} and are not scored; give them ids",
                report.without_id, self.source, self.id_column
            ));
        }
        check_unique_ids(ctx, &self.source).await
    }

    /// Whether the table's latest commit is the last of a complete refresh of this very source
    /// version with this model (and columns, and deletion rule), with no failed fetch to retry:
    /// then nothing can have changed and no row needs to be read. `Some(products without an
    /// id)`, as that run counted them, when it is.
    async fn target_is_current(&self, target: &DeltaTable, report: &RefreshReport) -> Result<Option<u64>> {
        let latest =
            target.history(Some(1)).next().await.transpose().map_err(|source| Error::delta(&self.target, source))?;
        let Some(info) = latest.and_then(|commit| commit.info.get(COMMIT_INFO_KEY).cloned()) else {
            return Ok(None);
        };
        let expected = self.run_identity(report);
        let same = expected
            .as_object()
            .is_some_and(|expected| expected.iter().all(|(key, value)| info.get(key) == Some(value)));
        let deleted_as_asked =
            info.get("delete_missing") == Some(&serde_json::Value::Bool(true)) || !self.delete_missing;
        let complete = info.get("complete") == Some(&serde_json::Value::Bool(true));
        let no_fetch_errors = info.get("fetch_errors").and_then(serde_json::Value::as_u64) == Some(0);
        let without_id = info.get("without_id").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok((same && deleted_as_asked && complete && no_fetch_errors).then_some(without_id))
    }

    /// What makes two runs score the same rows the same way.
    fn run_identity(&self, report: &RefreshReport) -> serde_json::Value {
        serde_json::json!({
            "source": self.source,
            "source_version": report.source_version,
            "model": report.model,
            "scored_with": report.scored_with,
            "id_column": self.id_column,
            "image_column": self.image_column,
        })
    }

    /// Streams the changed products through `categorize` and commits every `chunk_rows`. A full
    /// chunk is committed when the next row arrives, so the run's last commit is known to be the
    /// last and says so (`final_commit`: no deletion follows).
    async fn score_changes(
        &self,
        ctx: &SessionContext,
        mut target: DeltaTable,
        schema: &SchemaRef,
        changed: usize,
        final_commit: bool,
        report: &mut RefreshReport,
    ) -> Result<DeltaTable, Stop> {
        let progress = &self.progress;
        progress.start("refresh: scoring", Some(changed as u64));
        progress.detail(&format!("{} unchanged", report.skipped));
        let mut stream = ctx.sql(SCORE_SQL).await?.execute_stream().await?;
        let mut chunk = Chunk::default();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let new_ids = named(&batch, "is_new")?.as_boolean().clone();
            let batch = to_predictions(&batch, schema, &report.scored_with)?;
            let (failed, fetch_failed) = count_errors(&batch)?;
            report.failed += failed;
            report.fetch_errors += fetch_failed;
            let mut offset = 0;
            while offset < batch.num_rows() {
                if chunk.rows == self.chunk_rows {
                    target = self.commit_chunk(ctx, target, std::mem::take(&mut chunk), false, report).await?;
                }
                let take = (self.chunk_rows - chunk.rows).min(batch.num_rows() - offset);
                chunk.push(batch.slice(offset, take), &new_ids.slice(offset, take));
                offset += take;
            }
            report.scored += batch.num_rows() as u64;
            progress.advance(batch.num_rows() as u64);
            progress.detail(&format!("{} unchanged, {} failed", report.skipped, report.failed));
        }
        if chunk.rows > 0 {
            target = self.commit_chunk(ctx, target, chunk, final_commit, report).await?;
        }
        progress.finish();
        Ok(target)
    }

    /// One commit. A chunk of products the table did not hold when this attempt compared is
    /// appended; any other is MERGEd on product id. Appending is safe against a concurrent
    /// refresh because every refresh commit carries the `lakecat-refresh` application
    /// transaction, and Delta refuses two concurrent commits of one application id
    /// (ConcurrentTransaction): the loser starts over and finds those ids present. It keeps a
    /// first run from re-reading the growing table once per chunk.
    async fn commit_chunk(
        &self,
        ctx: &SessionContext,
        target: DeltaTable,
        chunk: Chunk,
        final_commit: bool,
        report: &mut RefreshReport,
    ) -> Result<DeltaTable, Stop> {
        let (rows, all_new) = (chunk.rows, chunk.all_new);
        let batches = align_to_target(chunk.batches, &target)?;
        let properties = self.commit_properties(report, Some(rows), final_commit);
        if all_new {
            let table = target
                .write(batches)
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
                .with_commit_properties(properties)
                .await
                .map_err(|source| self.commit_error(source))?;
            report.commits.extend(table.version());
            return Ok(table);
        }
        let columns: Vec<String> = batches[0].schema().fields().iter().map(|field| field.name().clone()).collect();
        let source = ctx.read_batches(batches)?;
        let (table, _metrics) = target
            .merge(source, col("target.product_id").eq(col("source.product_id")))
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            .with_commit_properties(properties)
            .when_matched_update(|update| {
                columns
                    .iter()
                    .filter(|name| name.as_str() != "product_id")
                    .fold(update, |update, name| update.update(name.as_str(), col(format!("source.{name}"))))
            })
            .map_err(|source| Error::delta(&self.target, source))?
            .when_not_matched_insert(|insert| {
                columns.iter().fold(insert, |insert, name| insert.set(name.as_str(), col(format!("source.{name}"))))
            })
            .map_err(|source| Error::delta(&self.target, source))?
            .await
            .map_err(|source| self.commit_error(source))?;
        report.commits.extend(table.version());
        Ok(table)
    }

    /// The run's application transaction and its commit info: who, from what, which chunk, and
    /// on the run's last commit `complete` (what a later run checks to skip reading anything).
    fn commit_properties(&self, report: &RefreshReport, rows: Option<usize>, final_commit: bool) -> CommitProperties {
        let mut info = self.run_identity(report);
        if let Some(info) = info.as_object_mut() {
            info.insert("run".into(), report.run.into());
            info.insert("chunk".into(), report.commits.len().into());
            info.insert("rows".into(), rows.into());
            info.insert("delete_missing".into(), self.delete_missing.into());
            info.insert("complete".into(), final_commit.into());
            info.insert("fetch_errors".into(), report.fetch_errors.into());
            info.insert("without_id".into(), report.without_id.into());
        }
        CommitProperties::default()
            .with_application_transaction(Transaction::new(APP_ID, report.run))
            .with_metadata([(COMMIT_INFO_KEY.to_string(), info)])
    }

    /// A lost race with another writer is a conflict (start over); anything else fails the run.
    fn commit_error(&self, source: DeltaTableError) -> Stop {
        match &source {
            DeltaTableError::Transaction {
                source:
                    TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_),
            }
            | DeltaTableError::VersionAlreadyExists(_) => {
                Stop::Conflict(format!("another writer committed to {} first ({source})", self.target))
            }
            _ => Stop::Failed(Error::delta(&self.target, source)),
        }
    }
}

/// Predictions waiting for their commit, and whether all of them are new to the table.
struct Chunk {
    batches: Vec<RecordBatch>,
    rows: usize,
    all_new: bool,
}

impl Default for Chunk {
    fn default() -> Self {
        Self { batches: Vec::new(), rows: 0, all_new: true }
    }
}

impl Chunk {
    fn push(&mut self, batch: RecordBatch, new_ids: &arrow::array::BooleanArray) {
        self.all_new &= new_ids.true_count() == new_ids.len();
        self.rows += batch.num_rows();
        self.batches.push(batch);
    }
}

/// (rows with an error, rows with a fetch error) of a predictions batch, from `error_stage`.
fn count_errors(batch: &RecordBatch) -> Result<(u64, u64)> {
    let Some(stages) = batch.column_by_name("error_stage") else { return Ok((0, 0)) };
    let stages = cast(stages, &DataType::Utf8)?;
    let stages = stages.as_string::<i32>();
    let failed = (stages.len() - stages.null_count()) as u64;
    let fetch = stages.iter().flatten().filter(|stage| *stage == Stage::Fetch.name()).count() as u64;
    Ok((failed, fetch))
}

fn committed(commits: &[u64]) -> String {
    match (commits.first(), commits.last()) {
        (Some(first), Some(last)) if first == last => format!("this run committed version {first}"),
        (Some(first), Some(last)) => format!("this run committed versions {first}..={last}"),
        _ => "this run committed nothing".to_string(),
    }
}

/// product_id, title, description, every field of `categorize`'s struct, content_hash, scored_at.
pub fn predictions_schema(id_type: &DataType, depth: usize) -> SchemaRef {
    let mut fields = vec![
        Field::new("product_id", id_type.clone(), false),
        Field::new("title", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
    ];
    fields.extend(prediction_fields(depth).iter().map(|field| field.as_ref().clone()));
    fields.push(Field::new("content_hash", DataType::Utf8, false));
    // Nullable: tables written before it existed gain it on their next refresh.
    fields.push(Field::new("scored_with", DataType::Utf8, true));
    fields.push(Field::new("scored_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false));
    Arc::new(Schema::new(fields))
}

/// A column of score.sql's result, by name.
fn named<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::Refresh(format!("score.sql returned no column {name:?}")))
}

/// Flattens score.sql's rows (product_id, title, description, prediction, content_hash, is_new)
/// into the predictions schema.
fn to_predictions(batch: &RecordBatch, schema: &SchemaRef, scored_with: &str) -> Result<RecordBatch> {
    let prediction = named(batch, "prediction")?.as_struct();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for name in ["product_id", "title", "description"] {
        columns.push(cast(named(batch, name)?, schema.field_with_name(name)?.data_type())?);
    }
    columns.extend(prediction.columns().iter().cloned());
    columns.push(cast(named(batch, "content_hash")?, &DataType::Utf8)?);
    columns.push(Arc::new(arrow::array::StringArray::from_iter_values(std::iter::repeat_n(
        scored_with,
        batch.num_rows(),
    ))));
    let now = chrono::Utc::now().timestamp_micros();
    columns.push(Arc::new(TimestampMicrosecondArray::from_value(now, batch.num_rows()).with_timezone("UTC")));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Adds NULL columns for the target's columns that this model does not produce (e.g. a level
/// the previous model's taxonomy had), so an update leaves no stale value behind.
fn align_to_target(chunk: Vec<RecordBatch>, target: &DeltaTable) -> Result<Vec<RecordBatch>> {
    let location = target.table_url().to_string();
    let target_schema = target.snapshot().map_err(|source| Error::delta(&location, source))?.snapshot().arrow_schema();
    let Some(first) = chunk.first() else { return Ok(chunk) };
    let missing: Vec<&Arc<Field>> =
        target_schema.fields().iter().filter(|field| first.schema().field_with_name(field.name()).is_err()).collect();
    if missing.is_empty() {
        return Ok(chunk);
    }
    let mut fields: Vec<Field> = first.schema().fields().iter().map(|field| field.as_ref().clone()).collect();
    fields.extend(missing.iter().map(|field| field.as_ref().clone().with_nullable(true)));
    let schema = Arc::new(Schema::new(fields));
    chunk
        .into_iter()
        .map(|batch| {
            let mut columns = batch.columns().to_vec();
            columns.extend(missing.iter().map(|field| new_null_array(field.data_type(), batch.num_rows())));
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// Columns a predictions table written by an older lakecat may lack; read as NULL, so all its
/// rows count as scored with other settings.
const ADDED_COLUMNS: [&str; 2] = ["scored_with", "error_stage"];

/// Registers the predictions table as `target`, with [`ADDED_COLUMNS`] it lacks as NULL.
async fn register_target(session: &LakecatSession, target: &DeltaTable) -> Result<()> {
    let location = target.table_url().to_string();
    let schema = target.snapshot().map_err(|source| Error::delta(&location, source))?.snapshot().arrow_schema();
    let missing: Vec<String> = ADDED_COLUMNS
        .iter()
        .filter(|name| schema.field_with_name(name).is_err())
        .map(|name| format!("CAST(NULL AS VARCHAR) AS {name}"))
        .collect();
    if missing.is_empty() {
        return session.register_table("target", target).await;
    }
    session.register_table("target_rows", target).await?;
    session.ctx.deregister_table("target")?;
    let view = format!("CREATE VIEW target AS SELECT *, {} FROM target_rows", missing.join(", "));
    session.ctx.sql(&view).await?.collect().await?;
    Ok(())
}

async fn open_or_create_target(
    location: &str,
    schema: &SchemaRef,
    storage: &crate::StorageOptions,
) -> Result<DeltaTable> {
    let table = delta::table_for_writing(location, storage).await?;
    if table.version().is_some() {
        return Ok(table);
    }
    // A concurrent refresh may create it first; then use theirs.
    let created =
        table.write(vec![RecordBatch::new_empty(schema.clone())]).with_save_mode(SaveMode::ErrorIfExists).await;
    match created {
        Ok(table) => Ok(table),
        Err(_) => delta::open_table(location, None, storage).await,
    }
}

async fn check_unique_ids(ctx: &SessionContext, source: &str) -> Result<()> {
    let mut examples = Vec::new();
    for batch in ctx.sql(DUPLICATES_SQL).await?.collect().await? {
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let copies = cast(batch.column(1), &DataType::Int64)?;
        let copies = copies.as_primitive::<arrow::datatypes::Int64Type>();
        for (row, id) in ids.as_string::<i32>().iter().enumerate() {
            examples.push(format!("{} ({} rows)", id.unwrap_or_default(), copies.value(row)));
        }
    }
    if examples.is_empty() {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{source}: product ids must be unique for a refresh keyed on them, but some repeat: {}; deduplicate the table or pick another `id_column`",
        examples.join(", ")
    )))
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let value = batches
        .first()
        .filter(|batch| batch.num_rows() > 0)
        .map(|batch| cast(batch.column(0), &DataType::UInt64))
        .transpose()?
        .map_or(0, |counts| counts.as_primitive::<arrow::datatypes::UInt64Type>().value(0));
    Ok(value)
}

/// The process's peak resident set size, from /proc (Linux only).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
