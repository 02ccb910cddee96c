//! The lakehouse on object storage: every table and the bundle on a real S3-compatible server
//! (moto, started here on 127.0.0.1), driven through the `lakecat` binary as users run it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures::StreamExt;
use lakecat::StorageOptions;
use lakecat::storage::{explain, location_url, redact};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::common::{fixture, repo_root};
use crate::s3::{CREDENTIALS, Moto, create_bucket, start_moto};

/// A moto server with the buckets `lake` and `models`, and a private bundle and feature cache.
pub(crate) struct Lake {
    moto: Moto,
    dir: tempfile::TempDir,
}

impl Lake {
    pub(crate) fn start() -> Self {
        let moto = start_moto();
        for bucket in ["lake", "models"] {
            create_bucket(moto.port, bucket);
        }
        Self { moto, dir: tempfile::tempdir().unwrap() }
    }

    fn local(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn bundle_cache(&self) -> PathBuf {
        self.dir.path().join("bundle-cache")
    }

    /// The environment a process needs to reach this server as users' S3: credentials, the
    /// endpoint, and a bundle cache of its own.
    pub(crate) fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> =
            CREDENTIALS.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        environment.push(("AWS_ENDPOINT_URL".into(), format!("http://127.0.0.1:{}", self.moto.port)));
        environment.push(("LAKECAT_BUNDLE_CACHE".into(), self.bundle_cache().display().to_string()));
        environment.push(("XDG_CACHE_HOME".into(), self.dir.path().join("xdg").display().to_string()));
        environment
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lakecat"));
        command.args(args).envs(self.environment()).current_dir(repo_root());
        command
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().expect("lakecat runs")
    }

    /// Runs `lakecat ARGS`, which must succeed; returns its standard output.
    pub(crate) fn ok<S: AsRef<OsStr> + Debug>(&self, args: &[S]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "lakecat {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `lakecat ARGS`, which must fail; returns its standard error.
    fn fails<S: AsRef<OsStr> + Debug>(&self, args: &[S]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "lakecat {args:?} succeeded:\n{}", String::from_utf8_lossy(&output.stdout));
        String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout)
    }

    fn store(&self, bucket: &str) -> impl ObjectStore {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(format!("http://127.0.0.1:{}", self.moto.port));
        for (key, value) in CREDENTIALS {
            builder = builder.with_config(key.to_lowercase().parse().unwrap(), value);
        }
        builder.build().unwrap()
    }

    pub(crate) async fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) {
        let store = self.store(bucket);
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().into_string().unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            store.put(&ObjectPath::from(format!("{prefix}/{name}")), PutPayload::from(bytes)).await.unwrap();
        }
    }
}

const IMPORT: [&str; 6] =
    ["--title", "productDisplayName", "--id", "id", "--labels", "masterCategory,subCategory,articleType"];

/// `lakecat import` of the committed sample (local CSV and images) into the table at `target`.
pub(crate) fn import_sample(target: &str) -> Vec<String> {
    let sample = repo_root().join("data/sample/fashion");
    let mut args = vec!["import".to_string(), sample.join("products.csv").display().to_string()];
    args.extend(["--output".to_string(), target.to_string(), "--images".to_string()]);
    args.push(sample.join("images").display().to_string());
    args.extend(IMPORT.iter().map(|arg| arg.to_string()));
    args
}

/// The scored rows, one line each, in product order (CSV from `lakecat sql`).
const SCORES: &str = "SELECT product_id, c.category, round(c.confidence, 5) AS confidence, c.model, c.error \
     FROM (SELECT product_id, categorize(image, title, description) AS c FROM p) ORDER BY product_id";

/// Rows that differ between two predictions tables (all but scored_at; confidence to 1e-5, as
/// ONNX Runtime batches of other sizes may differ in the last bits), both ways EXCEPT.
fn differing_predictions(left: &str, right: &str) -> String {
    let columns =
        "product_id, title, description, category_id, category, round(confidence, 5), model, error, content_hash";
    format!(
        "SELECT count(*) FROM ((SELECT {columns} FROM {left} EXCEPT SELECT {columns} FROM {right}) \
         UNION ALL (SELECT {columns} FROM {right} EXCEPT SELECT {columns} FROM {left}))"
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_chain_on_s3_equals_the_same_chain_on_local_disk() {
    let lake = Lake::start();
    let sample = repo_root().join("data/sample/fashion");
    lake.upload_dir("lake", "raw/images", &sample.join("images")).await;
    lake.store("lake")
        .put(
            &ObjectPath::from("raw/products.csv"),
            PutPayload::from(std::fs::read(sample.join("products.csv")).unwrap()),
        )
        .await
        .unwrap();

    // import: source CSV, images and table all on S3; the same import on local disk.
    let mut remote_import = vec!["import", "s3://lake/raw/products.csv", "--output", "s3://lake/products"];
    remote_import.extend(["--images", "s3://lake/raw/images"]);
    remote_import.extend(IMPORT);
    let printed = lake.ok(&remote_import);
    assert!(
        printed.contains("wrote 239 rows to s3://lake/products (version 0): 239 images, 239 labelled"),
        "{printed}"
    );
    let local_products = lake.local("products");
    let sample_csv = sample.join("products.csv").display().to_string();
    let sample_images = sample.join("images").display().to_string();
    let mut local_import = vec!["import", &sample_csv, "--output", &local_products, "--images", &sample_images];
    local_import.extend(IMPORT);
    lake.ok(&local_import);
    let same_rows = "SELECT count(*) FROM ((SELECT product_id, title, category, sha256(image) FROM r EXCEPT \
                     SELECT product_id, title, category, sha256(image) FROM l) UNION ALL (SELECT product_id, title, \
                     category, sha256(image) FROM l EXCEPT SELECT product_id, title, category, sha256(image) FROM r))";
    let local_table = format!("l={local_products}");
    let differing = lake.ok(&["sql", "--format", "csv", "-t", "r=s3://lake/products", "-t", &local_table, same_rows]);
    assert_eq!(differing.lines().nth(1), Some("0"), "{differing}");

    // train: from the S3 table, features cached in a Delta table on S3, the bundle published to S3.
    let train = [
        "train",
        "--table",
        "s3://lake/products",
        "--output",
        "s3://models/fashion/1",
        "--name",
        "fashion",
        "--feature-cache",
        "s3://lake/features",
        "--epochs",
        "3",
        "--hierarchy-epochs",
        "1",
        "--min-count",
        "5",
        "--image-dense",
        "64",
        "--text-dense",
        "32",
        "--batch-size",
        "32",
        "--json",
    ];
    let report = json(&lake.ok(&train));
    assert!(report["validation"]["top1"].as_f64().unwrap() > 0.3, "{report}");
    let manifest = lake.store("models").get(&ObjectPath::from("fashion/1/manifest.json")).await.unwrap();
    let manifest = json(std::str::from_utf8(&manifest.bytes().await.unwrap()).unwrap());
    assert_eq!(manifest["training"]["table_uri"], "s3://lake/products", "{manifest}");
    // One row per image of the rows trained on (failed images are never cached).
    let failed: u64 = report["image_failures"].as_object().unwrap().values().filter_map(|rows| rows.as_u64()).sum();
    let examples = report["train_rows"].as_u64().unwrap() + report["validation_rows"].as_u64().unwrap();
    let features = lake.ok(&["sql", "--format", "csv", "-t", "f=s3://lake/features", "SELECT count(*) FROM f"]);
    assert_eq!(features.lines().nth(1), Some((examples - failed).to_string().as_str()), "{features} {report}");
    assert_eq!(report["bundle"], "s3://models/fashion/1", "{report}");
    // A bundle is published once: a second train to the same version is refused before any work.
    let refused = lake.fails(&train);
    assert!(refused.contains("s3://models/fashion/1 already holds a bundle"), "{refused}");

    // sql: the latest version from S3 (downloaded once, into the cache) equals the same bundle
    // scored from local disk on the local table.
    let remote_scores =
        lake.ok(&["sql", "--format", "csv", "-t", "p=s3://lake/products", "-m", "s3://models/fashion", SCORES]);
    let cached: Vec<PathBuf> = std::fs::read_dir(lake.bundle_cache())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(cached.len(), 1, "one verified bundle in the cache, no partial download: {cached:?}");
    let local_bundle = lake.local("fashion");
    std::fs::create_dir_all(&local_bundle).unwrap();
    for entry in std::fs::read_dir(&cached[0]).unwrap().flatten() {
        std::fs::copy(entry.path(), Path::new(&local_bundle).join(entry.file_name())).unwrap();
    }
    let local_p = format!("p={local_products}");
    let local_scores = lake.ok(&["sql", "--format", "csv", "-t", &local_p, "-m", &local_bundle, SCORES]);
    assert_eq!(remote_scores.lines().count(), 240, "{remote_scores}");
    assert_eq!(remote_scores, local_scores);
    let pinned =
        lake.ok(&["sql", "--format", "csv", "-t", "p=s3://lake/products", "-m", "s3://models/fashion@1", SCORES]);
    assert_eq!(pinned, remote_scores);

    // refresh twice against S3 (the second scores nothing and reads no data file), and once on local disk.
    let refresh = [
        "refresh",
        "--json",
        "-m",
        "s3://models/fashion",
        "--source",
        "s3://lake/products",
        "--target",
        "s3://lake/predictions",
    ];
    let first = json(&lake.ok(&refresh));
    assert_eq!((first["scored"].as_u64(), first["failed"].as_u64()), (Some(239), Some(0)), "{first}");
    let second = json(&lake.ok(&refresh));
    assert_eq!((second["scored"].as_u64(), second["source_unchanged"].as_bool()), (Some(0), Some(true)), "{second}");
    let local_predictions = lake.local("predictions");
    lake.ok(&["refresh", "--json", "-m", &local_bundle, "--source", &local_products, "--target", &local_predictions]);
    let local_t = format!("l={local_predictions}");
    let differing = lake.ok(&[
        "sql",
        "--format",
        "csv",
        "-t",
        "r=s3://lake/predictions",
        "-t",
        &local_t,
        &differing_predictions("r", "l"),
    ]);
    assert_eq!(differing.lines().nth(1), Some("0"), "{differing}");
    // …and both hold, row by row, what categorize says about each product (not just each other).
    let direct = crate::refresh::differences_from_categorize(
        &local_products,
        "image",
        &local_predictions,
        std::path::Path::new(&local_bundle),
        &Default::default(),
    )
    .await;
    assert_eq!(direct, "");

    // eval: the pinned version from S3, reports written to S3; the same metrics as on local disk.
    let remote_eval = json(&lake.ok(&[
        "eval",
        "--json",
        "-m",
        "s3://models/fashion@1",
        "--table",
        "s3://lake/products",
        "--output",
        "s3://models/fashion-eval/1",
    ]));
    let local_eval_dir = lake.local("eval");
    let local_eval = json(&lake.ok(&[
        "eval",
        "--json",
        "-m",
        &local_bundle,
        "--table",
        &local_products,
        "--output",
        &local_eval_dir,
    ]));
    assert_eq!(remote_eval["metrics"], local_eval["metrics"]);
    for report in ["fashion-eval/1/eval.json", "fashion-eval/1/confusion-matrix.png"] {
        lake.store("models").head(&ObjectPath::from(report)).await.unwrap();
    }

    // A version still being published (files, no manifest yet) is not the latest.
    lake.store("models")
        .put(&ObjectPath::from("fashion/2/model.onnx"), PutPayload::from_static(b"partial"))
        .await
        .unwrap();
    let still_one =
        lake.ok(&["sql", "--format", "csv", "-t", "p=s3://lake/products", "-m", "s3://models/fashion", SCORES]);
    assert_eq!(still_one, remote_scores);
    let unpublished = lake.fails(&["sql", "-m", "s3://models/fashion@2", "SELECT 1"]);
    assert!(unpublished.contains("s3://models/fashion/2 holds no bundle (manifest.json not found)"), "{unpublished}");

    // A file replaced on the server after the bundle was cached is refused, never used.
    lake.store("models")
        .put(&ObjectPath::from("fashion/1/model.onnx"), PutPayload::from_static(b"not the model"))
        .await
        .unwrap();
    let replaced = lake.fails(&["sql", "-m", "s3://models/fashion@1", "SELECT 1"]);
    assert!(
        replaced
            .contains("s3://models/fashion/1/model.onnx was replaced on the server after lakecat cached this bundle"),
        "{replaced}"
    );
}

#[test]
fn concurrent_refreshes_on_s3_never_duplicate_or_lose_a_commit() {
    let lake = Lake::start();
    let fixture = fixture();
    lake.ok(&import_sample("s3://lake/products"));
    let model = fixture.baseline.display().to_string();
    let alone = lake.local("alone");
    lake.ok(&["refresh", "-m", &model, "--source", "s3://lake/products", "--target", &alone]);
    let mut conflicts = 0;
    for round in 0..3 {
        let target = format!("s3://lake/predictions-{round}");
        let refresh = |lake: &Lake| {
            lake.command(&[
                "refresh",
                "--json",
                "--chunk-rows",
                "40",
                "-m",
                &model,
                "--source",
                "s3://lake/products",
                "--target",
                &target,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        };
        let (a, b) = (refresh(&lake), refresh(&lake));
        for output in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if output.status.success() {
                conflicts += json(&String::from_utf8_lossy(&output.stdout))["conflicts"].as_u64().unwrap();
            } else {
                // The loser says why and what to do; what it committed stays.
                assert!(stderr.contains("another writer committed to") && stderr.contains("run again"), "{stderr}");
                conflicts += 1;
            }
        }
        let t = format!("t={target}");
        let a = format!("a={alone}");
        let counts =
            lake.ok(&["sql", "--format", "csv", "-t", &t, "SELECT count(*), count(DISTINCT product_id) FROM t"]);
        assert_eq!(counts.lines().nth(1), Some("239,239"), "round {round}: {counts}");
        let differing = lake.ok(&["sql", "--format", "csv", "-t", &t, "-t", &a, &differing_predictions("t", "a")]);
        assert_eq!(differing.lines().nth(1), Some("0"), "round {round}: {differing}");
    }
    eprintln!("concurrent refreshes: {conflicts} conflicts over 3 rounds");
    assert!(conflicts >= 1, "in 3 rounds the two runs never met: the test did not test concurrency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_say_what_to_fix_and_never_print_secrets() {
    let lake = Lake::start();

    let missing_bucket = lake.fails(&["sql", "-t", "p=s3://no-such-bucket/products", "SELECT 1"]);
    assert!(missing_bucket.contains("s3://no-such-bucket/products: "), "{missing_bucket}");
    assert!(missing_bucket.contains("the bucket or container \"no-such-bucket\" does not exist"), "{missing_bucket}");
    let not_a_table = lake.fails(&["sql", "-t", "p=s3://lake/nothing-here", "SELECT 1"]);
    assert!(not_a_table.contains("s3://lake/nothing-here is not a Delta table (no _delta_log)"), "{not_a_table}");
    let no_bundle = lake.fails(&["sql", "-m", "s3://models/none", "SELECT 1"]);
    assert!(no_bundle.contains("s3://models/none holds no bundle"), "{no_bundle}");

    // Writing without atomic put-if-absent is refused, with what to configure.
    let output_table = ["sql", "--output-table", "s3://lake/out", "SELECT 1 AS x"];
    let unsafe_rename = lake.command(&output_table).env("AWS_S3_ALLOW_UNSAFE_RENAME", "true").output().unwrap();
    let message = String::from_utf8_lossy(&unsafe_rename.stderr);
    assert!(!unsafe_rename.status.success() && message.contains("lakecat never commits unsafely"), "{message}");
    let mut disabled = vec!["--storage-option", "aws_conditional_put=disabled"];
    disabled.extend(output_table);
    let message = lake.fails(&disabled);
    assert!(message.contains("cannot create an object only if it is absent"), "{message}");
    lake.ok(&output_table);
    let written = lake.ok(&["sql", "--format", "csv", "-t", "o=s3://lake/out", "SELECT x FROM o"]);
    assert_eq!(written.lines().nth(1), Some("1"));

    // GCS without a server: a bad credentials file is named, nothing is sent anywhere.
    let gcs = lake
        .command(&["sql", "-t", "p=gs://bucket/products", "SELECT 1"])
        .env("GOOGLE_SERVICE_ACCOUNT", "/nonexistent/key.json")
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&gcs.stderr);
    assert!(!gcs.status.success() && message.contains("gs://bucket/products"), "{message}");
    assert!(message.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{message}");

    // Secrets given on the command line or in the environment never appear in output, errors
    // or the commits of a table written with them (moto takes any secret key).
    let secret = "SECRET-value-7f3a9c";
    let token = "TOKEN-value-91be20";
    let secret_option = format!("aws_secret_access_key={secret}");
    let runs = [
        vec!["--storage-option", &secret_option, "sql", "-t", "p=s3://no-such-bucket/x", "SELECT 1"],
        vec!["--storage-option", &secret_option, "sql", "-t", "p=s3://lake/nothing-here", "SELECT 1"],
        vec!["--storage-option", &secret_option, "sql", "--output-table", "s3://lake/secret-out", "SELECT 2 AS x"],
    ];
    for args in &runs {
        let output = lake.command(args).env("AWS_SESSION_TOKEN", token).output().unwrap();
        let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(!printed.contains(secret) && !printed.contains(token), "{printed}");
    }
    let store = lake.store("lake");
    let logs: Vec<_> = store.list(Some(&ObjectPath::from("secret-out/_delta_log"))).collect().await;
    assert!(!logs.is_empty(), "the table was written");
    for meta in logs {
        let bytes = store.get(&meta.unwrap().location).await.unwrap().bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret) && !text.contains(token), "{text}");
    }

    // The pieces, without a server.
    for location in
        ["s3://bucket/products", "gs://bucket/a/b", "az://container/t", "abfss://c@acct.dfs.core.windows.net/t"]
    {
        assert_eq!(location_url(location).unwrap().as_str(), location);
    }
    assert_eq!(
        location_url("ftp://host/x").unwrap_err().to_string(),
        "ftp://host/x: the scheme ftp:// is not supported; a location is a local path, file://, s3://, gs://, az:// or abfss://"
    );
    assert!(location_url("s3:///products").unwrap_err().to_string().contains("names no bucket"));
    let options = StorageOptions::new().with("aws_secret_access_key", "hunter2-secret").with("aws_region", "eu-west-1");
    assert_eq!(format!("{options:?}"), r#"{"aws_region=…", "aws_secret_access_key=…"}"#);
    assert_eq!(redact("denied for hunter2-secret in eu-west-1"), "denied for *** in eu-west-1");
    assert!(StorageOptions::parse_pair("novalue").unwrap_err().contains("expected KEY=VALUE"));
    let s3 = Url::parse("s3://b/t").unwrap();
    assert!(
        explain(&s3, "status 403 Forbidden: InvalidAccessKeyId")
            .contains("set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    );
    let versions: BTreeMap<&str, (&str, Option<&str>)> = [
        ("s3://models/fashion@3", ("s3://models/fashion", Some("3"))),
        ("s3://models/fashion", ("s3://models/fashion", None)),
        ("abfss://models@acct.dfs.core.windows.net", ("abfss://models@acct.dfs.core.windows.net", None)),
        ("models/fashion@2026-12-01", ("models/fashion", Some("2026-12-01"))),
    ]
    .into_iter()
    .collect();
    for (location, expected) in versions {
        assert_eq!(lakecat::bundles::split_version(location), expected, "{location}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_bundle_versions_resolve_to_the_latest_or_the_pinned_one() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    for version in ["2", "10", "9"] {
        let target = dir.path().join("fashion").join(version);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&fixture.baseline).unwrap().flatten() {
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.path().join("fashion/11")).unwrap(); // no manifest: not a version
    let store = lakecat::bundles::BundleStore::new();
    let base = dir.path().join("fashion").display().to_string();
    assert_eq!(store.resolve(&base).await.unwrap().dir, dir.path().join("fashion/10"));
    assert_eq!(store.resolve(&format!("{base}@9")).await.unwrap().dir, dir.path().join("fashion/9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_replaced_under_the_same_uri_is_rescored() {
    let lake = Lake::start();
    let fixture = fixture();
    let sample = repo_root().join("data/sample/fashion");
    lake.upload_dir("lake", "raw/images", &sample.join("images")).await;
    let csv = sample.join("products.csv").display().to_string();
    let mut import =
        vec!["import", &csv, "--output", "s3://lake/by-uri", "--images", "s3://lake/raw/images", "--reference-images"];
    import.extend(IMPORT);
    lake.ok(&import);
    let model = fixture.baseline.display().to_string();
    let refresh =
        ["refresh", "--json", "-m", &model, "--source", "s3://lake/by-uri", "--target", "s3://lake/by-uri-predictions"];
    let first = json(&lake.ok(&refresh));
    assert_eq!((first["scored"].as_u64(), first["failed"].as_u64()), (Some(239), Some(0)), "{first}");
    let unchanged = json(&lake.ok(&refresh));
    assert_eq!((unchanged["scored"].as_u64(), unchanged["skipped"].as_u64()), (Some(0), Some(239)), "{unchanged}");

    let hash = "SELECT content_hash FROM t WHERE product_id = '14063'";
    let before = lake.ok(&["sql", "--format", "csv", "-t", "t=s3://lake/by-uri-predictions", hash]);
    // The polo shirt's photo is replaced by a watch's, under the same key.
    let watch = std::fs::read(sample.join("images/10102.jpg")).unwrap();
    lake.store("lake").put(&ObjectPath::from("raw/images/14063.jpg"), PutPayload::from(watch)).await.unwrap();
    let replaced = json(&lake.ok(&refresh));
    assert_eq!((replaced["scored"].as_u64(), replaced["skipped"].as_u64()), (Some(1), Some(238)), "{replaced}");
    let after = lake.ok(&["sql", "--format", "csv", "-t", "t=s3://lake/by-uri-predictions", hash]);
    assert_ne!(before, after);
}

/// A deterministic stream of fractions in [0, 1).
fn fractions(mut state: u64) -> impl Iterator<Item = f64> {
    std::iter::repeat_with(move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Rows of the Delta table at `location` (0 when no table was created yet).
fn rows_of(lake: &Lake, location: &str) -> u64 {
    let table = format!("t={location}");
    let output = lake.run(&["sql", "--format", "csv", "-t", &table, "SELECT count(*) FROM t"]);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not a Delta table"), "{stderr}");
        return 0;
    }
    String::from_utf8_lossy(&output.stdout).lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn killed_while_writing_to_s3_the_next_run_converges() {
    let lake = Lake::start();
    let fixture = fixture();
    lake.ok(&import_sample("s3://lake/products"));
    let model = fixture.baseline.display().to_string();
    let refresh = |target: &str| {
        lake.command(&[
            "refresh",
            "--json",
            "--batch-size",
            "8",
            "--chunk-rows",
            "16",
            "-m",
            &model,
            "--source",
            "s3://lake/products",
            "--target",
            target,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let started = std::time::Instant::now();
    let reference = refresh("s3://lake/reference").wait_with_output().unwrap();
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let full_run = started.elapsed();

    let mut partial = 0;
    for (trial, fraction) in fractions(7).take(10).enumerate() {
        let target = format!("s3://lake/trial-{trial}");
        let mut child = refresh(&target);
        // Past start-up (about a third of a run), so that most kills land between commits.
        std::thread::sleep(full_run.mul_f64(0.3 + 0.7 * fraction));
        child.kill().unwrap(); // SIGKILL: no clean-up code runs
        child.wait().unwrap();
        let committed = rows_of(&lake, &target);
        if 0 < committed && committed < 239 {
            partial += 1;
        }
        let rerun = refresh(&target).wait_with_output().unwrap();
        assert!(rerun.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&rerun.stderr));
        let report = json(&String::from_utf8_lossy(&rerun.stdout));
        // Every committed chunk is whole and current: the re-run scores exactly what was missing.
        assert_eq!(report["scored"].as_u64(), Some(239 - committed), "trial {trial}: {report}");
        let (t, r) = (format!("t={target}"), "r=s3://lake/reference".to_string());
        let differing = lake.ok(&["sql", "--format", "csv", "-t", &t, "-t", &r, &differing_predictions("t", "r")]);
        assert_eq!(differing.lines().nth(1), Some("0"), "trial {trial} (killed after {fraction:.2}): {differing}");
    }
    assert!(partial >= 2, "only {partial} of 10 kills landed after a partial commit");
}

#[test]
fn a_connection_dropped_during_a_commit_is_retried_or_fails_clearly() {
    let lake = Lake::start();
    let fixture = fixture();
    lake.ok(&import_sample("s3://lake/products"));
    let model = fixture.baseline.display().to_string();
    // The first chunk's commit (version 1; version 0 creates the table) loses its connection.
    let (proxy, dropped) = crate::s3::start_fault_proxy(
        lake.moto.port,
        b"PUT /lake/flaky-predictions/_delta_log/00000000000000000001.json",
    );
    let refresh = || {
        lake.command(&[
            "refresh",
            "--json",
            "--chunk-rows",
            "100",
            "-m",
            &model,
            "--source",
            "s3://lake/products",
            "--target",
            "s3://lake/flaky-predictions",
        ])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{proxy}"))
        .output()
        .unwrap()
    };
    let first = refresh();
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the commit went through the proxy");
    let stderr = String::from_utf8_lossy(&first.stderr);
    if !first.status.success() {
        assert!(stderr.contains("s3://lake/flaky-predictions"), "a failure names the table: {stderr}");
    }
    // Whatever happened, the table is at a committed version and the next run completes it.
    let committed = rows_of(&lake, "s3://lake/flaky-predictions");
    assert!(committed <= 239 && committed.is_multiple_of(100) || committed == 239, "whole chunks only: {committed}");
    let second = refresh();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(rows_of(&lake, "s3://lake/flaky-predictions"), 239);
    let differing_counts = lake.ok(&[
        "sql",
        "--format",
        "csv",
        "-t",
        "t=s3://lake/flaky-predictions",
        "SELECT count(*) - count(DISTINCT product_id) FROM t",
    ]);
    assert_eq!(differing_counts.lines().nth(1), Some("0"), "no duplicate: {differing_counts}");
}

/// Azurite (npm, installed by scripts/setup.sh --test) on a free port, stopped when dropped.
struct Azurite {
    child: std::process::Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_azurite(containers: &[&str]) -> Azurite {
    let tools = repo_root().join(".tools/azurite/node_modules");
    let server = tools.join(".bin/azurite-blob");
    assert!(
        server.is_file(),
        "Azurite is not installed in .tools/azurite: run scripts/test.sh (or scripts/setup.sh --test) first"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("azurite.log");
    let child = Command::new(&server)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--silent"])
        .arg("--location")
        .arg(data.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("azurite starts");
    let azurite = Azurite { child, port, _data: data };
    crate::s3::wait_for_port(port, "Azurite", || std::fs::read_to_string(&log).unwrap_or_default());
    let created = Command::new("node")
        .arg(repo_root().join("tests/azurite/create-containers.js"))
        .arg(port.to_string())
        .args(containers)
        .env("NODE_PATH", &tools)
        .output()
        .expect("node runs");
    assert!(created.status.success(), "creating containers: {}", String::from_utf8_lossy(&created.stderr));
    azurite
}

#[test]
fn sql_and_refresh_on_azure_blob_storage() {
    let azurite = start_azurite(&["lake"]);
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let lakecat = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_lakecat"))
            .args(args)
            .env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", format!("http://127.0.0.1:{}", azurite.port))
            .env("LAKECAT_BUNDLE_CACHE", dir.path().join("bundles"))
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(output.status.success(), "lakecat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let import = import_sample("az://lake/products");
    lakecat(&import.iter().map(String::as_str).collect::<Vec<_>>());
    let model = fixture.baseline.display().to_string();
    let scores = lakecat(&["sql", "--format", "csv", "-t", "p=az://lake/products", "-m", &model, SCORES]);
    let local = lakecat(&["sql", "--format", "csv", "-t", &format!("p={}", fixture.products), "-m", &model, SCORES]);
    assert_eq!(scores.lines().count(), 240, "{scores}");
    assert_eq!(scores, local, "the same rows score the same from Azure and from local disk");
    let refresh =
        ["refresh", "--json", "-m", &model, "--source", "az://lake/products", "--target", "az://lake/predictions"];
    let first = json(&lakecat(&refresh));
    assert_eq!(first["scored"].as_u64(), Some(239), "{first}");
    let second = json(&lakecat(&refresh));
    assert_eq!((second["scored"].as_u64(), second["source_unchanged"].as_bool()), (Some(0), Some(true)), "{second}");
}
