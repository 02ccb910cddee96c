//! An Arrow Flight SQL server over a [`LakecatSession`]: any Flight SQL client (the ADBC Flight
//! SQL driver, the Flight SQL JDBC driver behind DBeaver or Tableau) runs the same SQL as
//! `lakecat sql`, with the same tables, models and settings.
//!
//! What it guards, because clients are other people's programs:
//! - every call but the handshake needs credentials ([`Auth`]): a bearer token, or a user name
//!   and password exchanged in the Flight handshake for a token;
//! - read-only unless [`FlightSqlServer::with_writes`]: DDL (`CREATE EXTERNAL TABLE` reads any
//!   file the server can), DML (`COPY … TO` writes one) and `SET` (which would change the
//!   shared session for every client) are refused before anything runs;
//! - at most [`FlightSqlServer::with_max_queries`] results stream at once; past it a query is
//!   refused with RESOURCE_EXHAUSTED instead of queueing without bound;
//! - a query stops when its client cancels it (Flight's `CancelFlightInfo`, Flight SQL's
//!   `CancelQuery`) or drops the stream;
//! - tickets are random, single-use and expire, so one client cannot fetch another's results.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, CommandStatementUpdate, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

pub use crate::delta::without_view_types;
use crate::session::LakecatSession;
use crate::storage::redact;
use crate::{Error, Result};

/// How clients prove who they are.
#[derive(Clone)]
pub enum Auth {
    /// `authorization: Bearer TOKEN` on every call.
    Token(String),
    /// A user name and password, sent as `authorization: Basic …` in the Flight handshake
    /// (what ADBC's `username`/`password` and JDBC's `user`/`password` do), which returns a
    /// bearer token for the calls that follow; Basic on each call is accepted too.
    Basic { username: String, password: String },
    /// No credentials (only on a loopback address; see [`FlightSqlServer::serve`]).
    None,
}

impl std::fmt::Debug for Auth {
    // Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => write!(f, "Token(…)"),
            Self::Basic { username, .. } => write!(f, "Basic({username})"),
            Self::None => write!(f, "None"),
        }
    }
}

/// What the server reports as it runs; the CLI prints these as log lines.
#[derive(Debug, Clone, PartialEq)]
pub enum ServeEvent {
    Listening {
        address: SocketAddr,
        tls: bool,
    },
    QueryStarted {
        query: String,
        sql: String,
    },
    QueryFinished {
        query: String,
        rows: u64,
        elapsed: Duration,
    },
    QueryFailed {
        query: String,
        error: String,
    },
    QueryCancelled {
        query: String,
        rows: u64,
    },
    /// A call refused before it ran: credentials, read-only mode, the query limit.
    Refused {
        call: &'static str,
        reason: String,
    },
}

type Events = Arc<dyn Fn(&ServeEvent) + Send + Sync>;
/// The queries streaming now, by ticket handle.
type Running = Arc<Mutex<HashMap<String, Arc<Cancel>>>>;

/// Builds and runs a Flight SQL server over a session.
pub struct FlightSqlServer {
    session: LakecatSession,
    auth: Auth,
    writes: bool,
    max_queries: usize,
    ticket_ttl: Duration,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    events: Events,
}

impl FlightSqlServer {
    /// A read-only server over `session` that checks `auth`, streaming at most 8 results at once.
    pub fn new(session: LakecatSession, auth: Auth) -> Self {
        Self {
            session,
            auth,
            writes: false,
            max_queries: 8,
            ticket_ttl: Duration::from_secs(600),
            tls: None,
            events: Arc::new(|_| {}),
        }
    }

    /// Runs DDL, DML and `SET` statements too (off by default).
    pub fn with_writes(mut self, writes: bool) -> Self {
        self.writes = writes;
        self
    }

    /// How many results may stream at once (at least 1); a query past it is refused.
    pub fn with_max_queries(mut self, max_queries: usize) -> Self {
        self.max_queries = max_queries.max(1);
        self
    }

    /// How long a planned query's ticket stays valid before its DoGet (default 10 minutes).
    pub fn with_ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ticket_ttl = ttl;
        self
    }

    /// Serves TLS with this PEM certificate chain and private key.
    pub fn with_tls(mut self, certificate_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.tls = Some((certificate_pem, key_pem));
        self
    }

    /// Where [`ServeEvent`]s go.
    pub fn with_events(mut self, events: impl Fn(&ServeEvent) + Send + Sync + 'static) -> Self {
        self.events = Arc::new(events);
        self
    }

    /// Serves on `listener` until `shutdown` completes. Refuses [`Auth::None`] on an address
    /// other clients could reach.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<()> {
        let address = listener.local_addr().map_err(|source| Error::io("the server's address", source))?;
        if matches!(self.auth, Auth::None) && !address.ip().is_loopback() {
            return Err(Error::Input(format!(
                "refusing to serve {address} without authentication: give a token (LAKECAT_SERVE_TOKEN) or a \
                 user and password, or listen on 127.0.0.1"
            )));
        }
        let mut server = Server::builder();
        if let Some((certificate, key)) = &self.tls {
            // rustls cannot pick a provider when the build has two (aws-lc-rs and ring); the
            // object stores' TLS uses aws-lc-rs too. An already installed default stays.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
            server = server
                .tls_config(tls)
                .map_err(|error| Error::Input(format!("the TLS certificate or key is not usable: {error}")))?;
        }
        let events = self.events.clone();
        let service = Service::new(self)?;
        events(&ServeEvent::Listening { address, tls: service.tls });
        server
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown)
            .await
            .map_err(|error| Error::Input(format!("the Flight SQL server stopped: {error}")))
    }
}

/// A planned query waiting for its DoGet.
struct Pending {
    sql: String,
    frame: DataFrame,
    planned: Instant,
}

/// How a running query is told to stop.
#[derive(Default)]
struct Cancel {
    requested: AtomicBool,
    notify: Notify,
}

struct Service {
    ctx: SessionContext,
    auth: Auth,
    /// Key of the tokens the handshake issues (random per server start).
    token_key: [u8; 32],
    writes: bool,
    tls: bool,
    max_queries: usize,
    ticket_ttl: Duration,
    /// Key of the tickets' handles: unguessable without it, so one client cannot fetch another's.
    ticket_key: [u8; 32],
    tickets_issued: AtomicU64,
    permits: Arc<Semaphore>,
    pending: Mutex<HashMap<String, Pending>>,
    running: Running,
    sql_info: SqlInfoData,
    events: Events,
}

/// Planned but not yet fetched queries kept at most; the oldest expire first.
const MAX_PENDING: usize = 1024;

impl Service {
    fn new(server: FlightSqlServer) -> Result<Self> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "lakecat");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, !server.writes);
        info.append(SqlInfo::FlightSqlServerCancel, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        Ok(Self {
            ctx: server.session.ctx,
            auth: server.auth,
            token_key: random_bytes()?,
            ticket_key: random_bytes()?,
            tickets_issued: AtomicU64::new(0),
            writes: server.writes,
            tls: server.tls.is_some(),
            max_queries: server.max_queries,
            ticket_ttl: server.ticket_ttl,
            permits: Arc::new(Semaphore::new(server.max_queries)),
            pending: Mutex::new(HashMap::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
            sql_info: info.build().map_err(|error| Error::Input(format!("the server's SQL info: {error}")))?,
            events: server.events,
        })
    }

    fn refuse(&self, call: &'static str, status: Status) -> Status {
        (self.events)(&ServeEvent::Refused { call, reason: status.message().to_string() });
        status
    }

    /// Checks the caller's credentials.
    fn authorize(&self, call: &'static str, metadata: &MetadataMap) -> Result<(), Status> {
        let header = metadata.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
        let accepted = match &self.auth {
            Auth::None => true,
            Auth::Token(token) => header.strip_prefix("Bearer ").is_some_and(|given| same_secret(given, token)),
            Auth::Basic { username, .. } => match header.strip_prefix("Bearer ") {
                Some(given) => same_secret(given, &self.issued_token(username)),
                None => self.basic_credentials_match(header),
            },
        };
        if accepted {
            return Ok(());
        }
        let how = match self.auth {
            Auth::Basic { .. } => "log in with the server's user name and password (Flight handshake, Basic auth)",
            _ => "send `authorization: Bearer <token>` with the token the server was started with",
        };
        let problem = if header.is_empty() { "no credentials" } else { "wrong credentials" };
        Err(self.refuse(call, Status::unauthenticated(format!("{problem}: {how}"))))
    }

    fn basic_credentials_match(&self, header: &str) -> bool {
        let Auth::Basic { username, password } = &self.auth else { return false };
        let Some(encoded) = header.strip_prefix("Basic ") else { return false };
        // Padded or not: Go's Flight client (the ADBC driver) sends it without padding.
        let encoded = encoded.trim().trim_end_matches('=');
        let Ok(decoded) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded) else { return false };
        let Ok(decoded) = String::from_utf8(decoded) else { return false };
        let Some((user, pass)) = decoded.split_once(':') else { return false };
        // Both compared, always, so timing does not say which one was wrong.
        same_secret(user, username) & same_secret(pass, password)
    }

    fn issued_token(&self, username: &str) -> String {
        blake3::keyed_hash(&self.token_key, username.as_bytes()).to_hex().to_string()
    }

    /// Plans one statement, refusing what read-only mode does not run; runs nothing.
    async fn logical_plan(&self, call: &'static str, sql: &str) -> Result<LogicalPlan, Status> {
        let plan = self
            .ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|error| self.refuse(call, Status::invalid_argument(redact(&error.to_string()))))?;
        if !self.writes {
            let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
            if let Err(error) = options.verify_plan(&plan) {
                return Err(self.refuse(
                    call,
                    Status::permission_denied(format!(
                        "lakecat serve is read-only ({error}): it runs queries only; start it with --allow-writes \
                         to run DDL, DML and SET"
                    )),
                ));
            }
        }
        Ok(plan)
    }

    /// Plans one statement as [`Self::logical_plan`]; DDL and `SET` take effect here, as in
    /// `lakecat sql`, while a query only runs when its result is fetched.
    async fn plan(&self, call: &'static str, sql: &str) -> Result<DataFrame, Status> {
        let plan = self.logical_plan(call, sql).await?;
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|error| self.refuse(call, Status::invalid_argument(redact(&error.to_string()))))
    }

    /// Plans `sql` and returns the FlightInfo whose single ticket runs it.
    async fn flight_info(
        &self,
        call: &'static str,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let frame = self.plan(call, sql).await?;
        let schema = without_view_types(frame.schema().as_arrow());
        let issued = self.tickets_issued.fetch_add(1, Ordering::Relaxed);
        let handle = blake3::keyed_hash(&self.ticket_key, &issued.to_le_bytes()).to_hex().to_string();
        {
            let mut pending = lock(&self.pending);
            let now = Instant::now();
            pending.retain(|_, query| now.duration_since(query.planned) < self.ticket_ttl);
            while pending.len() >= MAX_PENDING {
                let oldest = pending.iter().min_by_key(|(_, query)| query.planned).map(|(handle, _)| handle.clone());
                match oldest {
                    Some(handle) => pending.remove(&handle),
                    None => break,
                };
            }
            pending.insert(handle.clone(), Pending { sql: sql.to_string(), frame, planned: now });
        }
        let ticket = TicketStatementQuery { statement_handle: handle.into_bytes().into() };
        single_ticket_info(&ticket, &schema, descriptor)
    }

    /// The ticket's query, streamed; holds one of the query permits until it ends or is dropped.
    async fn run(&self, handle: &[u8]) -> Result<Response<DoGetStream>, Status> {
        let handle = String::from_utf8_lossy(handle).into_owned();
        let Some(query) = lock(&self.pending).remove(&handle) else {
            return Err(self.refuse(
                "DoGet",
                Status::not_found(
                    "no such query: a ticket is good for one DoGet within the server's ticket lifetime; plan the \
                     query again (GetFlightInfo)",
                ),
            ));
        };
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            self.refuse(
                "DoGet",
                Status::resource_exhausted(format!(
                    "lakecat serve is already running its limit of {} queries (--max-queries); retry when one finishes",
                    self.max_queries
                )),
            )
        })?;
        let id = handle.chars().take(12).collect::<String>();
        (self.events)(&ServeEvent::QueryStarted { query: id.clone(), sql: query.sql });
        let stream = match query.frame.execute_stream().await {
            Ok(stream) => stream,
            Err(error) => {
                let message = redact(&error.to_string());
                (self.events)(&ServeEvent::QueryFailed { query: id, error: message.clone() });
                return Err(Status::invalid_argument(message));
            }
        };
        let schema = Arc::new(without_view_types(&stream.schema()));
        let cancel = Arc::new(Cancel::default());
        lock(&self.running).insert(handle.clone(), cancel.clone());
        let guard = Arc::new(Mutex::new(RunGuard {
            handle,
            id,
            running: self.running.clone(),
            events: self.events.clone(),
            started: Instant::now(),
            rows: 0,
            finished: false,
            _permit: permit,
        }));
        let counted = {
            let guard = guard.clone();
            let schema = schema.clone();
            stream.map(move |batch| {
                let mut guard = lock(&guard);
                match batch.and_then(|batch| Ok(cast_batch(&batch, &schema)?)) {
                    Ok(batch) => {
                        guard.rows += batch.num_rows() as u64;
                        Ok(batch)
                    }
                    Err(error) => {
                        let message = redact(&error.to_string());
                        guard.finished = true;
                        (guard.events)(&ServeEvent::QueryFailed { query: guard.id.clone(), error: message.clone() });
                        Err(FlightError::Tonic(Box::new(Status::internal(message))))
                    }
                }
            })
        };
        let stop = {
            let cancel = cancel.clone();
            async move { cancel.notify.notified().await }
        };
        // After the last batch, or after a cancel cut the stream short: a cancelled query ends
        // with an error, never as a shorter result that looks complete.
        let end = futures::stream::once(async move {
            let mut guard = lock(&guard);
            if guard.finished {
                return None::<Result<RecordBatch, FlightError>>;
            }
            guard.finished = true;
            if cancel.requested.load(Ordering::Acquire) {
                (guard.events)(&ServeEvent::QueryCancelled { query: guard.id.clone(), rows: guard.rows });
                return Some(Err(FlightError::Tonic(Box::new(Status::cancelled("the query was cancelled")))));
            }
            (guard.events)(&ServeEvent::QueryFinished {
                query: guard.id.clone(),
                rows: guard.rows,
                elapsed: guard.started.elapsed(),
            });
            None
        })
        .filter_map(|end| async move { end });
        let batches = counted.take_until(stop).chain(end);
        let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from);
        Ok(Response::new(Box::pin(encoded)))
    }

    /// Cancels the query a FlightInfo describes: drops it if not yet fetched, stops it if running.
    fn cancel(&self, info: &FlightInfo) -> CancelStatus {
        let mut status = CancelStatus::NotCancellable;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else { continue };
            let Ok(any) = Any::decode(ticket.ticket.clone()) else { continue };
            let Ok(Some(ticket)) = any.unpack::<TicketStatementQuery>() else { continue };
            let handle = String::from_utf8_lossy(&ticket.statement_handle).into_owned();
            if lock(&self.pending).remove(&handle).is_some() {
                status = CancelStatus::Cancelled;
            } else if let Some(cancel) = lock(&self.running).get(&handle) {
                cancel.requested.store(true, Ordering::Release);
                cancel.notify.notify_one();
                status = CancelStatus::Cancelled;
            }
        }
        status
    }

    /// Every table of the session, as (catalog, schema, table, arrow schema).
    async fn tables(&self) -> Vec<(String, String, String, Arc<Schema>)> {
        let mut tables = Vec::new();
        for catalog_name in self.ctx.catalog_names() {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                for table_name in schema.table_names() {
                    if let Ok(Some(table)) = schema.table(&table_name).await {
                        tables.push((catalog_name.clone(), schema_name.clone(), table_name, table.schema()));
                    }
                }
            }
        }
        tables.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        tables
    }
}

/// `batch` with the columns of `schema`: the server sends [`without_view_types`] of each result.
pub fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema_ref().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// A FlightInfo with one endpoint whose ticket is `ticket`: a query's handle, or a metadata
/// command itself (answered by its do_get_*).
fn single_ticket_info(
    ticket: &impl ProstMessageExt,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(status_from)?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Streams a batch to the client per record batch of the query.
type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// Releases a query's permit and registration however its stream ends, and reports a
/// stream dropped before its end (client cancel or disconnect) as cancelled.
struct RunGuard {
    handle: String,
    id: String,
    running: Running,
    events: Events,
    started: Instant,
    rows: u64,
    finished: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.handle);
        if !self.finished {
            (self.events)(&ServeEvent::QueryCancelled { query: self.id.clone(), rows: self.rows });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Compares secrets by their hashes, in time independent of where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    blake3::hash(given.as_bytes()) == blake3::hash(expected.as_bytes())
}

/// A secret from the OS's generator (never a guessable fallback: it keys tokens and tickets).
fn random_bytes() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom_02::getrandom(&mut bytes)
        .map_err(|error| Error::Input(format!("no random source for the server's tokens and tickets: {error}")))?;
    Ok(bytes)
}

fn status_from(error: impl std::fmt::Display) -> Status {
    Status::internal(redact(&error.to_string()))
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        self.authorize("Handshake", request.metadata())?;
        let token = match &self.auth {
            Auth::Basic { username, .. } => self.issued_token(username),
            Auth::Token(token) => token.clone(),
            Auth::None => String::new(),
        };
        let reply = HandshakeResponse { protocol_version: 0, payload: token.clone().into_bytes().into() };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let header = MetadataValue::try_from(format!("Bearer {token}")).map_err(status_from)?;
            response.metadata_mut().insert("authorization", header);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        self.flight_info("GetFlightInfo", &query.query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        // The handle is the statement's SQL: a prepared statement holds no server state.
        let sql = String::from_utf8(query.prepared_statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("not a prepared statement handle of this server"))?;
        self.flight_info("GetFlightInfo", &sql, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        self.run(&ticket.statement_handle).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.authorize("DoPut", request.metadata())?;
        let batches = self.plan("DoPut", &command.query).await?.collect().await.map_err(status_from)?;
        // DML reports its row count in a `count` column; DDL and SET report nothing.
        let count = batches
            .iter()
            .filter_map(|batch| batch.column_by_name("count"))
            .filter_map(|column| column.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .flat_map(|counts| counts.iter().flatten())
            .sum::<u64>();
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.authorize("CreatePreparedStatement", request.metadata())?;
        let plan = self.logical_plan("CreatePreparedStatement", &query.query).await?;
        let schema = without_view_types(plan.schema().as_arrow());
        let message: IpcMessage = SchemaAsIpc::new(&schema, &Default::default()).try_into().map_err(status_from)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema: message.0,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.authorize("ClosePreparedStatement", request.metadata())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.authorize("CancelQuery", request.metadata())?;
        let info = FlightInfo::decode(query.info).map_err(|error| Status::invalid_argument(error.to_string()))?;
        // The deprecated CancelQuery result uses the same numbers as CancelFlightInfo's.
        Ok(ActionCancelQueryResult { result: self.cancel(&info) as i32 })
    }

    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            return Err(Status::unimplemented(format!("lakecat serve has no action {:?}", request.get_ref().r#type)));
        }
        self.authorize("CancelFlightInfo", request.metadata())?;
        let cancel = CancelFlightInfoRequest::decode(request.into_inner().body)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let info = cancel.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfo without a FlightInfo"))?;
        let result = CancelFlightInfoResult { status: self.cancel(&info) as i32 };
        let reply = arrow_flight::Result { body: result.encode_to_vec().into() };
        let stream: DoActionStream = Box::pin(futures::stream::iter([Ok(reply)]));
        Ok(Response::new(stream))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        single_ticket_info(&query, query.clone().into_builder(&self.sql_info).schema().as_ref(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        Ok(batch_stream(query.into_builder(&self.sql_info).build().map_err(status_from)?))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        single_ticket_info(&query, query.into_builder().schema().as_ref(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        let mut builder = query.into_builder();
        let mut names = self.ctx.catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        Ok(batch_stream(builder.build().map_err(status_from)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        single_ticket_info(&query, query.clone().into_builder().schema().as_ref(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        let mut builder = query.into_builder();
        let mut names = self.ctx.catalog_names();
        names.sort();
        for catalog_name in names {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else { continue };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema in schemas {
                builder.append(&catalog_name, schema);
            }
        }
        Ok(batch_stream(builder.build().map_err(status_from)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        single_ticket_info(&query, query.clone().into_builder().schema().as_ref(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        let mut builder = query.into_builder();
        for (catalog, schema, table, table_schema) in self.tables().await {
            let kind = if schema == "information_schema" { "VIEW" } else { "TABLE" };
            builder.append(catalog, schema, table, kind, &without_view_types(&table_schema)).map_err(status_from)?;
        }
        Ok(batch_stream(builder.build().map_err(status_from)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize("GetFlightInfo", request.metadata())?;
        single_ticket_info(&query, query.into_builder().schema().as_ref(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize("DoGet", request.metadata())?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(batch_stream(builder.build().map_err(status_from)?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

type DoActionStream = <Service as FlightService>::DoActionStream;
