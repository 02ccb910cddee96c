//! Images on a real S3-compatible server (moto, from PyPI, installed by scripts/test.sh) spoken
//! to over HTTP on 127.0.0.1, through a proxy that can stall a request or drop a connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use lakecat::SessionBuilder;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::common::{fixture, repo_root, sample_image};

const BUCKET: &str = "lakecat-images";

/// moto_server on a free port, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
    /// moto's output, shown when it does not start.
    _log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until a server started by a test listens on `port` of 127.0.0.1; fails after 30 s
/// with what `output` says then (the server's log, where it has one).
pub(crate) fn wait_for_port(port: u16, server: &str, output: impl Fn() -> String) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{server} did not listen on port {port}: {}", output());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python to run `package` from the checkout's .venv with (scripts/setup.sh --test
/// installs the tests' packages there), and the site-packages to put on PYTHONPATH.
pub(crate) fn venv_python(package: &str) -> (PathBuf, PathBuf) {
    let root = repo_root();
    let site_packages = std::fs::read_dir(root.join(".venv/lib"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("site-packages"))
        .find(|dir| dir.join(package).is_dir())
        .unwrap_or_else(|| {
            panic!("{package} is not installed in .venv: run scripts/test.sh (or scripts/setup.sh --test) first")
        });
    let python = [root.join(".venv/bin/python"), PathBuf::from("python3")]
        .into_iter()
        .find(|python| python.is_file() || python.as_os_str() == "python3")
        .unwrap();
    (python, site_packages)
}

/// Starts moto from the checkout's .venv.
pub(crate) fn start_moto() -> Moto {
    let (python, site_packages) = venv_python("moto");
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONPATH", site_packages)
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("moto_server starts");
    let path = log.path().to_path_buf();
    let moto = Moto { child, port, _log: log };
    wait_for_port(port, "moto_server", || std::fs::read_to_string(&path).unwrap_or_default());
    moto
}

/// Forwards to `upstream`, except: a request naming "stall" gets no answer, and the first
/// request containing `drop_once` has its connection dropped before it is forwarded (a
/// transient failure). Returns the port and how many requests contained `drop_once`.
pub(crate) fn start_fault_proxy(upstream: u16, drop_once: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let flaky_drops = Arc::new(AtomicUsize::new(0));
    let seen = flaky_drops.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let flaky_drops = flaky_drops.clone();
            std::thread::spawn(move || forward(client, upstream, drop_once, &flaky_drops));
        }
    });
    (port, seen)
}

fn forward(mut client: TcpStream, upstream: u16, drop_once: &[u8], flaky_drops: &AtomicUsize) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let (mut server_reader, mut client_writer) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_reader, &mut client_writer);
        let _ = client_writer.shutdown(Shutdown::Both);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let request = &buffer[..read];
        let names = |word: &[u8]| request.windows(word.len()).any(|window| window == word);
        if names(b"stall") {
            std::thread::sleep(Duration::from_secs(30));
            break;
        }
        if names(drop_once) && flaky_drops.fetch_add(1, Ordering::SeqCst) == 0 {
            break;
        }
        if server.write_all(request).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

pub(crate) fn create_bucket(port: u16, bucket: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "creating the bucket: {response}");
}

pub(crate) const CREDENTIALS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

async fn upload(port: u16, objects: &[(&str, Vec<u8>)]) {
    let mut builder = AmazonS3Builder::new().with_bucket_name(BUCKET).with_endpoint(format!("http://127.0.0.1:{port}"));
    for (key, value) in CREDENTIALS {
        builder = builder.with_config(key.to_lowercase().parse().unwrap(), value);
    }
    let store = builder.build().unwrap();
    for (key, bytes) in objects {
        store.put(&ObjectPath::from(*key), PutPayload::from(bytes.clone())).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_on_s3_are_fetched_and_failures_are_row_errors() {
    let fixture = fixture();
    let moto = start_moto();
    let (proxy, _) = start_fault_proxy(moto.port, b"flaky");
    create_bucket(moto.port, BUCKET);
    let image = |name: &str| std::fs::read(sample_image(name)).unwrap();
    upload(
        moto.port,
        &[
            ("images/14063.jpg", image("14063.jpg")),
            ("images/10102.jpg", image("10102.jpg")),
            ("images/flaky.jpg", image("10223.jpg")),
            ("images/stall.jpg", image("10240.jpg")),
            ("private/secret.jpg", image("10240.jpg")),
        ],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("products"), dir.path().join("predictions"));
    let s3 = |key: &str| format!("s3://{BUCKET}/{key}");
    let rows = [
        ("polo", s3("images/14063.jpg"), "Flying Machine Men Solid Blue Polo Tshirts"),
        ("second", s3("images/10102.jpg"), ""),
        ("flaky", s3("images/flaky.jpg"), ""),
        ("missing", s3("images/missing.jpg"), "Blue shirt"),
        ("timeout", s3("images/stall.jpg"), "Blue shirt"),
        ("outside_prefix", s3("private/secret.jpg"), "Blue shirt"),
        ("local_file", "file:///etc/passwd".to_string(), "Blue shirt"),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("image_uri", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.1.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.2))),
            Arc::new(StringArray::new_null(rows.len())),
        ],
    )
    .unwrap();
    lakecat::delta::write_table(
        &source.display().to_string(),
        vec![batch],
        SaveMode::ErrorIfExists,
        &Default::default(),
    )
    .await
    .unwrap();

    let refresh = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lakecat"));
        command
            .args(["refresh", "--json", "--model"])
            .arg(&fixture.baseline)
            .arg("--source")
            .arg(&source)
            .arg("--target")
            .arg(&target)
            .args(["--set", &format!("lakecat.allowed_locations=s3://{BUCKET}/images/")])
            .args(["--set", "lakecat.fetch_timeout_secs=1", "--set", "lakecat.fetch_retries=2"])
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{proxy}"))
            .envs(CREDENTIALS)
            .current_dir(repo_root());
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let started = Instant::now();
    let report = refresh();
    assert_eq!((report["scored"].as_u64(), report["failed"].as_u64()), (Some(7), Some(4)), "{report}");
    // The stalled request is bounded: 3 attempts of 1 s plus backoff, not the proxy's 30 s.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    let errors = errors_by_product(&target).await;
    for good in ["polo", "second", "flaky"] {
        assert_eq!(errors[good], None, "{good}: {errors:?}");
    }
    let error = |id: &str| errors[id].clone().unwrap_or_default();
    assert_eq!(error("missing"), "fetch: s3://lakecat-images/images/missing.jpg: no such object");
    assert!(
        error("timeout").starts_with("fetch: s3://lakecat-images/images/stall.jpg: ")
            && error("timeout").contains("timed out"),
        "{errors:?}"
    );
    assert_eq!(
        error("outside_prefix"),
        format!("refused: s3://{BUCKET}/private/secret.jpg: not under lakecat.allowed_locations")
    );
    assert_eq!(error("local_file"), "refused: file:///etc/passwd: /etc/passwd is not under lakecat.allowed_locations");

    // Each object is its own row's picture (three different ones): the stored prediction is
    // what categorize gives for the embedded bytes of the product it shows, with the row's text.
    let session = SessionBuilder::new()
        .with_table("predictions", target.display().to_string())
        .with_table("products", &fixture.products)
        .with_model("baseline", &fixture.baseline)
        .build()
        .await
        .unwrap();
    let same = "SELECT count(*) FROM predictions AS t \
        JOIN (VALUES ('polo', '14063'), ('second', '10102'), ('flaky', '10223')) AS m(id, image_of) ON t.product_id = m.id \
        JOIN products AS p ON p.product_id = m.image_of \
        WHERE t.category_id = categorize(p.image, t.title, t.description)['category_id'] \
          AND round(t.confidence, 5) = round(categorize(p.image, t.title, t.description)['confidence'], 5)";
    let batches = session.ctx.sql(same).await.unwrap().collect().await.unwrap();
    let matching = arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
    assert_eq!(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&matching).value(0), 3);

    // Fetch failures (missing, timeout) are retried by the next run; the rows that were scored
    // and the two refused by policy are not.
    let again = refresh();
    assert_eq!((again["scored"].as_u64(), again["skipped"].as_u64()), (Some(2), Some(5)), "{again}");
}

/// product_id → error of every prediction (None: scored without error).
async fn errors_by_product(target: &std::path::Path) -> std::collections::HashMap<String, Option<String>> {
    use arrow::array::AsArray;
    let session = SessionBuilder::new().with_table("predictions", target.display().to_string()).build().await.unwrap();
    let sql = "SELECT product_id, CASE WHEN error IS NULL AND category IS NULL THEN 'no category' ELSE error END \
               FROM predictions";
    let batches = session.ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut errors = std::collections::HashMap::new();
    for batch in &batches {
        let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        let messages = arrow::compute::cast(batch.column(1), &DataType::Utf8).unwrap();
        for (id, message) in ids.as_string::<i32>().iter().zip(messages.as_string::<i32>()) {
            errors.insert(id.unwrap().to_string(), message.map(str::to_string));
        }
    }
    errors
}
