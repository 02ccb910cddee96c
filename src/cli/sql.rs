use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use clap::{Args, ValueEnum};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use lakecat::SessionBuilder;

use super::WriteMode;
use lakecat_udfs::Device;

/// Run SQL over Delta tables with lakecat's functions.
///
/// SQL comes from the argument, from --file, from standard input, or (on a terminal, with
/// neither) from an interactive prompt where statements end with `;` and `\q` quits.
///
/// Functions: categorize([model,] image, title, description) returns a struct with
/// category_id, category, path, level_1 … level_k, confidence, top_k, confident_category_id,
/// confident_path, model and error; taxonomy([model]) lists every category;
/// category_path([model,] id) and category_level([model,] id, level) look ids up;
/// content_hash(image, title, description) fingerprints inputs; with --taxonomies,
/// taxonomy_id(path, 'version') and taxonomy_migrate(id, 'from', 'to') map between versions.
/// `SELECT routine_name, syntax_example, description FROM information_schema.routines`
/// shows their documentation.
///
/// Settings (SET lakecat.<name> = value; checked when set, SHOW lakecat.<name> reads one):
/// confidence_threshold (0.5), top_k (3), fetch_concurrency (32), fetch_timeout_secs (30),
/// fetch_retries (3), max_image_bytes (16777216), allow_http (false), image_root ('', the
/// current directory), allowed_locations ('': local files under image_root, any s3/gs/az
/// bucket, http(s) hosts on public addresses; e.g. 's3://bucket/images/,/data/images').
/// A table is data written by others: what is refused and why is in SECURITY.md.
///
/// Example:
///
///   lakecat sql --table products=lake/fashion --model fashion=models/fashion \
///     "SELECT product_id, c.category, c.level_1, round(c.confidence, 2) AS confidence
///      FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SqlArgs {
    /// SQL to run (several statements separated by `;`).
    sql: Option<String>,
    /// Read the SQL from this file.
    #[arg(long, short, conflicts_with = "sql")]
    file: Option<PathBuf>,
    #[command(flatten)]
    session: SessionArgs,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print at most this many rows in table format (0 = all).
    #[arg(long, default_value_t = 100)]
    max_rows: usize,
    /// Write the last statement's result to this Delta table instead of printing it.
    #[arg(long, value_name = "LOCATION")]
    output_table: Option<String>,
    /// What to do when --output-table exists.
    #[arg(long, value_enum, default_value_t = WriteMode::Error, requires = "output_table")]
    mode: WriteMode,
}

/// The tables, models and settings of a session (`lakecat sql`, `lakecat serve`).
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// A Delta table, as NAME=LOCATION or NAME=LOCATION@VERSION (repeatable).
    #[arg(long = "table", short = 't', value_name = "NAME=LOCATION[@VERSION]")]
    tables: Vec<String>,
    /// A model bundle, as NAME=LOCATION or LOCATION (named after its directory); the first is
    /// the default of categorize() (repeatable). A directory, or a bundle in object storage:
    /// s3://models/fashion takes its latest version, s3://models/fashion@VERSION pins one
    /// (downloaded once into ~/.cache/lakecat/bundles, verified before use).
    #[arg(long = "model", short = 'm', value_name = "[NAME=]PATH")]
    models: Vec<String>,
    /// Rows per ONNX Runtime call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where models run: auto (CUDA when available, else CPU), cpu or cuda.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// A taxonomy store (`lakecat taxonomy import`): its versions are what taxonomy_id and
    /// taxonomy_migrate know.
    #[arg(long, value_name = "LOCATION")]
    taxonomies: Option<String>,
    /// Migration rules between two stored versions, FROM:TO=FILE (`OLD PATH => NEW PATH` per
    /// line; repeatable). Without rules, versions map by identical path.
    #[arg(long = "rules", value_name = "FROM:TO=FILE", requires = "taxonomies")]
    rules: Vec<String>,
    /// A session setting, as `SET KEY = VALUE` would make it (repeatable): e.g.
    /// lakecat.confidence_threshold=0.7, datafusion.execution.target_partitions=4.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Run the queries on the Ballista cluster whose scheduler is at df://HOST:PORT (started
    /// with `lakecat cluster scheduler`); its executors open the same tables and bundles.
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
}

impl SessionArgs {
    /// Loads the models and opens the tables, then names each model's bundle on standard error.
    pub async fn build(&self, storage: &lakecat::StorageOptions) -> anyhow::Result<lakecat::LakecatSession> {
        let mut builder = SessionBuilder::new()
            .with_batch_size(self.batch_size)
            .with_device(self.device)
            .with_storage_options(storage.clone());
        for table in &self.tables {
            let (name, location, version) = parse_table(table)?;
            builder = builder.with_table_version(name, location, version);
        }
        for model in &self.models {
            let (name, path) = parse_model(model)?;
            builder = builder.with_model(name, path);
        }
        if let Some(store) = &self.taxonomies {
            builder = builder.with_taxonomy_store(store);
        }
        if let Some(url) = &self.cluster {
            builder = builder.with_cluster(url);
        }
        for spec in &self.rules {
            let Some((versions, file)) = spec.split_once('=') else {
                bail!("--rules {spec:?}: expected FROM:TO=FILE");
            };
            let Some((from, to)) = versions.split_once(':') else {
                bail!("--rules {spec:?}: expected FROM:TO=FILE, e.g. v1:v2=v1-to-v2.rules");
            };
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
            builder = builder.with_migration_rules(from, to, lakecat_core::taxonomy_formats::parse_rules(&text)?);
        }
        for setting in &self.settings {
            let Some((key, value)) = setting.split_once('=') else {
                bail!("--setting {setting:?}: expected KEY=VALUE, e.g. lakecat.confidence_threshold=0.7");
            };
            builder = builder.with_setting(key.trim(), value.trim());
        }
        let session = builder.build().await?;
        for name in session.models.names() {
            let engine = session.models.get(Some(name))?;
            let from = session
                .bundles
                .iter()
                .find(|(model, _)| model == name)
                .filter(|(_, bundle)| bundle.location.contains("://"))
                .map(|(_, bundle)| format!(" from {}", bundle.location))
                .unwrap_or_default();
            eprintln!("model {name}: {}{from} on {}", engine.bundle().fingerprint(), engine.provider());
            if let Some(note) = engine.provider_note() {
                eprintln!("  ({note})");
            }
        }
        Ok(session)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

pub async fn run(args: SqlArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let session = args.session.build(&storage).await?;
    let script = match (&args.sql, &args.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(file)) => {
            Some(std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?)
        }
        (None, None) if !std::io::stdin().is_terminal() => Some(std::io::read_to_string(std::io::stdin())?),
        (None, None) => None,
    };
    match script {
        Some(script) => {
            let results = run_script(&session.ctx, &script).await?;
            match (&args.output_table, results.last()) {
                (Some(location), Some(batches)) => {
                    let version =
                        lakecat::delta::write_table(location, batches.clone(), args.mode.into(), &storage).await?;
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    eprintln!("wrote {rows} rows to {location} (version {version})");
                }
                (Some(_), None) => bail!("the SQL has no statement whose result could be written"),
                (None, _) => {
                    for batches in &results {
                        print(batches, args.format, args.max_rows)?;
                    }
                }
            }
        }
        None => prompt(&session.ctx, args.format, args.max_rows).await?,
    }
    Ok(())
}

/// Runs every statement of `script`, returning each one's result.
async fn run_script(ctx: &SessionContext, script: &str) -> anyhow::Result<Vec<Vec<RecordBatch>>> {
    let statements = DFParser::parse_sql(script)?;
    if statements.is_empty() {
        bail!("no SQL statement given");
    }
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await?;
        results.push(ctx.execute_logical_plan(plan).await?.collect().await?);
    }
    Ok(results)
}

async fn prompt(ctx: &SessionContext, format: Format, max_rows: usize) -> anyhow::Result<()> {
    eprintln!("lakecat SQL: end statements with `;`, `\\q` quits.");
    let stdin = std::io::stdin();
    let mut statement = String::new();
    loop {
        eprint!("{}", if statement.is_empty() { "lakecat> " } else { "      -> " });
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim() == "\\q" {
            return Ok(());
        }
        statement.push_str(&line);
        if line.trim_end().ends_with(';') {
            match run_script(ctx, &statement).await {
                Ok(results) => {
                    for batches in &results {
                        print(batches, format, max_rows)?;
                    }
                }
                Err(error) => eprintln!("error: {error:#}"),
            }
            statement.clear();
        }
    }
}

fn print(batches: &[RecordBatch], format: Format, max_rows: usize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Table => {
            let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let shown = if max_rows == 0 { batches.to_vec() } else { first_rows(batches, max_rows) };
            writeln!(stdout, "{}", arrow::util::pretty::pretty_format_batches(&shown)?)?;
            if total > max_rows && max_rows > 0 {
                writeln!(stdout, "({total} rows, {max_rows} shown; --max-rows 0 shows all)")?;
            }
        }
        Format::Csv => {
            let mut writer = arrow::csv::Writer::new(&mut stdout);
            for batch in batches {
                writer.write(batch).context(
                    "CSV cannot hold nested columns: select the struct's fields (c.category, …) or use --format json",
                )?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut stdout);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

fn first_rows(batches: &[RecordBatch], limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut shown = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        shown.push(batch.slice(0, take));
        left -= take;
    }
    shown
}

fn parse_table(spec: &str) -> anyhow::Result<(String, String, Option<u64>)> {
    let Some((name, location)) = spec.split_once('=') else {
        bail!("--table {spec:?}: expected NAME=LOCATION or NAME=LOCATION@VERSION");
    };
    let (location, version) = super::split_version(location)?;
    Ok((name.to_string(), location, version))
}

fn parse_model(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    if let Some((name, path)) = spec.split_once('=') {
        return Ok((name.to_string(), PathBuf::from(path)));
    }
    let path = PathBuf::from(spec);
    let name = PathBuf::from(lakecat::bundles::split_version(spec).0)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .with_context(|| format!("--model {spec:?}: cannot name the model after this path; use NAME=PATH"))?;
    Ok((name, path))
}
