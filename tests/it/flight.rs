//! `lakecat serve` as SQL tools meet it: the server runs as its own process on 127.0.0.1 and
//! is queried by the ADBC Flight SQL driver from PyPI (tests/flight/client.py) and by
//! arrow-flight's Rust client, both over the network.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightClient, FlightDescriptor};
use futures::StreamExt;
use lakecat::SessionBuilder;
use prost::Message;
use serde_json::Value;

use crate::common::{fixture, repo_root};
use crate::s3::venv_python;

const TOKEN: &str = "t0ken-for-tests";

/// A `lakecat serve` process, killed when dropped.
struct Server {
    child: Child,
    address: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn uri(&self) -> String {
        format!("grpc://{}", self.address)
    }
}

/// Starts `lakecat serve` over the fixture's tables and both models, with `extra` flags and
/// environment; waits for the address it prints.
fn serve(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let fixture = fixture();
    let products = format!("products={}", fixture.products);
    let bad_images = format!("bad_images={}", fixture.bad_images);
    let baseline = format!("baseline={}", fixture.baseline.display());
    let text_only = format!("text_only={}", fixture.text_only.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakecat"));
    command
        .args(["serve", "--address", "127.0.0.1:0", "--batch-size", "16"])
        .args(["--table", &products, "--table", &bad_images, "--model", &baseline, "--model", &text_only])
        .args(extra)
        .env_remove("LAKECAT_SERVE_TOKEN")
        .env_remove("LAKECAT_SERVE_PASSWORD")
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("lakecat serve starts");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (sender, address) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            {
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            if let Some(address) = line.split("listening on ").nth(1) {
                let _ = sender.send(address.split("://").nth(1).unwrap_or_default().to_string());
            }
        }
    });
    match address.recv_timeout(Duration::from_secs(60)) {
        Ok(address) => Server { child, address, log },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("lakecat serve did not start ({status}): {}", log.lock().unwrap());
        }
    }
}

/// Runs a scenario of tests/flight/client.py (killed after 120 s) and returns its JSON outcome.
fn client(env: &[(&str, &str)], args: &[&str]) -> Value {
    let (python, site_packages) = venv_python("adbc_driver_flightsql");
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/flight/client.py"))
        .args(args)
        .env("PYTHONPATH", site_packages)
        .env_remove("FLIGHT_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Flight SQL client runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the Flight SQL client ran past 120 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!("client {args:?} printed {stdout:?}; stderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

fn token() -> [(&'static str, &'static str); 1] {
    [("FLIGHT_TOKEN", TOKEN)]
}

/// What a failed scenario said, for checking the server's message.
fn error_of(outcome: &Value) -> String {
    assert_eq!(outcome["ok"], false, "expected a refusal, got {outcome}");
    outcome["error"].as_str().unwrap_or_default().to_string()
}

fn read_ipc(path: &Path) -> RecordBatch {
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(path).unwrap(), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&schema, &batches).unwrap()
}

/// The same SQL through lakecat's own session (what `lakecat sql` runs), with the server's settings.
async fn local(sql: &str, settings: &[(&str, &str)]) -> RecordBatch {
    let fixture = fixture();
    let mut builder = SessionBuilder::new()
        .with_table("products", &fixture.products)
        .with_table("bad_images", &fixture.bad_images)
        .with_model("baseline", &fixture.baseline)
        .with_model("text_only", &fixture.text_only)
        .with_batch_size(16);
    for (key, value) in settings {
        builder = builder.with_setting(*key, *value);
    }
    let session = builder.build().await.unwrap();
    let frame = session.ctx.sql(sql).await.unwrap();
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batch = concat_batches(&schema, &frame.collect().await.unwrap()).unwrap();
    // The server sends view types as plain strings and binaries; values are the same.
    lakecat::serve::cast_batch(&batch, &Arc::new(lakecat::serve::without_view_types(&schema))).unwrap()
}

/// Whole tables equal: column names, types and every value.
fn assert_same_table(served: &RecordBatch, local: &RecordBatch, what: &str) {
    let names = |batch: &RecordBatch| {
        batch
            .schema()
            .fields()
            .iter()
            .map(|field| (field.name().clone(), field.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(served), names(local), "{what}: columns");
    assert_eq!(served.num_rows(), local.num_rows(), "{what}: rows");
    for (index, (served, local)) in served.columns().iter().zip(local.columns()).enumerate() {
        assert_eq!(served.to_data(), local.to_data(), "{what}: column {index}");
    }
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_results_equal_lakecat_sql() {
    let setting = ("lakecat.confidence_threshold", "0.9");
    let server = serve(&["--setting", "lakecat.confidence_threshold=0.9"], &[("LAKECAT_SERVE_TOKEN", TOKEN)]);
    let dir = tempfile::tempdir().unwrap();
    let queries = [
        (
            "scores",
            "SELECT product_id, c, t.category AS text_only FROM (SELECT product_id, \
             categorize(image, title, description) AS c, categorize('text_only', image, title, description) AS t \
             FROM products) ORDER BY product_id",
        ),
        (
            "bad rows",
            "SELECT product_id, categorize(image, title, description) AS c FROM bad_images ORDER BY product_id",
        ),
        (
            "taxonomy join",
            "SELECT t.category_id, t.name, count(*) AS products FROM \
             (SELECT categorize(image, title, description) AS c FROM products) p \
             JOIN taxonomy() t ON t.category_id = p.c.category_id GROUP BY t.category_id, t.name ORDER BY t.category_id",
        ),
        ("settings", "SELECT value FROM information_schema.df_settings WHERE name = 'lakecat.confidence_threshold'"),
    ];
    for (what, sql) in queries {
        let out = temp_file(&dir, &format!("{}.arrow", what.replace(' ', "_")));
        let outcome = client(&token(), &[&server.uri(), "query", sql, &out]);
        assert_eq!(outcome["ok"], true, "{what}: {outcome}\n{}", server.log());
        assert_same_table(&read_ipc(Path::new(&out)), &local(sql, &[setting]).await, what);
    }
    let scores = read_ipc(&dir.path().join("scores.arrow"));
    assert_eq!(scores.schema().field(0).data_type(), &arrow::datatypes::DataType::Utf8, "no view types on the wire");
    let bad = read_ipc(&dir.path().join("bad_rows.arrow"));
    let local_bad = local("SELECT count(*) AS n FROM bad_images", &[]).await;
    assert_eq!(
        bad.num_rows() as i64,
        local_bad.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0),
        "one row out per bad row in"
    );
    let tables = client(&token(), &[&server.uri(), "tables"]);
    let names: Vec<&str> = tables["value"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(names.contains(&"products") && names.contains(&"bad_images"), "{tables}");
    assert!(server.log().contains("rows in"), "the server logs each query: {}", server.log());
}

#[test]
fn flight_sql_refuses_bad_credentials_writes_and_bad_sql_and_keeps_serving() {
    let server = serve(&[], &[("LAKECAT_SERVE_TOKEN", TOKEN)]);
    let dir = tempfile::tempdir().unwrap();
    let out = temp_file(&dir, "out.arrow");
    let uri = server.uri();
    let missing = client(&[], &[&uri, "query", "SELECT 1", &out]);
    assert!(error_of(&missing).contains("no credentials"), "{missing}");
    let wrong = client(&[("FLIGHT_TOKEN", "guess")], &[&uri, "query", "SELECT 1", &out]);
    assert!(error_of(&wrong).contains("wrong credentials"), "{wrong}");

    let leak = dir.path().join("leak.csv");
    let copy = format!("COPY (SELECT title FROM products) TO '{}' STORED AS CSV", leak.display());
    for statement in [
        "CREATE TABLE copied AS SELECT * FROM products",
        "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'",
        copy.as_str(),
        "SET lakecat.confidence_threshold = 0.1",
    ] {
        for scenario in [vec![uri.as_str(), "query", statement, &out], vec![uri.as_str(), "update", statement]] {
            let refused = client(&token(), &scenario);
            assert!(error_of(&refused).contains("read-only"), "{statement}: {refused}");
        }
    }
    assert!(!leak.exists(), "a refused COPY wrote nothing");

    let bad_sql = client(&token(), &[&uri, "query", "SELEC title FROM products", &out]);
    assert!(error_of(&bad_sql).contains("SQL error"), "{bad_sql}");
    let missing_table = client(&token(), &[&uri, "query", "SELECT * FROM no_such_table", &out]);
    assert!(error_of(&missing_table).contains("no_such_table"), "{missing_table}");

    let after = client(&token(), &[&uri, "query", "SELECT count(*) AS n FROM products", &out]);
    assert_eq!(after["ok"], true, "still serving after the refusals: {after}\n{}", server.log());
    assert!(
        server.log().contains("refused DoGet") || server.log().contains("refused GetFlightInfo"),
        "{}",
        server.log()
    );
    assert!(!server.log().contains(TOKEN), "the token is never logged");
}

#[test]
fn flight_sql_basic_auth_over_tls_with_writes_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes a test certificate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (cert_flag, key_flag) = (cert.display().to_string(), key.display().to_string());
    let server = serve(
        &["--user", "analyst", "--tls-cert", &cert_flag, "--tls-key", &key_flag, "--allow-writes"],
        &[("LAKECAT_SERVE_PASSWORD", "s3cret")],
    );
    assert!(server.log().contains("grpc+tls://"), "{}", server.log());
    let tls_uri = format!("grpc+tls://{}", server.address);
    let login = [("FLIGHT_USER", "analyst"), ("FLIGHT_PASSWORD", "s3cret"), ("FLIGHT_TLS_ROOT", cert_flag.as_str())];
    let out = temp_file(&dir, "out.arrow");

    let created = client(
        &login,
        &[&tls_uri, "update", "CREATE VIEW tshirts AS SELECT * FROM products WHERE title LIKE '%Tshirt%'"],
    );
    assert_eq!(created["ok"], true, "{created}\n{}", server.log());
    let counted = client(&login, &[&tls_uri, "query", "SELECT count(*) AS n FROM tshirts", &out]);
    assert_eq!(counted["ok"], true, "{counted}\n{}", server.log());
    let n = read_ipc(Path::new(&out));
    assert!(n.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0) > 0);

    let wrong = [("FLIGHT_USER", "analyst"), ("FLIGHT_PASSWORD", "guess"), ("FLIGHT_TLS_ROOT", cert_flag.as_str())];
    let refused = client(&wrong, &[&tls_uri, "query", "SELECT 1", &out]);
    assert!(error_of(&refused).to_lowercase().contains("credentials"), "{refused}");
    let plain = client(&login, &[&server.uri(), "query", "SELECT 1", &out]);
    assert_eq!(plain["ok"], false, "plain gRPC to a TLS server fails: {plain}");
    assert!(!server.log().contains("s3cret"), "the password is never logged");
}

/// Many rows of image bytes, in small batches: more than the connection's flow-control window,
/// so the server is still streaming while the client holds the first batch.
const LONG_QUERY: &str = "SELECT p.image FROM products p CROSS JOIN generate_series(1, 50)";
const LONG_QUERY_ROWS: usize = 239 * 50;

#[test]
fn flight_sql_serves_two_clients_and_bounds_and_cancels_queries() {
    let server = serve(&[], &[("LAKECAT_SERVE_TOKEN", TOKEN)]);
    let dir = tempfile::tempdir().unwrap();
    let prefix = temp_file(&dir, "parallel");
    let sql = "SELECT product_id, c.category FROM (SELECT product_id, categorize(image, title, description) AS c \
               FROM products) ORDER BY product_id";
    let both = client(&token(), &[&server.uri(), "parallel", sql, "2", &prefix]);
    assert_eq!(both["ok"], true, "{both}\n{}", server.log());
    let first = read_ipc(Path::new(&format!("{prefix}.0")));
    assert_same_table(&read_ipc(Path::new(&format!("{prefix}.1"))), &first, "two clients at once");
    assert_eq!(first.num_rows(), 239);

    let limited = serve(
        &["--max-queries", "1", "--setting", "datafusion.execution.batch_size=16"],
        &[("LAKECAT_SERVE_TOKEN", TOKEN)],
    );
    let outcome = client(&token(), &[&limited.uri(), "limit", LONG_QUERY]);
    assert!(outcome["first_batch_rows"].as_u64().unwrap_or(0) > 0, "{outcome}");
    assert!(error_of(&outcome["second_while_first_streams"]).contains("limit of 1 queries"), "{outcome}");
    assert_eq!(outcome["first_after_cancel"]["ok"], false, "a cancelled query does not end as a result: {outcome}");
    assert_eq!(outcome["second_after_cancel"]["ok"], true, "the cancel freed the slot: {outcome}\n{}", limited.log());
    assert!(limited.log().contains("cancelled after"), "{}", limited.log());
}

/// Flight's CancelFlightInfo, through arrow-flight's client: a planned query is dropped, and a
/// streaming one ends with an error, never as a shorter result that looks complete.
#[tokio::test(flavor = "multi_thread")]
async fn flight_cancel_flight_info_stops_planned_and_streaming_queries() {
    let server = serve(&["--setting", "datafusion.execution.batch_size=16"], &[("LAKECAT_SERVE_TOKEN", TOKEN)]);
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address)).unwrap().connect().await.unwrap();
    let mut flight = FlightClient::new(channel);
    flight.add_header("authorization", &format!("Bearer {TOKEN}")).unwrap();
    let plan = |sql: &str| {
        FlightDescriptor::new_cmd(
            CommandStatementQuery { query: sql.into(), transaction_id: None }.as_any().encode_to_vec(),
        )
    };

    let planned = flight.get_flight_info(plan(LONG_QUERY)).await.unwrap();
    let cancelled = flight.cancel_flight_info(CancelFlightInfoRequest::new(planned.clone())).await.unwrap();
    assert_eq!(cancelled.status, CancelStatus::Cancelled as i32);
    let ticket = planned.endpoint[0].ticket.clone().unwrap();
    let gone = flight.do_get(ticket).await.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(gone.contains("no such query"), "{gone}");

    let running = flight.get_flight_info(plan(LONG_QUERY)).await.unwrap();
    let mut stream = flight.do_get(running.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    let mut canceller = FlightClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address)).unwrap().connect().await.unwrap(),
    );
    canceller.add_header("authorization", &format!("Bearer {TOKEN}")).unwrap();
    let cancelled = canceller.cancel_flight_info(CancelFlightInfoRequest::new(running)).await.unwrap();
    assert_eq!(cancelled.status, CancelStatus::Cancelled as i32);
    let mut rows = first.num_rows();
    let mut ended_with = None;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(batch) => rows += batch.num_rows(),
            Err(error) => {
                ended_with = Some(error.to_string());
                break;
            }
        }
    }
    let ended_with = ended_with.unwrap_or_else(|| panic!("the stream ended without an error after {rows} rows"));
    assert!(ended_with.contains("cancelled"), "{ended_with}");
    assert!(rows < LONG_QUERY_ROWS, "cancelled before the end: {rows} rows");
}

#[test]
fn serve_refuses_to_start_without_credentials_or_open_without_auth() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lakecat"))
            .args(args)
            .env_remove("LAKECAT_SERVE_TOKEN")
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    let fixture = fixture();
    let model = format!("baseline={}", fixture.baseline.display());
    let none = run(&["serve", "--model", &model, "--address", "127.0.0.1:0"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("LAKECAT_SERVE_TOKEN"), "{none:?}");
    let open = run(&["serve", "--model", &model, "--address", "0.0.0.0:0", "--no-auth"]);
    assert!(!open.status.success());
    assert!(String::from_utf8_lossy(&open.stderr).contains("without authentication"), "{open:?}");
    let help = String::from_utf8_lossy(&run(&["serve", "--help"]).stdout).into_owned();
    assert!(help.contains("adbc_driver_flightsql") && help.contains("--allow-writes"), "{help}");
}
