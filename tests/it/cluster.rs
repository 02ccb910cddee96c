//! `lakecat cluster`: a Ballista scheduler and two executors started as their own processes on
//! 127.0.0.1, queried by `lakecat sql --cluster` and `lakecat refresh --cluster`; every result
//! is compared with the same command run locally.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{fixture, repo_root};
use crate::refresh::{finish, predictions, refresh_command};

/// A scheduler and its executors, killed when dropped.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lakecat() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakecat"));
    command.current_dir(repo_root());
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on `port` of 127.0.0.1.
fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the executor exited before listening on {port}");
        assert!(Instant::now() < deadline, "nothing listens on port {port} after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    /// A scheduler (with `scheduler_flags`) and `executors` executors of two task slots each.
    fn start(executors: usize, scheduler_flags: &[&str]) -> Cluster {
        let mut scheduler = lakecat()
            .args(["cluster", "scheduler", "--address", "127.0.0.1:0"])
            .args(scheduler_flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the scheduler starts");
        let stderr = scheduler.stderr.take().unwrap();
        let (sender, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("scheduler: {line}");
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = sender.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let address = address.recv_timeout(Duration::from_secs(60)).expect("the scheduler prints its address");
        let url = format!("df://{address}");
        let mut cluster = Cluster { url, scheduler, executors: Vec::new() };
        for _ in 0..executors {
            cluster.add_executor();
        }
        cluster
    }

    /// Starts one more executor (two task slots) and waits until it has registered.
    fn add_executor(&mut self) {
        let (port, grpc_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("lakecat-test-executor-{port}.log"));
        let mut executor = lakecat()
            .args(["cluster", "executor", "--scheduler", &self.url, "--task-slots", "2", "--device", "cpu"])
            .args(["--batch-size", "16", "--port", &port.to_string(), "--grpc-port", &grpc_port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("an executor starts");
        wait_for_port(port, &mut executor);
        wait_for_port(grpc_port, &mut executor);
        // Registration follows listening: give it a moment.
        std::thread::sleep(Duration::from_secs(2));
        self.executors.push(executor);
    }
}

/// A `lakecat sql` client reading its SQL from standard input, started with `model` as model
/// `shared`: returns it once it has loaded the model, with the fingerprint it printed.
fn waiting_client(cluster: &Cluster, model: &Path) -> (Child, BufReader<std::process::ChildStderr>, String) {
    let mut client = lakecat()
        .args(["sql", "--cluster", &cluster.url, "--format", "json"])
        .args(["--table", &format!("products={}", fixture().products)])
        .args(["--model", &format!("shared={}", model.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The client names the model's fingerprint once it has loaded it (before reading the SQL).
    let mut stderr = BufReader::new(client.stderr.take().unwrap());
    let mut loaded = String::new();
    while !loaded.starts_with("model shared: ") {
        loaded.clear();
        assert!(stderr.read_line(&mut loaded).unwrap() > 0, "the client exited before loading the model");
    }
    let fingerprint = loaded.split_whitespace().nth(2).unwrap().to_string();
    (client, stderr, fingerprint)
}

/// Sends a scoring query to a [`waiting_client`]; returns whether it succeeded, and its
/// standard error.
fn finish_client((mut client, mut stderr, _): (Child, BufReader<std::process::ChildStderr>, String)) -> (bool, String) {
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(b"SELECT c.category FROM (SELECT categorize(image, title, description) AS c FROM products)")
        .unwrap();
    drop(stdin);
    let output = client.wait_with_output().unwrap();
    let mut message = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut message).unwrap();
    (output.status.success(), message)
}

/// A copy of the fixture's baseline bundle, and a way to change it afterwards (as a retrained
/// bundle published at the same path would).
fn copied_bundle() -> tempfile::TempDir {
    let bundle = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&fixture().baseline).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bundle.path().join(entry.file_name())).unwrap();
    }
    bundle
}

fn change_bundle(bundle: &Path) {
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["metrics"]["retrained"] = Value::from(true);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

/// `lakecat sql` over the fixture's tables and models, on `cluster` or locally.
fn sql(cluster: Option<&Cluster>, models: &[String], query: &str) -> Output {
    let fixture = fixture();
    let mut command = lakecat();
    command
        .args(["sql", "--format", "json", "--batch-size", "16"])
        .args(["--table", &format!("products={}", fixture.products)])
        .args(["--table", &format!("bad_images={}", fixture.bad_images)]);
    for model in models {
        command.args(["--model", model]);
    }
    if let Some(cluster) = cluster {
        command.args(["--cluster", &cluster.url]);
    }
    command.arg(query).output().unwrap()
}

fn rows(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "lakecat sql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Equal rows, numbers to 1e-5 (ONNX Runtime may differ in the last bits between batch shapes).
fn assert_same_rows(local: &[Value], cluster: &[Value]) {
    fn same(left: &Value, right: &Value) -> bool {
        match (left, right) {
            (Value::Number(left), Value::Number(right)) => {
                (left.as_f64().unwrap_or(f64::NAN) - right.as_f64().unwrap_or(f64::NAN)).abs() <= 1e-5
            }
            (Value::Object(left), Value::Object(right)) => {
                left.len() == right.len()
                    && left.iter().all(|(key, value)| right.get(key).is_some_and(|other| same(value, other)))
            }
            (Value::Array(left), Value::Array(right)) => {
                left.len() == right.len() && left.iter().zip(right).all(|(left, right)| same(left, right))
            }
            _ => left == right,
        }
    }
    assert_eq!(local.len(), cluster.len(), "row counts differ");
    for (local, cluster) in local.iter().zip(cluster) {
        assert!(same(local, cluster), "local {local}\ncluster {cluster}");
    }
}

#[test]
fn the_cluster_scores_joins_and_reports_bad_rows_as_a_local_session_does() {
    let cluster = Cluster::start(2, &[]);
    let models = [fixture().baseline.display().to_string(), format!("text_only={}", fixture().text_only.display())];
    let queries = [
        "SELECT product_id, c.category_id AS category_id, c.category AS category, c.path AS path, \
         c.confidence AS confidence, c.top_k AS top_k, c.error AS error \
         FROM (SELECT product_id, categorize(image, title, description) AS c FROM products) ORDER BY product_id",
        // The second model, named in the call; a taxonomy() join and an aggregate across stages.
        "SELECT t.level_1 AS level_1, t.level_2 AS level_2, count(*) AS products \
         FROM (SELECT c.category_id AS id FROM (SELECT categorize('text_only', image, title, description) AS c \
         FROM products)) p \
         JOIN taxonomy('text_only') t ON p.id = t.category_id GROUP BY t.level_1, t.level_2 ORDER BY 1, 2",
        // One row out per row in, each bad row with its reason.
        "SELECT product_id, c.category AS category, c.error AS error, category_path(c.category_id) AS path \
         FROM (SELECT product_id, categorize(image, title, description) AS c FROM bad_images) ORDER BY product_id",
    ];
    for query in queries {
        let local = rows(&sql(None, &models, query));
        let remote = rows(&sql(Some(&cluster), &models, query));
        assert!(!local.is_empty(), "{query} returned no rows");
        assert_same_rows(&local, &remote);
    }
    let bad = rows(&sql(Some(&cluster), &models, queries[2]));
    assert!(bad.iter().any(|row| row.get("error").is_some()), "the bad rows carry their errors: {bad:?}");
}

#[test]
fn settings_reach_the_executors() {
    let cluster = Cluster::start(1, &[]);
    let models = [fixture().baseline.display().to_string()];
    let query = "SET lakecat.top_k = 1; SELECT array_length(c.top_k) AS k \
                 FROM (SELECT categorize(image, title, description) AS c FROM products) LIMIT 1";
    let local = rows(&sql(None, &models, query));
    assert_eq!(local, rows(&sql(Some(&cluster), &models, query)));
    assert_eq!(local[0]["k"], 1, "{local:?}");
}

#[tokio::test]
async fn a_refresh_through_the_cluster_writes_the_table_a_local_refresh_writes() {
    let cluster = Cluster::start(2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(&fixture().products);
    let (local, remote) = (dir.path().join("local"), dir.path().join("remote"));
    let model = &fixture().baseline;
    assert_eq!(finish(refresh_command(source, &local, model, 100).spawn().unwrap()).report()["scored"], 239);
    let first = finish(refresh_command(source, &remote, model, 100).args(["--cluster", &cluster.url]).spawn().unwrap());
    assert_eq!(first.report()["scored"], 239, "{first:?}");
    let second =
        finish(refresh_command(source, &remote, model, 100).args(["--cluster", &cluster.url]).spawn().unwrap());
    assert_eq!(second.report()["scored"], 0, "the second run has nothing to score: {second:?}");
    assert_eq!(predictions(&local).await, predictions(&remote).await);
}

#[tokio::test]
async fn a_lost_executor_fails_clearly_or_is_worked_around_and_a_rerun_converges() {
    let mut cluster = Cluster::start(2, &["--executor-timeout-secs", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(&fixture().products);
    let (local, remote) = (dir.path().join("local"), dir.path().join("remote"));
    let model = &fixture().baseline;
    finish(refresh_command(source, &local, model, 50).spawn().unwrap()).report();
    // Small chunks: a run of 24 commits.
    let run = refresh_command(source, &remote, model, 10).args(["--cluster", &cluster.url]).spawn().unwrap();
    // The executor goes once the refresh has committed its first chunk: what it still held
    // runs on the other one, or the run fails and says so.
    let deadline = Instant::now() + Duration::from_secs(120);
    while log_entries(&remote) == 0 {
        assert!(Instant::now() < deadline, "the refresh committed nothing in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lost = &mut cluster.executors[1];
    lost.kill().unwrap();
    lost.wait().unwrap();
    let interrupted = finish_within(run, Duration::from_secs(180));
    if interrupted.code != Some(0) {
        assert!(!interrupted.stderr.trim().is_empty(), "a failed run says why: {interrupted:?}");
        assert!(!interrupted.stderr.contains("panicked"), "{interrupted:?}");
    }
    let rerun = refresh_command(source, &remote, model, 50).args(["--cluster", &cluster.url]).spawn().unwrap();
    finish_within(rerun, Duration::from_secs(180)).report();
    assert_eq!(predictions(&local).await, predictions(&remote).await);
}

/// Commits in the Delta log at `table` (0 before the first).
fn log_entries(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// [`finish`], or a failure naming the hang when `child` runs past `limit` (then killed).
fn finish_within(child: Child, limit: Duration) -> crate::refresh::Outcome {
    let pid = child.id().to_string();
    let (sender, outcome) = mpsc::channel();
    std::thread::spawn(move || sender.send(finish(child)));
    outcome.recv_timeout(limit).unwrap_or_else(|_| {
        let _ = Command::new("kill").arg(&pid).status();
        panic!("the refresh still ran after {limit:?}: a lost executor must not hang a query")
    })
}

#[test]
fn a_bundle_that_changed_after_planning_is_refused_by_the_scheduler() {
    let cluster = Cluster::start(1, &[]);
    let bundle = copied_bundle();
    let client = waiting_client(&cluster, bundle.path());
    let planned = client.2.clone();
    // Someone replaces the bundle on the shared path before the cluster loads it.
    change_bundle(bundle.path());
    let (succeeded, message) = finish_client(client);
    assert!(!succeeded, "the query must not score with another model");
    assert!(message.contains(&format!("the query was planned with {planned}")), "{message}");
    assert!(message.contains("the scheduler at") && message.contains("Pin one version"), "{message}");
}

#[test]
fn an_executor_whose_bundle_differs_from_the_plan_refuses() {
    let mut cluster = Cluster::start(1, &["--executor-timeout-secs", "10"]);
    let bundle = copied_bundle();
    // The scheduler (and the first executor) load the bundle as it is now, and keep it.
    let first = finish_client(waiting_client(&cluster, bundle.path()));
    assert!(first.0, "{}", first.1);
    let client = waiting_client(&cluster, bundle.path());
    let planned = client.2.clone();
    // The bundle changes; the only executor left is a new one, which reads the changed copy.
    change_bundle(bundle.path());
    let old = &mut cluster.executors[0];
    old.kill().unwrap();
    old.wait().unwrap();
    cluster.add_executor();
    let (succeeded, message) = finish_client(client);
    assert!(!succeeded, "the query must not score with another model");
    assert!(message.contains(&format!("the query was planned with {planned}")), "{message}");
    assert!(message.contains("executor 127.0.0.1:"), "the executor names itself: {message}");
}

#[test]
fn a_scheduler_that_cannot_be_reached_is_named_with_what_to_start() {
    let url = format!("df://127.0.0.1:{}", free_port());
    let output = lakecat().args(["sql", "--cluster", &url, "SELECT 1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("cannot reach the scheduler at {url}")), "{stderr}");
    assert!(stderr.contains("lakecat cluster scheduler"), "{stderr}");
    let output = lakecat().args(["sql", "--cluster", "http://127.0.0.1:50050", "SELECT 1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("expected df://HOST:PORT"), "{stderr}");
}
