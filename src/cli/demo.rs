use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use deltalake::protocol::SaveMode;
use lakecat::SessionBuilder;
use lakecat::jobs::{ImportJob, Labels, RefreshJob, SnapshotAt, TrainJob, installed_mobilenet_weights};
use lakecat_training::{FusionTrainer, TrainingConfig};

use super::progress::Terminal;

/// Build a small local lakehouse from the sample data, train a model and score it in SQL.
///
/// Runs with nothing configured, on a fresh checkout:
///   1. imports data/sample/fashion (239 real products with images) into a Delta table;
///   2. trains a small burn model (MobileNetV2 features + text branch, a few minutes on 2 cores) on
///      ~80% of it (split by a hash of product_id), from that Delta snapshot, into a bundle;
///   3. scores the held-out ~20% with `categorize` in SQL and prints categories at every level
///      with confidences, per-level accuracy, and what bad input looks like;
///   4. refreshes a predictions table twice (`lakecat refresh`): the second run scores nothing.
///
/// Everything is written under --dir; run it again to start over.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Where the demo lakehouse (Delta tables) and the model bundle go.
    #[arg(long, default_value = "lakecat-demo")]
    dir: PathBuf,
    /// The sample data (default: data/sample of the lakecat checkout).
    #[arg(long)]
    sample: Option<PathBuf>,
    /// Rows of predictions to print.
    #[arg(long, default_value_t = 15)]
    rows: usize,
    /// Cross-entropy epochs of the demo model (hierarchical-loss epochs follow).
    #[arg(long, default_value_t = TrainingConfig::demo().epochs)]
    epochs: usize,
}

/// Rows whose product_id hashes to 0, 1 or 2 (3 of 16) are held out of training.
const HOLDOUT: &str = "substr(md5(product_id), 1, 1) IN ('0', '1', '2')";

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let sample = match args.sample {
        Some(sample) => sample,
        None => default_sample()
            .context("cannot find the sample data; pass --sample DIR (data/sample of the lakecat checkout)")?,
    };
    let fashion = sample.join("fashion");
    let table = args.dir.join("lake/products").display().to_string();
    let bundle = args.dir.join("models/demo");

    println!("1. Importing {} into the Delta table {table}", fashion.display());
    let imported = ImportJob::new(fashion.join("products.csv"), &table)
        .with_progress(Arc::new(Terminal::new()))
        .with_id_column("id")
        .with_title_column("productDisplayName")
        .with_images_dir(fashion.join("images"))
        .with_labels(Labels::Columns(vec!["masterCategory".into(), "subCategory".into(), "articleType".into()]))
        .with_save_mode(SaveMode::Overwrite)
        .execute()
        .await?;
    println!("   {} products, {} images, table version {}", imported.rows, imported.images, imported.table_version);

    println!(
        "2. Training a burn model (MobileNetV2 with ImageNet weights, frozen, run once per image in ONNX Runtime, \
         stacked with a linear SVM on the text) on the rows outside the hold-out split, from version {}",
        imported.table_version
    );
    let mut config = TrainingConfig::demo().with_epochs(args.epochs);
    config.model.weights = Some(
        installed_mobilenet_weights()
            .context("MobileNetV2's ImageNet weights are not installed: run scripts/setup.sh (or scripts/demo.sh)")?,
    );
    let trainer = FusionTrainer::new("demo").with_config(config).with_progress(Arc::new(Terminal::new()));
    let report = TrainJob::new(&table, &bundle)
        .with_snapshot(SnapshotAt::Version(imported.table_version))
        .with_filter(format!("NOT ({HOLDOUT})"))
        .with_trainer(trainer)
        .execute()
        .await?;
    println!(
        "   {} training rows, {} validation rows (for calibration), {} classes, {:.0} s; validation top-1 {:.3}, \
         temperature {:.2}",
        report.train_rows,
        report.validation_rows,
        report.bundle.classes().len(),
        report.times.encode_seconds + report.times.train_seconds + report.times.export_seconds,
        report.validation.top1,
        report.temperature
    );
    for (reason, rows) in &report.skipped {
        println!("   skipped {rows} rows: {reason}");
    }
    println!(
        "   bundle {} ({}); curves in {}",
        bundle.display(),
        report.bundle.fingerprint(),
        bundle.join("training-curves.png").display()
    );

    let session = SessionBuilder::new().with_table("products", &table).with_model("demo", &bundle).build().await?;
    let engine = session.models.get(None)?;
    println!("3. Scoring the hold-out rows in SQL (ONNX Runtime on {})", engine.provider());
    let queries = [
        format!(
            "SELECT product_id, title, c.level_1 AS level_1, c.level_2 AS level_2, c.level_3 AS level_3, round(c.confidence, 3) AS confidence, \
             c.level_3 = category_path[3] AS correct\n\
             FROM (SELECT product_id, title, category_path, categorize(image, title, description) AS c FROM products WHERE {HOLDOUT})\n\
             ORDER BY product_id LIMIT {}",
            args.rows
        ),
        format!(
            "SELECT count(*) AS products,\n\
             round(avg(CASE WHEN c.level_1 = category_path[1] THEN 1.0 ELSE 0.0 END), 3) AS level_1_accuracy,\n\
             round(avg(CASE WHEN c.level_2 = category_path[2] THEN 1.0 ELSE 0.0 END), 3) AS level_2_accuracy,\n\
             round(avg(CASE WHEN c.level_3 = category_path[3] THEN 1.0 ELSE 0.0 END), 3) AS leaf_accuracy\n\
             FROM (SELECT category_path, categorize(image, title, description) AS c FROM products WHERE {HOLDOUT})"
        ),
        "SELECT name, c.category AS category, c.error AS error\n\
         FROM (SELECT name, categorize(image, title, NULL) AS c\n\
               FROM (VALUES ('cut-off JPEG', X'FFD8FFE000104A464946', 'Nike Men Running Shoes'),\n\
                            ('not an image', X'68656C6C6F', 'Blue Denim Jeans'),\n\
                            ('no image, title only', NULL, 'Titan Women Analog Watch'),\n\
                            ('nothing at all', NULL, NULL)) AS t(name, image, title))"
            .to_string(),
    ];
    for sql in &queries {
        println!("\n{sql}");
        let batches = session.ctx.sql(sql).await?.collect().await?;
        println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    }

    let predictions = args.dir.join("lake/predictions").display().to_string();
    println!("4. The scheduled refresh: every product into the predictions table {predictions}, then again");
    for run in ["first run", "re-run  "] {
        let report =
            RefreshJob::new(&table, &predictions, &bundle).with_progress(Arc::new(Terminal::new())).execute().await?;
        println!(
            "   {run}: {} products, {} scored, {} unchanged, table version {}",
            report.scanned, report.scored, report.skipped, report.target_version
        );
    }

    let (command, hint) = lakecat_command();
    println!(
        "\nNext: {command} sql --table products={table} --model {} \"SELECT * FROM taxonomy()\"",
        bundle.display()
    );
    if let Some(hint) = hint {
        println!("      ({hint})");
    }
    Ok(())
}

/// How to run lakecat from here: `lakecat` when it is on PATH, else this very binary, with a
/// hint on how to put it on PATH.
fn lakecat_command() -> (String, Option<&'static str>) {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("lakecat").is_file()));
    match std::env::current_exe() {
        Ok(exe) if !on_path => {
            (exe.display().to_string(), Some("`lakecat` is not on your PATH yet: scripts/install.sh puts it there"))
        }
        _ => ("lakecat".to_string(), None),
    }
}

fn default_sample() -> anyhow::Result<PathBuf> {
    let candidates =
        [Path::new("data/sample").to_path_buf(), Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")];
    for candidate in candidates {
        if candidate.join("fashion/products.csv").is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "data/sample/fashion/products.csv is neither under the current directory nor under the checkout this binary was built from"
    )
}
