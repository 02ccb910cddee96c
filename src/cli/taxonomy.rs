use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lakecat::jobs::{PruneJob, TaxonomyStore};
use lakecat_core::taxonomy_formats::parse_rules;
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
    Migrate(MigrateArgs),
}

/// Move labels or predictions from one stored taxonomy version to another, without re-scoring.
///
/// Each category goes to the category with the same path in the new version, or where the
/// rules file says (`OLD PATH => NEW PATH` per line: renames, merges; one old path listed with
/// two new ones is a split). Rules on a category carry its subcategories along. The output has
/// every input column plus migrated_category_id, migrated_category, migration_status
/// ('mapped', 'split into A | B', 'unmapped: …', 'not a category of <from>') and
/// migrated_taxonomy_version: nothing is guessed, every row is kept.
///
/// Examples:
///
///   lakecat taxonomy migrate --table lake/labels --path-column category --from v1 --to v2 --rules v1-to-v2.rules --output lake/labels_v2
///   lakecat taxonomy migrate --table lake/predictions --id-column category_id --from v1 --to v2 --output lake/predictions_v2
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct MigrateArgs {
    /// The Delta table to migrate.
    #[arg(long)]
    table: String,
    /// Its column of category paths (labels).
    #[arg(long, conflicts_with = "id_column", required_unless_present = "id_column")]
    path_column: Option<String>,
    /// Its column of category ids of --from (predictions).
    #[arg(long)]
    id_column: Option<String>,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// Rules file, `OLD PATH => NEW PATH` per line.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Where the migrated table goes (replaced).
    #[arg(long)]
    output: String,
    #[arg(long, default_value = "lake/taxonomies")]
    store: String,
}

/// Store a taxonomy file as a named version.
#[derive(Debug, Args)]
struct ImportArgs {
    /// The taxonomy file.
    file: PathBuf,
    #[arg(long, value_enum)]
    format: TaxonomyFormat,
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
    format: TaxonomyFormat,
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

pub async fn run(args: TaxonomyArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let store = |location: &str| TaxonomyStore::new(location).with_storage_options(storage.clone());
    match args.command {
        TaxonomyCommand::Import(args) => {
            let text =
                std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
            let taxonomy = args.format.parse(&text, args.name.as_deref())?;
            let table_version = store(&args.store).save(&taxonomy).await?;
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
            let taxonomy = store(&args.store).load(&args.name).await?;
            let text = args.format.render(&taxonomy);
            match args.output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
        }
        TaxonomyCommand::List(args) => {
            for version in store(&args.store).versions().await? {
                println!("{version}");
            }
        }
        TaxonomyCommand::Prune(args) => prune(args, storage).await?,
        TaxonomyCommand::Migrate(args) => migrate(args, storage).await?,
    }
    Ok(())
}

async fn prune(args: PruneArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let mut pruner = Pruner::new(args.min_count).with_small_categories(if args.drop {
        SmallCategories::Drop
    } else {
        SmallCategories::MergeIntoParent
    });
    for (from, into) in parse_rules(&args.merges.join("\n"))? {
        pruner = pruner.with_merge(from, into);
    }
    let version = args.name.clone().unwrap_or_else(|| format!("pruned-min{}", args.min_count));
    let store = TaxonomyStore::new(&args.store).with_storage_options(storage.clone());
    let mut job = PruneJob::new(&args.labels, pruner, &version)
        .with_label_column(&args.label_column)
        .with_storage_options(storage);
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

async fn migrate(args: MigrateArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let rules = match &args.rules {
        Some(path) => {
            parse_rules(&std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)?
        }
        None => Vec::new(),
    };
    let session = lakecat::SessionBuilder::new()
        .with_storage_options(storage.clone())
        .with_table("input", &args.table)
        .with_taxonomy_store(&args.store)
        .with_migration_rules(&args.from, &args.to, rules)
        .build()
        .await?;
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let (from, to) = (literal(&args.from), literal(&args.to));
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let (old_id, known) = match (&args.path_column, &args.id_column) {
        (Some(column), _) => {
            let id = format!("taxonomy_id(CAST({} AS VARCHAR), {from})", quote(column));
            (id.clone(), format!("{} IS NULL OR {id} IS NOT NULL", quote(column)))
        }
        (None, Some(column)) => (format!("CAST({} AS BIGINT)", quote(column)), "true".to_string()),
        (None, None) => anyhow::bail!("say which column holds the categories: --path-column or --id-column"),
    };
    // A table migrated before carries the columns this adds: they are replaced.
    let input_schema = session.ctx.table("input").await?.schema().as_arrow().clone();
    let mut replaced = vec!["lakecat_migrated", "lakecat_known"];
    replaced.extend(
        ["migrated_category_id", "migrated_category", "migration_status", "migrated_taxonomy_version"]
            .into_iter()
            .filter(|name| input_schema.field_with_name(name).is_ok()),
    );
    let replaced = replaced.join(", ");
    let sql = format!(
        "SELECT * EXCLUDE ({replaced}), \
                lakecat_migrated['category_id'] AS migrated_category_id, \
                array_to_string(lakecat_migrated['path'], ' > ') AS migrated_category, \
                CASE WHEN lakecat_known THEN lakecat_migrated['status'] ELSE concat('not a category of ', {from}) END AS migration_status, \
                {to} AS migrated_taxonomy_version \
         FROM (SELECT *, taxonomy_migrate({old_id}, {from}, {to}) AS lakecat_migrated, {known} AS lakecat_known FROM input)"
    );
    let frame = session.ctx.sql(&sql).await?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    let all = arrow::compute::concat_batches(&schema, &batches)?;
    lakecat::delta::write_table(&args.output, vec![all.clone()], deltalake::protocol::SaveMode::Overwrite, &storage)
        .await?;
    session.ctx.register_batch("migrated", all)?;
    let summary = session
        .ctx
        .sql("SELECT coalesce(regexp_replace(migration_status, ':.*', ''), 'no category') AS status, count(*) AS rows FROM migrated GROUP BY 1 ORDER BY 2 DESC")
        .await?
        .collect()
        .await?;
    println!("migrated {} from {:?} to {:?} into {}:", args.table, args.from, args.to, args.output);
    println!("{}", arrow::util::pretty::pretty_format_batches(&summary)?);
    Ok(())
}
