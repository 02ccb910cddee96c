use clap::{Args, Subcommand};
use lakecat::jobs::{ConsensusJob, TaxonomyStore};

/// Turn labelling output into training data.
#[derive(Debug, Args)]
pub struct LabelsArgs {
    #[command(subcommand)]
    command: LabelsCommand,
}

#[derive(Debug, Subcommand)]
enum LabelsCommand {
    Consensus(ConsensusArgs),
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

pub async fn run(args: LabelsArgs) -> anyhow::Result<()> {
    match args.command {
        LabelsCommand::Consensus(args) => {
            let mut job = ConsensusJob::new(&args.labels, &args.consensus, &args.rejected)
                .with_min_agree(args.min_agree)
                .with_columns(&args.product_column, &args.labeller_column, &args.category_column, &args.time_column);
            if let Some(version) = &args.taxonomy {
                job = job.with_taxonomy(TaxonomyStore::new(&args.store), version);
            }
            let report = job.execute().await?;
            println!(
                "{} products: {} with consensus -> {}, {} without ({} ties) -> {}",
                report.products, report.consensus, args.consensus, report.rejected, report.ties, args.rejected
            );
            println!("agreement per labeller:\n{}", arrow::util::pretty::pretty_format_batches(&report.by_labeller)?);
            println!("agreement per category:\n{}", arrow::util::pretty::pretty_format_batches(&report.by_category)?);
        }
    }
    Ok(())
}
