//! The `lakecat` Python package inside datafusion-python (PyPI `datafusion` 55): pytest runs
//! python/tests in the checkout's .venv, where scripts/setup.sh --test installed the wheel it
//! built from python/ with maturin, over this binary's fixture.

use std::process::Command;

use crate::common::{fixture, repo_root};
use crate::remote::{Lake, import_sample};
use crate::s3::venv_python;

/// Runs one pytest file with the fixture named in the environment, plus `environment`.
fn pytest(file: &str, environment: &[(String, String)]) {
    let fixture = fixture();
    let (python, _) = venv_python("lakecat");
    let output = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", file])
        .env("LAKECAT_BIN", env!("CARGO_BIN_EXE_lakecat"))
        .env("LAKECAT_TEST_PRODUCTS", &fixture.products)
        .env("LAKECAT_TEST_BAD_IMAGES", &fixture.bad_images)
        .env("LAKECAT_TEST_BASELINE", &fixture.baseline)
        .env("LAKECAT_TEST_TEXT_ONLY", &fixture.text_only)
        .env_remove("AWS_ENDPOINT_URL")
        .envs(environment.iter().map(|(key, value)| (key, value)))
        .current_dir(repo_root())
        .output()
        .expect("pytest starts");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "pytest {file} failed:\n{report}");
    assert!(report.contains(" passed") && !report.contains("skipped"), "{report}");
}

#[test]
fn python_package_scores_like_lakecat_sql() {
    pytest("python/tests/test_lakecat.py", &[]);
}

/// The table and the bundle on S3 (moto on 127.0.0.1), as a notebook over a remote lakehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_package_reads_tables_and_bundles_from_s3() {
    let lake = Lake::start();
    lake.ok(&import_sample("s3://lake/products"));
    lake.upload_dir("models", "baseline/1", &fixture().baseline).await;
    // The endpoint goes in as a storage option, so the test shows those reach the stores.
    let mut environment: Vec<(String, String)> =
        lake.environment().into_iter().filter(|(key, _)| key != "AWS_ENDPOINT_URL").collect();
    let endpoint = lake.environment().into_iter().find(|(key, _)| key == "AWS_ENDPOINT_URL").unwrap().1;
    environment.push(("LAKECAT_TEST_S3_ENDPOINT".into(), endpoint));
    pytest("python/tests/test_remote.py", &environment);
}
