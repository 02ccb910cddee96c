use std::net::SocketAddr;

use clap::{Args, Subcommand};
use lakecat::cluster::{ExecutorBuilder, SchedulerBuilder};

use lakecat_udfs::Device;

/// Run lakecat on an Apache DataFusion Ballista cluster.
///
/// A scheduler plans queries; executors run them. Both know lakecat's functions and Delta
/// tables, so the same SQL and the same refresh run there with --cluster df://HOST:PORT:
/// `lakecat sql --cluster …` and `lakecat refresh --cluster …` (the refresh still commits
/// from where it runs). Executors open tables and load bundles themselves, with their own
/// --storage-option and environment (AWS_*, GOOGLE_*, AZURE_*), and refuse a bundle whose
/// fingerprint differs from the one the query was planned with.
///
/// A local cluster (three terminals, or `&`):
///
///   lakecat cluster scheduler --address 127.0.0.1:50050
///   lakecat cluster executor --scheduler df://127.0.0.1:50050 --port 50051 --grpc-port 50052
///   lakecat cluster executor --scheduler df://127.0.0.1:50050 --port 50061 --grpc-port 50062
///   lakecat sql --cluster df://127.0.0.1:50050 --table products=lake/products \
///     --model models/fashion "SELECT count(*) FROM products"
///
/// Ballista's warnings and errors go to standard error (RUST_LOG=info shows each task). The
/// ports carry plans, data and results without authentication: keep them on a private network
/// (see SECURITY.md).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    Scheduler(SchedulerArgs),
    Executor(ExecutorArgs),
}

/// Run a scheduler: clients connect to it with --cluster df://HOST:PORT.
#[derive(Debug, Args)]
struct SchedulerArgs {
    /// Address to listen on (port 0 picks a free one and prints it).
    #[arg(long, default_value = "127.0.0.1:50050")]
    address: SocketAddr,
    /// Times one task may fail (an executor lost mid-query) before the query fails.
    #[arg(long, default_value_t = 4)]
    task_max_failures: usize,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run
    /// elsewhere; with no executor left, running queries fail after as long. Executors beat
    /// every 5 s, so at least 10.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(10..))]
    executor_timeout_secs: u64,
}

/// Run an executor of a scheduler.
#[derive(Debug, Args)]
struct ExecutorArgs {
    /// The scheduler to register with.
    #[arg(long, value_name = "df://HOST:PORT", default_value = "df://127.0.0.1:50050")]
    scheduler: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// The host name others reach this executor by (default: --bind).
    #[arg(long)]
    external_host: Option<String>,
    /// Arrow Flight port: results and shuffle data are fetched here.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC port: the scheduler sends tasks here.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (default: one per core).
    #[arg(long)]
    task_slots: Option<usize>,
    /// Where models run: auto (CUDA when available, else CPU), cpu or cuda.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Rows per ONNX Runtime call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
}

pub async fn run(args: ClusterArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match args.command {
        ClusterCommand::Scheduler(args) => {
            let scheduler = SchedulerBuilder::new(args.address)
                .with_storage_options(storage)
                .with_task_max_failures(args.task_max_failures)
                .with_executor_timeout_secs(args.executor_timeout_secs)
                .bind()
                .await?;
            let address = scheduler.local_addr();
            eprintln!("lakecat cluster scheduler listening on {address} (clients: --cluster df://{address})");
            scheduler.serve().await?;
        }
        ClusterCommand::Executor(args) => {
            let mut executor = ExecutorBuilder::new(&args.scheduler)?
                .with_address(&args.bind, args.external_host.clone())
                .with_ports(args.port, args.grpc_port)
                .with_device(args.device)
                .with_batch_size(args.batch_size)
                .with_storage_options(storage);
            if let Some(slots) = args.task_slots {
                executor = executor.with_task_slots(slots);
            }
            if let Some(dir) = &args.work_dir {
                executor = executor.with_work_dir(dir);
            }
            let device = clap::ValueEnum::to_possible_value(&args.device).map(|value| value.get_name().to_string());
            eprintln!(
                "lakecat cluster executor on {}:{} (gRPC {}), models on {}, scheduler {}",
                args.external_host.as_deref().unwrap_or(&args.bind),
                args.port,
                args.grpc_port,
                device.unwrap_or_default(),
                args.scheduler
            );
            executor.run().await?;
        }
    }
    Ok(())
}
