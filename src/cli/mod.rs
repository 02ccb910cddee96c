//! Subcommands, one file each.

mod cluster;
#[cfg(feature = "train")]
mod demo;
mod eval;
mod import;
mod labels;
mod progress;
mod refresh;
mod serve;
mod sql;
mod taxonomy;
#[cfg(feature = "train")]
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lakecat::StorageOptions;

/// Categorize product catalogs in a lakehouse.
///
/// lakecat scores Delta tables of products in SQL with `categorize(image, title, description)`,
/// backed by a model bundle run by ONNX Runtime. Start with `lakecat demo`, then `lakecat import`
/// your own products and query them with `lakecat sql`.
///
/// Every table and bundle location may be a local path, file://, s3://, gs://, az:// or
/// abfss://. Credentials and endpoints come from the usual environment (AWS_*, including
/// AWS_ENDPOINT_URL and AWS_ALLOW_HTTP for S3-compatible servers; GOOGLE_*; AZURE_*) and from
/// --storage-option, which wins over it.
#[derive(Debug, Parser)]
#[command(name = "lakecat", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// An object store setting for every table and bundle this command opens, as delta-rs's
    /// storage_options (repeatable): e.g. aws_endpoint=http://127.0.0.1:9000,
    /// aws_region=eu-west-1, azure_storage_account_name=acct, google_service_account=key.json.
    /// Values are never printed.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", global = true, value_parser = StorageOptions::parse_pair)]
    storage_options: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Cluster(cluster::ClusterArgs),
    #[cfg(feature = "train")]
    Demo(demo::DemoArgs),
    /// Build a small local lakehouse, train a model and score it (not in this build: it trains).
    #[cfg(not(feature = "train"))]
    Demo(WithoutTraining),
    Eval(eval::EvalArgs),
    Import(import::ImportArgs),
    Labels(labels::LabelsArgs),
    Refresh(refresh::RefreshArgs),
    Serve(serve::ServeArgs),
    Sql(sql::SqlArgs),
    Taxonomy(taxonomy::TaxonomyArgs),
    #[cfg(feature = "train")]
    Train(Box<train::TrainArgs>),
    /// Train a categorizer (not in this build: it was built without the `train` feature).
    #[cfg(not(feature = "train"))]
    Train(WithoutTraining),
}

/// The arguments of a command this build leaves out, accepted so that it can say so.
#[cfg(not(feature = "train"))]
#[derive(Debug, clap::Args)]
struct WithoutTraining {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[cfg(not(feature = "train"))]
fn without_training(command: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`lakecat {command}` trains a model, and this lakecat was built without training \
         (cargo build --no-default-features, which leaves burn out); build it with the default \
         features (cargo build) to train. Scoring, refresh and eval work in this build."
    )
}

/// The parsed command line, and the clap command of the subcommand it runs (whose flags
/// [`name_flags`] names).
pub fn parse() -> (Cli, clap::Command) {
    let mut command = Cli::command();
    // Parsing builds the command: global flags (--storage-option) are then among each
    // subcommand's arguments.
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let (mut invoked, mut matched) = (command, &matches);
    while let Some((name, sub_matches)) = matched.subcommand() {
        let Some(sub) = invoked.find_subcommand(name).cloned() else { break };
        (invoked, matched) = (sub, sub_matches);
    }
    (cli, invoked)
}

/// Library errors name the job setting they are about in backticks (`min_count`, as in the
/// jobs' `with_min_count`); on the command line that setting is a flag of `command` (its long
/// name or an alias), so the message names the flag (`--min-count`). Other backticked words
/// stay as they are.
pub fn name_flags(message: &str, command: &clap::Command) -> String {
    let flag_of = |setting: &str| {
        let spelled = setting.replace('_', "-");
        command
            .get_arguments()
            .find(|arg| {
                arg.get_long() == Some(spelled.as_str())
                    || arg.get_all_aliases().is_some_and(|aliases| aliases.contains(&spelled.as_str()))
            })
            .and_then(|arg| arg.get_long())
            .map(|long| format!("--{long}"))
    };
    let mut named = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let Some(length) = rest[open + 1..].find('`') else { break };
        let word = &rest[open + 1..open + 1 + length];
        let is_setting = !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        named.push_str(&rest[..open]);
        match flag_of(word).filter(|_| is_setting) {
            Some(flag) => named.push_str(&flag),
            None => named.push_str(&rest[open..open + length + 2]),
        }
        rest = &rest[open + length + 2..];
    }
    named.push_str(rest);
    named
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let storage =
        cli.storage_options.into_iter().fold(StorageOptions::new(), |options, (key, value)| options.with(key, value));
    match cli.command {
        Command::Cluster(args) => cluster::run(args, storage).await,
        #[cfg(feature = "train")]
        Command::Demo(args) => demo::run(args).await,
        #[cfg(not(feature = "train"))]
        Command::Demo(_) => without_training("demo"),
        Command::Eval(args) => eval::eval(args, storage).await,
        Command::Import(args) => import::run(args, storage).await,
        Command::Labels(args) => labels::run(args, storage).await,
        Command::Refresh(args) => refresh::run(args, storage).await,
        Command::Serve(args) => serve::run(args, storage).await,
        Command::Sql(args) => sql::run(args, storage).await,
        Command::Taxonomy(args) => taxonomy::run(args, storage).await,
        #[cfg(feature = "train")]
        Command::Train(args) => train::train(*args, storage).await,
        #[cfg(not(feature = "train"))]
        Command::Train(_) => without_training("train"),
    }
}

/// `--mode` of commands that write a Delta table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteMode {
    /// Refuse to write into an existing table.
    Error,
    /// Replace the table's contents (a new version; old versions stay readable).
    Overwrite,
    /// Add rows to the table.
    Append,
}

impl From<WriteMode> for deltalake::protocol::SaveMode {
    fn from(mode: WriteMode) -> Self {
        match mode {
            WriteMode::Error => Self::ErrorIfExists,
            WriteMode::Overwrite => Self::Overwrite,
            WriteMode::Append => Self::Append,
        }
    }
}

/// Splits `LOCATION@VERSION` into the location and the version (`None` without a version).
pub fn split_version(location: &str) -> anyhow::Result<(String, Option<u64>)> {
    match location.rsplit_once('@') {
        Some((path, version)) if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit()) => {
            Ok((path.to_string(), Some(version.parse()?)))
        }
        _ => Ok((location.to_string(), None)),
    }
}
