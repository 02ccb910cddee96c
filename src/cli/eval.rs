//! `lakecat eval`: a bundle measured on a labelled table (builds without training).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use lakecat::jobs::{EvalJob, EvalRows, SnapshotAt, SnapshotColumns};

#[derive(Debug, Args)]
pub(super) struct ColumnArgs {
    /// The product id column (decides the split).
    #[arg(long, default_value = "product_id")]
    id_column: String,
    /// The image bytes column.
    #[arg(long, default_value = "image")]
    image_column: String,
    #[arg(long, default_value = "title")]
    title_column: String,
    #[arg(long, default_value = "description")]
    description_column: String,
    /// The label: a list of category names, top level first, or a path string "A > B > C".
    #[arg(long, default_value = "category_path")]
    label_column: String,
    /// Train on text alone (no image branch).
    #[arg(long)]
    pub(super) no_images: bool,
    /// The table has no description column.
    #[arg(long)]
    no_description: bool,
}

impl ColumnArgs {
    pub(super) fn columns(&self) -> SnapshotColumns {
        SnapshotColumns {
            id: self.id_column.clone(),
            image: (!self.no_images).then(|| self.image_column.clone()),
            title: self.title_column.clone(),
            description: (!self.no_description).then(|| self.description_column.clone()),
            label: self.label_column.clone(),
        }
    }
}

pub(super) fn snapshot(table: &str, as_of: Option<&str>) -> anyhow::Result<(String, SnapshotAt)> {
    let (location, version) = super::split_version(table)?;
    Ok(match (version, as_of) {
        (Some(_), Some(_)) => bail!("give a version (LOCATION@VERSION) or --as-of, not both"),
        (Some(version), None) => (location, SnapshotAt::Version(version)),
        (None, Some(time)) => (location, SnapshotAt::Timestamp(time.to_string())),
        (None, None) => (location, SnapshotAt::Latest),
    })
}

/// Measure a model bundle on a labelled Delta table.
///
/// Scores the rows with `categorize` (exactly as SQL does) and compares with the labels:
/// top-1, hierarchy win (the predicted leaf shares the true parent), fallback (top-1 right or
/// the second guess shares the true parent), per-level accuracy, and per-class precision and
/// recall. Labels deeper than the model's (pruned) taxonomy count for their surviving ancestor.
///
/// Writes eval.json and confusion-matrix.png (grouped by parent, rows normalised) to --output.
///
/// Example:
///
///   lakecat eval --model models/fashion --table lake/products@3 --output eval/fashion
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    /// The model bundle: a directory, or a bundle in object storage (s3://models/fashion takes
    /// the latest version, …@VERSION pins one).
    #[arg(long, short)]
    model: PathBuf,
    /// The labelled products Delta table, optionally LOCATION@VERSION.
    #[arg(long, short)]
    table: String,
    /// Read the table version current at this time (RFC 3339).
    #[arg(long)]
    as_of: Option<String>,
    /// Which rows to score.
    #[arg(long, value_enum, default_value_t = EvalRows::Validation)]
    rows: EvalRows,
    /// Only rows matching this SQL predicate.
    #[arg(long)]
    filter: Option<String>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Directory for eval.json and confusion-matrix.png.
    #[arg(long, short, default_value = "lakecat-eval")]
    output: PathBuf,
    /// Print the metrics as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn eval(args: EvalArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let (table, at) = snapshot(&args.table, args.as_of.as_deref())?;
    let mut job = EvalJob::new(&args.model, &table)
        .with_snapshot(at)
        .with_rows(args.rows)
        .with_columns(args.columns.columns())
        .with_storage_options(storage);
    if let Some(filter) = args.filter {
        job = job.with_filter(filter);
    }
    let output = args.output.to_string_lossy().into_owned();
    let report = job.with_output(&output).execute().await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let m = &report.metrics;
    println!("{} on {}@{} ({}): {} rows", report.model, report.table, report.version, report.rows, m.rows);
    println!("top-1          {:.4}", m.top1);
    println!("hierarchy win  {:.4}", m.hierarchy_win);
    println!("fallback       {:.4}", m.fallback);
    for (level, accuracy) in m.per_level.iter().enumerate() {
        println!("level {}        {accuracy:.4}", level + 1);
    }
    let mut worst: Vec<_> = report.per_class.iter().filter(|c| c.support > 0).collect();
    worst.sort_by(|a, b| a.recall.unwrap_or(0.0).total_cmp(&b.recall.unwrap_or(0.0)));
    println!("lowest recall:");
    for class in worst.iter().take(5) {
        println!("  {:.3}  {} ({} rows)", class.recall.unwrap_or(0.0), class.path, class.support);
    }
    for (reason, count) in &report.skipped {
        println!("skipped {count} rows: {reason}");
    }
    println!("wrote eval.json and confusion-matrix.png to {output}");
    Ok(())
}
