use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use lakecat::jobs::{RefreshJob, RefreshReport};

use lakecat_udfs::Device;

/// Keep a predictions Delta table in step with a products table.
///
/// Scores only products that are new, whose image, title or description changed (a content
/// hash), whose prediction came from another model, or whose image could not be fetched last
/// time; writes them with a Delta MERGE keyed on product id. Safe to run on a schedule, to
/// re-run, and to kill: each chunk of --chunk-rows is one commit, and the next run picks up
/// what is left. Two runs at once: the later committer starts over on the new version.
///
/// Predictions table columns: product_id, title, description, category_id, category, path,
/// level_1 … level_k, confidence, top_k, confident_category_id, confident_path, model, error,
/// error_stage, content_hash, scored_with (the settings that shape a prediction: a change rescores),
/// scored_at. Rows whose image fetch failed are retried next run; rows `refused` by policy are
/// not. --delete-missing refuses to empty the table (an empty source, or more than
/// --max-delete-fraction gone) unless --force-delete. Commits record the run as Delta application transaction
/// `lakecat-refresh` and the source version, model and chunk in their commit info.
///
/// Images given by URI are fetched through object_store (s3://, gs://, az://, local paths;
/// http(s) with --set lakecat.allow_http=true), with credentials from the usual environment
/// (AWS_*, GOOGLE_*, AZURE_*) and only from --set lakecat.allowed_locations=PREFIX,… when set.
///
/// Example:
///
///   lakecat refresh --model models/fashion --source lake/products --target lake/predictions \
///     --delete-missing --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RefreshArgs {
    /// The model bundle to score with: a directory, or a bundle in object storage
    /// (s3://models/fashion takes the latest version, s3://models/fashion@VERSION pins one).
    #[arg(long, short)]
    model: PathBuf,
    /// The products Delta table (path or URL), optionally LOCATION@VERSION.
    #[arg(long, short)]
    source: String,
    /// The predictions Delta table; created on the first run.
    #[arg(long, short)]
    target: String,
    /// The products' key column (unique per row).
    #[arg(long, default_value = "product_id")]
    id_column: String,
    /// The image column, bytes or URIs (default: image, else image_uri).
    #[arg(long)]
    image_column: Option<String>,
    /// Rows per commit: the most work a crash can lose, and the predictions held in memory.
    #[arg(long, default_value_t = 10_000)]
    chunk_rows: usize,
    /// Also delete predictions of products no longer in the source table.
    #[arg(long)]
    delete_missing: bool,
    /// With --delete-missing: refuse to run when more than this share of the predictions
    /// would be deleted (a wrong --source or a truncated snapshot reads as "everything is
    /// gone"). An empty source is always refused.
    #[arg(long, default_value_t = lakecat::jobs::refresh::MAX_DELETE_FRACTION, requires = "delete_missing")]
    max_delete_fraction: f64,
    /// With --delete-missing: delete however many predictions are missing, even all of them.
    #[arg(long, requires = "delete_missing")]
    force_delete: bool,
    /// Rows per ONNX Runtime call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// A session setting, KEY=VALUE (repeatable), e.g. lakecat.fetch_timeout_secs=10,
    /// lakecat.allowed_locations=s3://bucket/images/, datafusion.execution.target_partitions=4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Times to start over when another writer commits first.
    #[arg(long, default_value_t = 5)]
    max_attempts: usize,
    /// Score on the Ballista cluster whose scheduler is at df://HOST:PORT (`lakecat cluster`);
    /// comparing and committing stay here.
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
    /// Print the summary as one JSON object on standard output (for schedulers).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RefreshArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let (source, version) = super::split_version(&args.source)?;
    let mut job = RefreshJob::new(source, &args.target, &args.model)
        .with_progress(std::sync::Arc::new(super::progress::Terminal::new()))
        .with_id_column(args.id_column)
        .with_chunk_rows(args.chunk_rows)
        .with_delete_missing(args.delete_missing)
        .with_delete_guard(args.max_delete_fraction, args.force_delete)
        .with_batch_size(args.batch_size)
        .with_device(args.device)
        .with_max_attempts(args.max_attempts)
        .with_storage_options(storage);
    if let Some(version) = version {
        job = job.with_source_version(version);
    }
    if let Some(column) = args.image_column {
        job = job.with_image_column(column);
    }
    if let Some(url) = args.cluster {
        job = job.with_cluster(url);
    }
    for setting in &args.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set {setting:?}: expected KEY=VALUE, e.g. lakecat.fetch_timeout_secs=10");
        };
        job = job.with_setting(key.trim(), value.trim());
    }
    let report = job.execute().await?;
    if args.json {
        println!("{}", serde_json::to_string(&report).context("cannot write the summary as JSON")?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn print_summary(report: &RefreshReport) {
    eprintln!(
        "refresh run {} of {} (version {}) into {} with {}",
        report.run, report.source, report.source_version, report.target, report.model
    );
    eprintln!(
        "  {} products: {} scored ({} with an error), {} unchanged, {} deleted{}",
        report.scanned,
        report.scored,
        report.failed,
        report.skipped,
        report.deleted,
        if report.without_id > 0 {
            format!(", {} without an id (not scored)", report.without_id)
        } else {
            String::new()
        }
    );
    let commits = match report.commits.as_slice() {
        [] => "nothing to commit".to_string(),
        [one] => format!("committed version {one}"),
        [first, .., last] => format!("committed versions {first}..={last} ({} commits)", report.commits.len()),
    };
    eprintln!(
        "  {commits}; table at version {}; {:.1}s, {:.0} rows/s{}",
        report.target_version,
        report.seconds,
        report.rows_per_second,
        if report.conflicts > 0 {
            format!(", started over {} times after concurrent commits", report.conflicts)
        } else {
            String::new()
        }
    );
}
