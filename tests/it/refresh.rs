//! `lakecat refresh`: incremental, idempotent, crash-safe scoring into a predictions table.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use deltalake::protocol::SaveMode;
use lakecat::SessionBuilder;
use lakecat::jobs::RefreshJob;

use crate::common::{fixture, session};

/// Writes the fixture's products selected by `sql` (over `products`) to a new table version.
async fn write_products(location: &Path, sql: &str, mode: SaveMode) {
    let frame = session().await.ctx.sql(sql).await.unwrap();
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.collect().await.unwrap();
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    lakecat::delta::write_table(&location.display().to_string(), batches, mode, &Default::default()).await.unwrap();
}

/// Every predictions column but `scored_at` and `scored_with`, as comparable text: lists
/// joined, probabilities to 5 digits (ONNX Runtime may differ in the last bits between batches).
const ROW: &str = "CAST(product_id AS VARCHAR) AS product_id, CAST(title AS VARCHAR) AS title, \
    CAST(description AS VARCHAR) AS description, category_id, category, array_to_string(path, ' > ') AS path, \
    level_1, level_2, level_3, round(confidence, 5) AS confidence, \
    concat_ws(' | ', top_k[1]['category_id'], round(top_k[1]['confidence'], 5), top_k[2]['category_id'], \
    round(top_k[2]['confidence'], 5), top_k[3]['category_id'], round(top_k[3]['confidence'], 5)) AS top_k, \
    confident_category_id, array_to_string(confident_path, ' > ') AS confident_path, model, error, error_stage, \
    content_hash";

/// The rows in which the predictions table at `target` and `categorize` with `model` over the
/// products at `source` (image column `image`) differ, either way: `""` when the table holds
/// exactly one row per product with id, and that row is what `categorize` says about it.
pub(crate) async fn differences_from_categorize(
    source: &str,
    image: &str,
    target: &str,
    model: &Path,
    storage: &lakecat::StorageOptions,
) -> String {
    let session = SessionBuilder::new()
        .with_storage_options(storage.clone())
        .with_table("products", source)
        .with_table("predictions", target)
        .with_model("model", model)
        .with_batch_size(16)
        .build()
        .await
        .unwrap();
    let fields = ["category_id", "category", "path", "level_1", "level_2", "level_3", "confidence", "top_k"]
        .into_iter()
        .chain(["confident_category_id", "confident_path", "model", "error", "error_stage"])
        .map(|field| format!("c['{field}'] AS {field}"))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = format!(
        "CREATE VIEW expected AS SELECT product_id, title, description, {fields}, \
         content_hash({image}, title, description, image_version({image})) AS content_hash \
         FROM (SELECT product_id, title, description, {image}, categorize({image}, title, description) AS c \
               FROM products WHERE product_id IS NOT NULL)"
    );
    session.ctx.sql(&expected).await.unwrap().collect().await.unwrap();
    let differences = format!(
        "SELECT 'categorize says, the table does not' AS side, * FROM \
           (SELECT {ROW} FROM expected EXCEPT SELECT {ROW} FROM predictions) \
         UNION ALL SELECT 'the table says, categorize does not' AS side, * FROM \
           (SELECT {ROW} FROM predictions EXCEPT SELECT {ROW} FROM expected) \
         ORDER BY product_id, side"
    );
    let batches = session.ctx.sql(&differences).await.unwrap().collect().await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return String::new();
    }
    let shown: Vec<RecordBatch> = batches.iter().map(|batch| batch.slice(0, batch.num_rows().min(10))).collect();
    format!("{rows} rows differ, e.g.\n{}", pretty_format_batches(&shown).unwrap())
}

/// The predictions table in a comparable form: every column but the scoring time, in id order.
pub(crate) async fn predictions(location: &Path) -> String {
    let session =
        SessionBuilder::new().with_table("predictions", location.display().to_string()).build().await.unwrap();
    let sql = format!("SELECT {ROW}, scored_with FROM predictions ORDER BY product_id");
    let batches: Vec<RecordBatch> = session.ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// [`differences_from_categorize`] for a local table with embedded images.
async fn differences(source: &Path, target: &Path, model: &Path) -> String {
    let (source, target) = (source.display().to_string(), target.display().to_string());
    differences_from_categorize(&source, "image", &target, model, &Default::default()).await
}

async fn scalar(location: &Path, sql: &str) -> String {
    let session =
        SessionBuilder::new().with_table("predictions", location.display().to_string()).build().await.unwrap();
    let batches = session.ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let formatted = arrow::util::display::ArrayFormatter::try_new(batches[0].column(0), &Default::default()).unwrap();
    formatted.value(0).to_string()
}

async fn scalar_of(ctx: &datafusion::prelude::SessionContext, sql: &str) -> u64 {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let value = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::UInt64).unwrap();
    arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(&value).value(0)
}

/// Every progress event a job reports, in order.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl lakecat_core::Progress for Recorder {
    fn start(&self, phase: &str, total: Option<u64>) {
        let total = total.map(|total| format!(" of {total}")).unwrap_or_default();
        self.0.lock().unwrap().push(format!("start {phase}{total}"));
    }

    fn advance(&self, units: u64) {
        self.0.lock().unwrap().push(format!("advance {units}"));
    }

    fn log(&self, line: &str) {
        self.0.lock().unwrap().push(format!("log {line}"));
    }

    fn finish(&self) {
        self.0.lock().unwrap().push("finish".into());
    }
}

fn job(source: &Path, target: &Path, model: &Path) -> RefreshJob {
    RefreshJob::new(source.display().to_string(), target.display().to_string(), model).with_batch_size(16)
}

#[tokio::test]
async fn rescoring_follows_changes_and_models_only() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("products"), dir.path().join("predictions"));
    write_products(&source, "SELECT * FROM products", SaveMode::ErrorIfExists).await;

    let first = job(&source, &target, &fixture.baseline).with_chunk_rows(100).execute().await.unwrap();
    assert_eq!((first.scanned, first.scored, first.skipped, first.failed), (239, 239, 0, 0));
    assert_eq!(first.commits.len(), 3, "239 rows in chunks of 100: {first:?}");
    assert_eq!(first.run, 1);

    // The table holds what categorize says about each product, once per product, row by row.
    assert_eq!(differences(&source, &target, &fixture.baseline).await, "");

    // Same source version, same model, last run complete: nothing is read.
    let again = job(&source, &target, &fixture.baseline).execute().await.unwrap();
    assert_eq!(
        (again.scored, again.skipped, again.commits.len(), again.source_unchanged),
        (0, 239, 0, true),
        "{again:?}"
    );
    // A new source version with the same rows: every row is compared, none rescored.
    write_products(&source, "SELECT * FROM products", SaveMode::Overwrite).await;
    let rewritten = job(&source, &target, &fixture.baseline).execute().await.unwrap();
    assert_eq!((rewritten.scored, rewritten.skipped, rewritten.source_unchanged), (0, 239, false), "{rewritten:?}");

    // Change the title of exactly 100 products (a new source version): those 100 are rescored.
    write_products(
        &source,
        "SELECT p.* REPLACE (CASE WHEN first.product_id IS NULL THEN p.title \
         ELSE concat(p.title, ' (2026 edition)') END AS title) \
         FROM products AS p LEFT JOIN (SELECT product_id FROM products ORDER BY product_id LIMIT 100) AS first \
         ON p.product_id = first.product_id",
        SaveMode::Overwrite,
    )
    .await;
    let before = lakecat::delta::open_table(&target.display().to_string(), None, &Default::default()).await.unwrap();
    let before = before.version().unwrap();
    let events = std::sync::Arc::new(Recorder::default());
    let changed = job(&source, &target, &fixture.baseline).with_progress(events.clone()).execute().await.unwrap();
    assert_eq!((changed.scored, changed.skipped, changed.run), (100, 139, 2), "{changed:?}");
    // What a program embedding the job sees: the scoring phase with its total, every row of it.
    let events = events.0.lock().unwrap().clone();
    assert_eq!(events.first().map(String::as_str), Some("start refresh: scoring of 100"), "{events:?}");
    let advanced: u64 = events.iter().filter_map(|event| event.strip_prefix("advance ")?.parse::<u64>().ok()).sum();
    assert_eq!((advanced, events.last().map(String::as_str)), (100, Some("finish")), "{events:?}");
    assert_eq!(differences(&source, &target, &fixture.baseline).await, "");
    // Exactly the changed products were rescored: every other row kept its scoring time.
    let session = SessionBuilder::new()
        .with_table_version("before", target.display().to_string(), Some(before))
        .with_table("after", target.display().to_string())
        .build()
        .await
        .unwrap();
    let rescored = "SELECT count(*) FROM before AS b JOIN after AS a USING (product_id) \
                    WHERE a.scored_at <> b.scored_at";
    assert_eq!(scalar_of(&session.ctx, rescored).await, 100);
    let wrong = format!("{rescored} AND a.title NOT LIKE '% (2026 edition)'");
    assert_eq!(scalar_of(&session.ctx, &wrong).await, 0, "a row that did not change was rescored");

    // Another model: everything is rescored, and the table says which model scored each row.
    let other = job(&source, &target, &fixture.text_only).execute().await.unwrap();
    assert_eq!((other.scored, other.skipped), (239, 0));
    assert_eq!(scalar(&target, "SELECT count(*) FROM predictions WHERE model LIKE 'text_only@%'").await, "239");
    assert_eq!(differences(&source, &target, &fixture.text_only).await, "");
}

#[tokio::test]
async fn deletes_missing_products_only_when_asked() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("products"), dir.path().join("predictions"));
    write_products(&source, "SELECT * FROM products", SaveMode::ErrorIfExists).await;
    job(&source, &target, &fixture.baseline).execute().await.unwrap();
    write_products(&source, "SELECT * FROM products ORDER BY product_id LIMIT 200", SaveMode::Overwrite).await;

    let kept = job(&source, &target, &fixture.baseline).execute().await.unwrap();
    assert_eq!((kept.scored, kept.deleted), (0, 0));
    assert_eq!(scalar(&target, "SELECT count(*) FROM predictions").await, "239");

    let pruned = job(&source, &target, &fixture.baseline).with_delete_missing(true).execute().await.unwrap();
    assert_eq!((pruned.scored, pruned.deleted, pruned.commits.len()), (0, 39, 1), "{pruned:?}");
    // The remaining rows are exactly the source's products, each as categorize scores it.
    assert_eq!(differences(&source, &target, &fixture.baseline).await, "");
}

#[tokio::test]
async fn bad_rows_are_written_with_their_error_and_duplicate_ids_refused() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("predictions");
    let report = job(Path::new(&fixture.bad_images), &target, &fixture.baseline).execute().await.unwrap();
    assert_eq!((report.scanned, report.scored), (14, 14));
    assert_eq!(report.failed, 7, "{report:?}");
    // Decode errors are not retried (the same bytes fail the same way); only fetch errors are.
    let again = job(Path::new(&fixture.bad_images), &target, &fixture.baseline).execute().await.unwrap();
    assert_eq!(again.scored, 0);

    let duplicated = dir.path().join("duplicated");
    write_products(
        &duplicated,
        "SELECT * FROM products UNION ALL SELECT * FROM products LIMIT 300",
        SaveMode::ErrorIfExists,
    )
    .await;
    let error = job(&duplicated, &dir.path().join("other"), &fixture.baseline).execute().await.unwrap_err().to_string();
    assert!(error.contains("product ids must be unique") && error.contains("(2 rows)"), "{error}");

    // Products without an id cannot be keyed: counted, reported, never inserted again and again.
    let no_ids = dir.path().join("no_ids");
    write_products(
        &no_ids,
        "SELECT p.* REPLACE (CASE WHEN p.title LIKE '%Polo%' THEN NULL ELSE p.product_id END AS product_id) FROM products AS p",
        SaveMode::ErrorIfExists,
    )
    .await;
    let polo: u64 = scalar_of(&session().await.ctx, "SELECT count(*) FROM products WHERE title LIKE '%Polo%'").await;
    assert!(polo > 0);
    let no_ids_target = dir.path().join("no_ids_predictions");
    for run in 0..2 {
        let report = job(&no_ids, &no_ids_target, &fixture.baseline).execute().await.unwrap();
        assert_eq!((report.without_id, report.scored), (polo, if run == 0 { 239 - polo } else { 0 }), "{report:?}");
    }
    assert_eq!(scalar(&no_ids_target, "SELECT count(*) FROM predictions").await, (239 - polo).to_string());

    let missing_column =
        job(Path::new(&fixture.image_uris), &dir.path().join("x"), &fixture.baseline).execute().await.unwrap_err();
    assert!(missing_column.to_string().contains("no image column \"image\""), "{missing_column}");
}

pub(crate) fn refresh_command(source: &Path, target: &Path, model: &Path, chunk_rows: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakecat"));
    command
        .args(["refresh", "--json", "--batch-size", "8", "--chunk-rows"])
        .arg(chunk_rows.to_string())
        .arg("--model")
        .arg(model)
        .arg("--source")
        .arg(source)
        .arg("--target")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// How a `lakecat refresh` process ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    /// The `--json` report of a run that succeeded.
    pub(crate) fn report(&self) -> serde_json::Value {
        assert_eq!(self.code, Some(0), "the run failed: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("{error}: {self:?}"))
    }
}

pub(crate) fn finish(child: Child) -> Outcome {
    let output = child.wait_with_output().unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Rows committed to the table at `location` (0 when it does not exist yet).
async fn committed_rows(location: &Path) -> u64 {
    if !location.join("_delta_log").is_dir() {
        return 0;
    }
    scalar(location, "SELECT count(*) FROM predictions").await.parse().unwrap()
}

/// Commits in a table's log so far, read from the directory (cheap enough to poll).
fn log_entries(location: &Path) -> usize {
    let entries = std::fs::read_dir(location.join("_delta_log")).into_iter().flatten().flatten();
    entries.filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json")).count()
}

/// A deterministic stream of fractions in [0, 1) (no extra dependency for one test).
fn fractions(mut state: u64) -> impl Iterator<Item = f64> {
    std::iter::repeat_with(move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_the_next_run_converges() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(&fixture.products);
    let (chunk, total) = (16, 239);
    let reference = dir.path().join("reference");
    let started = Instant::now();
    let report = finish(refresh_command(source, &reference, &fixture.baseline, chunk).spawn().unwrap()).report();
    assert_eq!(report["scored"], total);
    let full_run = started.elapsed();

    let trials = 24;
    let mut partial = 0;
    for (trial, fraction) in fractions(42).take(trials).enumerate() {
        let target = dir.path().join(format!("trial-{trial}"));
        let spawned = Instant::now();
        let mut child = refresh_command(source, &target, &fixture.baseline, chunk).spawn().unwrap();
        if trial % 2 == 0 {
            // Anywhere in a run, start-up included.
            std::thread::sleep(full_run.mul_f64(fraction));
        } else {
            // After the first chunk's commit (the table's creation is the first log entry),
            // somewhere in the rest of the run.
            while log_entries(&target) < 2 && child.try_wait().unwrap().is_none() {
                assert!(spawned.elapsed() < full_run * 4, "trial {trial}: no chunk was committed");
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(full_run.saturating_sub(spawned.elapsed()).mul_f64(fraction));
        }
        child.kill().unwrap(); // SIGKILL: no clean-up code runs
        child.wait().unwrap();
        let committed = committed_rows(&target).await;
        assert!(
            committed % chunk as u64 == 0 || committed == total,
            "trial {trial}: {committed} rows, not whole chunks"
        );
        if 0 < committed && committed < total {
            partial += 1;
        }
        let rerun = finish(refresh_command(source, &target, &fixture.baseline, chunk).spawn().unwrap()).report();
        // The killed run lost at most its uncommitted chunk: the next scores only what is missing.
        assert_eq!(rerun["scored"], total - committed, "trial {trial} (killed at {fraction:.2}): {rerun}");
        assert_eq!(
            differences(source, &target, &fixture.baseline).await,
            "",
            "trial {trial} (killed after {committed} committed rows)"
        );
    }
    assert!(partial >= trials / 4, "only {partial} of {trials} trials killed a run between two commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_leave_one_copy_of_each_row() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(&fixture.products);
    let mut conflicts = 0;
    for round in 0..3 {
        let target = dir.path().join(format!("round-{round}"));
        let first = refresh_command(source, &target, &fixture.baseline, 40).spawn().unwrap();
        let second = refresh_command(source, &target, &fixture.baseline, 40).spawn().unwrap();
        let outcomes = [finish(first), finish(second)];
        for outcome in &outcomes {
            if outcome.code == Some(0) {
                conflicts += outcome.report()["conflicts"].as_u64().unwrap();
            } else {
                // The loser says why, and exits 1 like every failed command.
                assert_eq!(outcome.code, Some(1), "round {round}: {outcome:?}");
                assert!(
                    outcome.stderr.contains("another writer committed") || outcome.stderr.contains("Another refresh"),
                    "round {round}: a run failed without saying why: {outcome:?}"
                );
                conflicts += 1;
            }
        }
        assert!(outcomes.iter().any(|outcome| outcome.code == Some(0)), "round {round}: neither run committed");
        // A run that succeeded leaves every row current, whatever the other did meanwhile.
        assert_eq!(differences(source, &target, &fixture.baseline).await, "", "round {round}: {outcomes:?}");
    }
    assert!(conflicts >= 1, "in 3 rounds the two runs never met: the test did not test concurrency");
}

#[tokio::test]
async fn mass_deletes_are_refused_unless_forced() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("products"), dir.path().join("predictions"));
    write_products(&source, "SELECT * FROM products", SaveMode::ErrorIfExists).await;
    job(&source, &target, &fixture.baseline).execute().await.unwrap();
    let before = predictions(&target).await;

    // A source that reads empty (a truncated snapshot, a wrong path) deletes nothing.
    write_products(&source, "SELECT * FROM products WHERE false", SaveMode::Overwrite).await;
    let refused = job(&source, &target, &fixture.baseline).with_delete_missing(true).execute().await.unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("refusing to delete: ")
            && message.contains("(version 1) has no products, so `delete_missing` would delete all 239 predictions"),
        "{message}"
    );
    assert_eq!(predictions(&target).await, before, "a refused run changes nothing");

    // More than half gone is refused with the counts; `force_delete` does it.
    write_products(&source, "SELECT * FROM products ORDER BY product_id LIMIT 100", SaveMode::Overwrite).await;
    let message =
        job(&source, &target, &fixture.baseline).with_delete_missing(true).execute().await.unwrap_err().to_string();
    assert!(
        message.contains("would delete 139 of the 239 predictions")
            && message.contains("(58%, over `max_delete_fraction` 0.5)"),
        "{message}"
    );
    assert_eq!(predictions(&target).await, before);
    let forced = job(&source, &target, &fixture.baseline)
        .with_delete_missing(true)
        .with_delete_guard(0.5, true)
        .execute()
        .await
        .unwrap();
    assert_eq!((forced.scored, forced.deleted), (0, 139));
    let remaining = scalar(&target, "SELECT count(*) FROM predictions").await;
    assert_eq!(remaining, "100");
}

#[tokio::test]
async fn settings_that_change_predictions_rescore_and_refused_rows_are_not_retried() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("products"), dir.path().join("predictions"));
    // Images by location: some products name a file outside the image root.
    write_products(
        &source,
        "SELECT product_id, title, description, \
         CASE WHEN product_id LIKE '%3' THEN '/etc/hostname' ELSE image_source END AS image_uri \
         FROM products ORDER BY product_id LIMIT 40",
        SaveMode::ErrorIfExists,
    )
    .await;
    let refresh = || job(&source, &target, &fixture.baseline).with_image_column("image_uri");
    let first = refresh().execute().await.unwrap();
    let refused =
        scalar(&target, "SELECT count(*) FROM predictions WHERE error LIKE 'refused: /etc/hostname: %'").await;
    assert_eq!((first.scored, first.fetch_errors, refused.as_str()), (40, 0, first.failed.to_string().as_str()));
    assert!(first.failed > 0, "{first:?}");

    let again = refresh().execute().await.unwrap();
    assert_eq!(again.scored, 0, "refused rows are not fetched again: {again:?}");

    let wider = refresh().with_setting("lakecat.top_k", "5").execute().await.unwrap();
    assert_eq!(wider.scored, 40, "another top_k is another result for every row");
    assert_eq!(scalar(&target, "SELECT max(array_length(top_k)) FROM predictions").await, "5");
    let recorded = scalar(&target, "SELECT DISTINCT scored_with FROM predictions").await;
    assert!(recorded.contains("\"top_k\":5"), "{recorded}");
    let same = refresh().with_setting("lakecat.top_k", "5").execute().await.unwrap();
    assert_eq!(same.scored, 0);
}
