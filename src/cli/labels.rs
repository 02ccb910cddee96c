use clap::{Args, Subcommand};
use std::path::PathBuf;

use lakecat::jobs::{ConsensusJob, ImageAuditJob, TaxonomyStore};

/// Turn labelling output into training data.
#[derive(Debug, Args)]
pub struct LabelsArgs {
    #[command(subcommand)]
    command: LabelsCommand,
}

#[derive(Debug, Subcommand)]
enum LabelsCommand {
    Consensus(ConsensusArgs),
    Audit(AuditArgs),
}

/// Find products whose image is missing, unreadable, undecodable, too small or a duplicate.
///
/// Images (bytes, or locations fetched like `categorize` does) are decoded by the same code as
/// scoring. Findings replace the --findings table: product_id, problem (missing, unreadable,
/// undecodable, too_small, duplicate), detail, width, height. With --clean-snapshot, the
/// products without findings (the first of each set of duplicates stays) are written there,
/// ready to train on.
///
/// Example:
///
///   lakecat labels audit --products lake/fashion --findings lake/image_findings --clean-snapshot lake/fashion_clean
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct AuditArgs {
    /// The products Delta table.
    #[arg(long)]
    products: String,
    /// Where the findings go (replaced on every run).
    #[arg(long)]
    findings: String,
    /// Also write the products without findings here.
    #[arg(long)]
    clean_snapshot: Option<String>,
    #[arg(long, default_value = "product_id")]
    id_column: String,
    /// The image column (default: image, else image_uri).
    #[arg(long)]
    image_column: Option<String>,
    /// Images narrower or lower than this are too small.
    #[arg(long, default_value_t = 32)]
    min_size: u32,
    /// Relative image paths resolve here (default: the current directory).
    #[arg(long)]
    image_root: Option<PathBuf>,
}

/// One label per product where enough labellers agree; the rest kept apart with the reason.
///
/// Reads a labels Delta table with one row per (product, labeller) label; a labeller's latest
/// label (by --time-column when present) is their vote, NULL is an abstention, and with
/// --taxonomy only categories of that stored version count. A product gets the category with
/// the most votes when it has at least --min-agree and no other category has as many. Writes
/// the consensus table (product_id, category, votes, labellers) and the rejected table
/// (product_id, reason, labellers, answered, votes, categories), and prints agreement per
/// labeller and per category.
///
/// Example:
///
///   lakecat labels consensus --labels lake/labels --consensus lake/consensus --rejected lake/no_consensus
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct ConsensusArgs {
    /// The labels Delta table.
    #[arg(long)]
    labels: String,
    /// Where the consensus labels go (replaced on every run; earlier versions stay readable).
    #[arg(long)]
    consensus: String,
    /// Where products without consensus go, with the reason.
    #[arg(long)]
    rejected: String,
    /// Labellers that must agree.
    #[arg(long, default_value_t = 2)]
    min_agree: usize,
    #[arg(long, default_value = "product_id")]
    product_column: String,
    #[arg(long, default_value = "labeller_id")]
    labeller_column: String,
    #[arg(long, default_value = "category")]
    category_column: String,
    /// Label time; the latest label of a labeller counts (optional column).
    #[arg(long, default_value = "labelled_at")]
    time_column: String,
    /// Count only categories of this stored taxonomy version.
    #[arg(long)]
    taxonomy: Option<String>,
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
}

pub async fn run(args: LabelsArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    match args.command {
        LabelsCommand::Consensus(args) => {
            let mut job = ConsensusJob::new(&args.labels, &args.consensus, &args.rejected)
                .with_min_agree(args.min_agree)
                .with_columns(&args.product_column, &args.labeller_column, &args.category_column, &args.time_column)
                .with_storage_options(storage.clone());
            if let Some(version) = &args.taxonomy {
                job = job.with_taxonomy(TaxonomyStore::new(&args.store).with_storage_options(storage), version);
            }
            let report = job.execute().await?;
            println!(
                "{} products: {} with consensus -> {}, {} without ({} ties) -> {}",
                report.products, report.consensus, args.consensus, report.rejected, report.ties, args.rejected
            );
            println!("agreement per labeller:\n{}", arrow::util::pretty::pretty_format_batches(&report.by_labeller)?);
            println!("agreement per category:\n{}", arrow::util::pretty::pretty_format_batches(&report.by_category)?);
        }
        LabelsCommand::Audit(args) => {
            let mut job = ImageAuditJob::new(&args.products, &args.findings)
                .with_progress(std::sync::Arc::new(super::progress::Terminal::new()))
                .with_id_column(&args.id_column)
                .with_min_size(args.min_size)
                .with_storage_options(storage);
            if let Some(column) = &args.image_column {
                job = job.with_image_column(column);
            }
            if let Some(root) = &args.image_root {
                job = job.with_image_root(root);
            }
            if let Some(location) = &args.clean_snapshot {
                job = job.with_clean_snapshot(location);
            }
            let report = job.execute().await?;
            println!("{} products: {} images fine; findings written to {}", report.rows, report.ok, args.findings);
            for (problem, rows) in &report.problems {
                println!("  {problem}: {rows}");
            }
            if let (Some(location), Some(rows)) = (&args.clean_snapshot, report.clean_rows) {
                println!("{rows} products without findings written to {location}");
            }
        }
    }
    Ok(())
}
