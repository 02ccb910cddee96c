//! Scoring on an Apache DataFusion Ballista cluster: a scheduler and executors that know
//! lakecat's functions and Delta tables, and the client session that sends them plans.
//!
//! A plan travels as Ballista encodes it, plus [`codec`]'s parts: Delta tables by location and
//! version, model functions by bundle location and fingerprint. Executors load tables and
//! bundles themselves (from object storage in a real deployment) and refuse a bundle whose
//! fingerprint differs from the plan's. Session settings (`lakecat.*`) travel with the job.

pub mod codec;
pub mod scan;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::{SessionConfigExt, ballista_scalar_functions};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use lakecat_udfs::Device;
use tokio::net::TcpListener;

use self::codec::{LogicalCodec, ModelLoader, PhysicalCodec};
use crate::storage::StorageOptions;
use crate::{Error, Result};

/// The port a scheduler listens on unless told otherwise (Ballista's).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Seconds between an executor's heartbeats to its scheduler.
pub const EXECUTOR_HEARTBEAT_SECS: u64 = 5;

fn cluster_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Cluster(format!("{what}: {error}"))
}

/// The session configuration every part of a cluster starts from: lakecat's settings
/// registered, so that `lakecat.*` set on the client are accepted where the job runs.
///
/// Ballista 55's adaptive planner is off by default: a join with an empty Delta table on one
/// side (a refresh's first run) made it plan new stages without end.
/// `ballista.planner.adaptive.enabled=true` turns it back on.
pub(crate) fn cluster_config() -> SessionConfig {
    lakecat_udfs::config::session_config().upgrade_for_ballista().with_ballista_adaptive_query_planner(false)
}

/// Splits `df://HOST[:PORT]` into host and port.
pub fn parse_cluster_url(url: &str) -> Result<(String, u16)> {
    let parsed = url::Url::parse(url).ok().filter(|parsed| parsed.scheme() == "df" && parsed.host_str().is_some());
    let Some(parsed) = parsed else {
        return Err(Error::Input(format!(
            "--cluster {url:?}: expected df://HOST:PORT, the address of a scheduler started with \
             `lakecat cluster scheduler` (e.g. df://127.0.0.1:{DEFAULT_SCHEDULER_PORT})"
        )));
    };
    let host = parsed.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
    Ok((host, parsed.port().unwrap_or(DEFAULT_SCHEDULER_PORT)))
}

/// A client session whose queries run on the cluster at `url` (`df://HOST:PORT`), from a
/// [`cluster_config`] with the session's settings. Register functions on it after this call:
/// Ballista's upgrade of the session replaces them.
pub async fn client_context(url: &str, config: SessionConfig, storage: StorageOptions) -> Result<SessionContext> {
    let (host, port) = parse_cluster_url(url)?;
    // Ballista connects on the first query; say now, and plainly, when nothing listens there.
    let reach = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host.as_str(), port)));
    match reach.await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            return Err(Error::Cluster(format!(
                "cannot reach the scheduler at {url}: {error}; start one with `lakecat cluster scheduler`"
            )));
        }
        Err(_) => return Err(Error::Cluster(format!("the scheduler at {url} did not answer within 10 s"))),
    }
    let models = Arc::new(ModelLoader::new("the client", Device::Cpu, None, storage));
    let config = config
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::new(models.clone())))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::new(models)));
    let state = SessionStateBuilder::new().with_default_features().with_config(config).build();
    Ok(SessionContext::remote_with_state(&format!("df://{host}:{port}"), state).await?)
}

/// Builds a Ballista scheduler that plans lakecat's queries.
#[derive(Debug, Clone)]
pub struct SchedulerBuilder {
    address: SocketAddr,
    storage: StorageOptions,
    task_max_failures: usize,
    executor_timeout_secs: u64,
}

impl SchedulerBuilder {
    pub fn new(address: SocketAddr) -> Self {
        let defaults = SchedulerConfig::default();
        Self {
            address,
            storage: StorageOptions::default(),
            task_max_failures: defaults.task_max_failures,
            executor_timeout_secs: defaults.executor_timeout_seconds,
        }
    }

    /// Options for the object stores of the tables and bundles it plans with.
    pub fn with_storage_options(mut self, storage: StorageOptions) -> Self {
        self.storage = storage;
        self
    }

    /// How often one task may fail (an executor lost, say) before its job fails.
    pub fn with_task_max_failures(mut self, failures: usize) -> Self {
        self.task_max_failures = failures;
        self
    }

    /// How long an executor may stay silent before its tasks are run elsewhere (and, when it was
    /// the last one, before running queries fail). Longer than the executors' heartbeat
    /// interval ([`EXECUTOR_HEARTBEAT_SECS`]).
    pub fn with_executor_timeout_secs(mut self, seconds: u64) -> Self {
        self.executor_timeout_secs = seconds;
        self
    }

    /// Binds the address (port 0 picks a free one); [`BoundScheduler::serve`] then serves.
    pub async fn bind(self) -> Result<BoundScheduler> {
        let listener = TcpListener::bind(self.address)
            .await
            .map_err(|error| cluster_error(&format!("bind {}", self.address), error))?;
        let address = listener.local_addr().map_err(|error| cluster_error("bind", error))?;
        let models = Arc::new(ModelLoader::new(format!("the scheduler at {address}"), Device::Cpu, None, self.storage));
        let mut config = SchedulerConfig::default()
            .with_hostname(address.ip().to_string())
            .with_port(address.port())
            .with_override_config_producer(Arc::new(cluster_config))
            .with_override_session_builder(Arc::new(|config| {
                let mut state = default_session_builder(config)?;
                for function in lakecat_udfs::model_free_functions() {
                    state.register_udf(Arc::new(function))?;
                }
                Ok(state)
            }));
        config.bind_host = address.ip().to_string();
        config.task_max_failures = self.task_max_failures;
        config.executor_timeout_seconds = self.executor_timeout_secs;
        config.expire_dead_executor_interval_seconds = (self.executor_timeout_secs / 3).max(1);
        // With every executor lost, running queries fail after this long instead of waiting.
        config.no_executors_grace_period_seconds = self.executor_timeout_secs;
        config.override_logical_codec = Some(Arc::new(LogicalCodec::new(models.clone())));
        config.override_physical_codec = Some(Arc::new(PhysicalCodec::new(models)));
        config.validate().map_err(|error| cluster_error("scheduler settings", error))?;
        let config = Arc::new(config);
        let cluster =
            BallistaCluster::new_from_config(&config).await.map_err(|error| cluster_error("scheduler state", error))?;
        Ok(BoundScheduler { listener, address, cluster, config })
    }
}

/// A scheduler with its address bound, not yet serving.
pub struct BoundScheduler {
    listener: TcpListener,
    address: SocketAddr,
    cluster: BallistaCluster,
    config: Arc<SchedulerConfig>,
}

impl BoundScheduler {
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<()> {
        let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(self.cluster, self.config)
            .await
            .map_err(|error| cluster_error("scheduler", error))?;
        start_grpc_service_with_listener(self.listener, scheduler)
            .await
            .map_err(|error| cluster_error("scheduler", error))
    }
}

/// Builds a Ballista executor that runs lakecat's functions and scans.
#[derive(Debug, Clone)]
pub struct ExecutorBuilder {
    scheduler: (String, u16),
    bind_host: String,
    external_host: Option<String>,
    flight_port: u16,
    grpc_port: u16,
    task_slots: usize,
    device: Device,
    batch_size: Option<usize>,
    work_dir: Option<String>,
    storage: StorageOptions,
}

impl ExecutorBuilder {
    /// An executor of the scheduler at `url` (`df://HOST:PORT`).
    pub fn new(url: &str) -> Result<Self> {
        let defaults = ExecutorProcessConfig::default();
        Ok(Self {
            scheduler: parse_cluster_url(url)?,
            bind_host: defaults.bind_host,
            external_host: None,
            flight_port: defaults.port,
            grpc_port: defaults.grpc_port,
            task_slots: defaults.vcores,
            device: Device::Auto,
            batch_size: None,
            work_dir: None,
            storage: StorageOptions::default(),
        })
    }

    /// The address it listens on; `external_host` is the name others reach it by (default:
    /// the bind address).
    pub fn with_address(mut self, bind_host: impl Into<String>, external_host: Option<String>) -> Self {
        self.bind_host = bind_host.into();
        self.external_host = external_host;
        self
    }

    /// Its ports: Arrow Flight (results and shuffles are fetched there) and gRPC (tasks).
    pub fn with_ports(mut self, flight_port: u16, grpc_port: u16) -> Self {
        self.flight_port = flight_port;
        self.grpc_port = grpc_port;
        self
    }

    /// Tasks run at once (default: one per core).
    pub fn with_task_slots(mut self, slots: usize) -> Self {
        self.task_slots = slots.max(1);
        self
    }

    /// Where its models run.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Rows per ONNX Runtime call.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// Where shuffle files go (default: a temporary directory).
    pub fn with_work_dir(mut self, dir: impl Into<String>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Options for the object stores of the tables and bundles it reads.
    pub fn with_storage_options(mut self, storage: StorageOptions) -> Self {
        self.storage = storage;
        self
    }

    /// Registers with the scheduler and runs tasks until the process is told to stop.
    pub async fn run(self) -> Result<()> {
        let name =
            format!("executor {}:{}", self.external_host.as_deref().unwrap_or(&self.bind_host), self.flight_port);
        let models = Arc::new(ModelLoader::for_executor(name, self.device, self.batch_size, self.storage));
        // Ballista's default executor registry lacks the array functions its client plans with
        // (array_length, …): the executor gets the client's set, and lakecat's.
        let mut functions = BallistaFunctionRegistry::default();
        let scalars = lakecat_udfs::model_free_functions().into_iter().map(Arc::new).chain(ballista_scalar_functions());
        functions.scalar_functions.extend(scalars.map(|function| (function.name().to_string(), function)));
        let config = ExecutorProcessConfig {
            bind_host: self.bind_host,
            external_host: self.external_host,
            port: self.flight_port,
            grpc_port: self.grpc_port,
            scheduler_host: self.scheduler.0,
            scheduler_port: self.scheduler.1,
            scheduler_connect_timeout_seconds: 30,
            vcores: self.task_slots,
            work_dir: self.work_dir,
            // Heartbeats often enough that a scheduler notices a lost executor within seconds.
            executor_heartbeat_interval_seconds: EXECUTOR_HEARTBEAT_SECS,
            override_function_registry: Some(Arc::new(functions)),
            override_config_producer: Some(Arc::new(cluster_config)),
            override_logical_codec: Some(Arc::new(LogicalCodec::new(models.clone()))),
            override_physical_codec: Some(Arc::new(PhysicalCodec::new(models))),
            ..ExecutorProcessConfig::default()
        };
        start_executor_process(Arc::new(config)).await.map_err(|error| cluster_error("executor", error))
    }
}
