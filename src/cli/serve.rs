use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use lakecat::serve::{Auth, FlightSqlServer, ServeEvent};

use super::sql::SessionArgs;

/// Serve lakecat's session over Arrow Flight SQL, for SQL tools and notebooks.
///
/// The same tables, models and settings as `lakecat sql`, reachable from any Flight SQL
/// client: the ADBC Flight SQL driver (Python, R, Go, Java), the Arrow Flight SQL JDBC driver
/// (DBeaver, Tableau, DataGrip), or any other Flight SQL client. Queries run with every lakecat
/// function: categorize(), taxonomy(), category_path(), ….
///
/// Clients authenticate with a bearer token (LAKECAT_SERVE_TOKEN) or with a user name and
/// password (--user and LAKECAT_SERVE_PASSWORD, exchanged in the Flight handshake for a token).
/// The server is read-only unless --allow-writes: DDL, DML (COPY … TO, INSERT) and SET are
/// refused. Without --tls-cert the connection is plain gRPC: on anything but 127.0.0.1 give a
/// certificate, or the token travels in clear text.
///
/// Example (then connect to grpc://127.0.0.1:50051 with the token):
///
///   LAKECAT_SERVE_TOKEN=$(openssl rand -hex 16) lakecat serve \
///     --table products=s3://lake/products --model fashion=s3://models/fashion
///
/// Python (pip install adbc-driver-flightsql pyarrow pandas):
///
///   import adbc_driver_flightsql.dbapi as flight_sql
///   conn = flight_sql.connect("grpc://127.0.0.1:50051",
///       db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + token})
///   cur = conn.cursor()
///   cur.execute("SELECT product_id, c.category, c.confidence FROM "
///               "(SELECT product_id, categorize(image, title, description) AS c FROM products)")
///   cur.fetch_arrow_table().to_pandas()
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:50051")]
    address: SocketAddr,
    /// The bearer token clients must send (`authorization: Bearer TOKEN`).
    #[arg(long, env = "LAKECAT_SERVE_TOKEN", hide_env_values = true, conflicts_with = "user")]
    token: Option<String>,
    /// The user name clients log in with (password from LAKECAT_SERVE_PASSWORD).
    #[arg(long)]
    user: Option<String>,
    /// Serve without authentication: only on a loopback address, for trying it out.
    #[arg(long, conflicts_with_all = ["token", "user"])]
    no_auth: bool,
    /// PEM certificate (chain) to serve TLS with (grpc+tls://); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Run DDL, DML and SET statements too (by default only queries run).
    #[arg(long)]
    allow_writes: bool,
    /// Results that may stream at once; a query past it is refused (RESOURCE_EXHAUSTED) until
    /// one finishes.
    #[arg(long, default_value_t = 8)]
    max_queries: usize,
}

pub async fn run(args: ServeArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let auth = match (&args.token, &args.user, args.no_auth) {
        (Some(token), _, _) if token.trim().is_empty() => bail!("LAKECAT_SERVE_TOKEN is empty"),
        (Some(token), _, _) => Auth::Token(token.clone()),
        (None, Some(user), _) => {
            let password = std::env::var("LAKECAT_SERVE_PASSWORD")
                .ok()
                .filter(|password| !password.is_empty())
                .context("--user needs the password in LAKECAT_SERVE_PASSWORD")?;
            Auth::Basic { username: user.clone(), password }
        }
        (None, None, true) => Auth::None,
        (None, None, false) => bail!(
            "lakecat serve needs credentials for its clients: set LAKECAT_SERVE_TOKEN (a bearer token), or \
             --user NAME with LAKECAT_SERVE_PASSWORD; --no-auth serves without them on 127.0.0.1 only"
        ),
    };
    let session = args.session.build(&storage).await?;
    let mut server = FlightSqlServer::new(session, auth)
        .with_writes(args.allow_writes)
        .with_max_queries(args.max_queries)
        .with_events(print_event);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        server = server.with_tls(read(cert)?, read(key)?);
    }
    let listener = tokio::net::TcpListener::bind(args.address)
        .await
        .with_context(|| format!("cannot listen on {}", args.address))?;
    let shutdown = async {
        // Without a signal handler the server runs until killed, which is fine too.
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("lakecat serve: stopping (Ctrl-C)");
        }
    };
    server.serve(listener, shutdown).await?;
    Ok(())
}

fn print_event(event: &ServeEvent) {
    match event {
        ServeEvent::Listening { address, tls } => {
            let scheme = if *tls { "grpc+tls" } else { "grpc" };
            eprintln!("lakecat serve: listening on {scheme}://{address}");
        }
        ServeEvent::QueryStarted { query, sql } => {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown: String = sql.chars().take(200).collect();
            let more = if shown.len() < sql.len() { " …" } else { "" };
            eprintln!("query {query}: {shown}{more}");
        }
        ServeEvent::QueryFinished { query, rows, elapsed } => {
            eprintln!("query {query}: {rows} rows in {:.2} s", elapsed.as_secs_f64());
        }
        ServeEvent::QueryFailed { query, error } => eprintln!("query {query} failed: {error}"),
        ServeEvent::QueryCancelled { query, rows } => eprintln!("query {query} cancelled after {rows} rows"),
        ServeEvent::Refused { call, reason } => eprintln!("refused {call}: {reason}"),
    }
}
