use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use lakecat::jobs::{PruneJob, TaxonomyStore};
use lakecat_core::taxonomy::split_path;
use lakecat_core::{Pruner, SmallCategories, TaxonomyFormat};

/// Taxonomy versions: import, export, list, and prune to what the labels can train.
///
/// Versions live in a Delta table (--store, default lake/taxonomies): one row per category
/// with version, category_id, name, parent_id, depth, path and is_leaf. A stored version never
/// changes, so labels and models can name the version they use.
///
/// Examples:
///
///   lakecat taxonomy import data/sample/taxonomy/google-product-taxonomy-2021-09-21.txt --format google
///   lakecat taxonomy export --name 2021-09-21 --format paths --output paths.txt
///   lakecat taxonomy prune --labels lake/fashion --min-count 20 --name fashion-min20
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TaxonomyArgs {
    #[command(subcommand)]
    command: TaxonomyCommand,
}

#[derive(Debug, Subcommand)]
enum TaxonomyCommand {
    Import(ImportArgs),
    Export(ExportArgs),
    List(ListArgs),
    Prune(PruneArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Google's product taxonomy: `ID - A > B > C` per line (ids kept).
    Google,
    /// One category path per line, `A > B > C` or `A >> B >> C` (ids given in path order).
    Paths,
    /// A model bundle's taxonomy.json.
    Json,
}

impl From<Format> for TaxonomyFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Google => Self::Google,
            Format::Paths => Self::Paths,
            Format::Json => Self::Json,
        }
    }
}

/// Store a taxonomy file as a named version.
#[derive(Debug, Args)]
struct ImportArgs {
    /// The taxonomy file.
    file: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// The version's name (Google files carry their own).
    #[arg(long)]
    name: Option<String>,
    /// The Delta table of taxonomy versions.
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
}

/// Write a stored version in a taxonomy format.
#[derive(Debug, Args)]
struct ExportArgs {
    /// The stored version.
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    format: Format,
    /// Where to write (default: standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
}

/// List the stored versions.
#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
}

/// Merge (or drop) categories with fewer labelled rows than --min-count; print the pruned tree.
///
/// Small leaves go into their parent, deepest first; rows left on a category that keeps other
/// children get a leaf of their own, "Other <name>", when there are at least --min-count of them.
/// Top-level categories under the minimum are dropped. Every row is accounted for.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct PruneArgs {
    /// The labelled Delta table (e.g. from `lakecat import`).
    #[arg(long)]
    labels: String,
    /// Its label column, holding category paths `A > B > C`.
    #[arg(long, default_value = "category")]
    label_column: String,
    #[arg(long)]
    min_count: u64,
    /// Drop small categories and their rows instead of merging them into the parent.
    #[arg(long)]
    drop: bool,
    /// An explicit merge done first, "FROM PATH => INTO PATH" (repeatable).
    #[arg(long = "merge", value_name = "FROM => INTO")]
    merges: Vec<String>,
    /// Prune this stored version (default: the tree the labels form).
    #[arg(long)]
    taxonomy: Option<String>,
    /// The pruned taxonomy's version name; it is stored in --store when given.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
    /// Also write the pruned taxonomy as a bundle taxonomy.json here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Append the per-category before/after report to this Delta table.
    #[arg(long)]
    report_table: Option<String>,
}

pub async fn run(args: TaxonomyArgs) -> anyhow::Result<()> {
    match args.command {
        TaxonomyCommand::Import(args) => {
            let text =
                std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
            let taxonomy = TaxonomyFormat::from(args.format).parse(&text, args.name.as_deref())?;
            let table_version = TaxonomyStore::new(&args.store).save(&taxonomy).await?;
            println!(
                "stored taxonomy {:?} in {} (table version {table_version}): {} categories, {} leaves, depth {}",
                taxonomy.version(),
                args.store,
                taxonomy.len(),
                taxonomy.leaves().len(),
                taxonomy.max_depth()
            );
        }
        TaxonomyCommand::Export(args) => {
            let taxonomy = TaxonomyStore::new(&args.store).load(&args.name).await?;
            let text = TaxonomyFormat::from(args.format).render(&taxonomy);
            match args.output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
        }
        TaxonomyCommand::List(args) => {
            for version in TaxonomyStore::new(&args.store).versions().await? {
                println!("{version}");
            }
        }
        TaxonomyCommand::Prune(args) => prune(args).await?,
    }
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let mut pruner = Pruner::new(args.min_count).with_small_categories(if args.drop {
        SmallCategories::Drop
    } else {
        SmallCategories::MergeIntoParent
    });
    for rule in &args.merges {
        let Some((from, into)) = rule.split_once("=>") else {
            bail!(
                "--merge {rule:?}: expected \"FROM PATH => INTO PATH\", e.g. \"Footwear > Sandal => Footwear > Shoes\""
            );
        };
        pruner = pruner.with_merge(split_path(from), split_path(into));
    }
    let version = args.name.clone().unwrap_or_else(|| format!("pruned-min{}", args.min_count));
    let store = TaxonomyStore::new(&args.store);
    let mut job = PruneJob::new(&args.labels, pruner, &version).with_label_column(&args.label_column);
    if let Some(base) = &args.taxonomy {
        job = job.with_taxonomy(store.clone(), base);
    }
    if args.name.is_some() {
        job = job.with_save_to(store);
    }
    if let Some(location) = &args.report_table {
        job = job.with_report_table(location);
    }
    let outcome = job.execute().await?;
    print!("{}", outcome.pruned.tree());
    if outcome.unlabelled > 0 {
        println!("{} rows have no label and were not counted", outcome.unlabelled);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, outcome.pruned.taxonomy.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote the pruned taxonomy to {}", path.display());
    }
    if args.name.is_some() {
        println!("stored the pruned taxonomy as version {version:?} in {}", args.store);
    }
    Ok(())
}
