//! The `lakecat` binary as users run it.

use std::process::{Command, Output};

use crate::common::fixture;

fn lakecat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lakecat"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lakecat runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_teaches_the_subcommands() {
    let help = stdout(&lakecat(&["--help"]));
    for command in ["demo", "import", "sql", "refresh", "taxonomy", "labels", "train", "eval"] {
        assert!(help.contains(command), "{help}");
    }
    let sql = stdout(&lakecat(&["sql", "--help"]));
    assert!(sql.contains("categorize([model,] image, title, description)") && sql.contains("SET lakecat."), "{sql}");
    for (command, teaches) in [
        (&["taxonomy", "prune", "--help"][..], "--min-count"),
        (&["taxonomy", "migrate", "--help"][..], "OLD PATH => NEW PATH"),
        (&["labels", "consensus", "--help"][..], "--min-agree"),
        (&["labels", "audit", "--help"][..], "--clean-snapshot"),
        (&["train", "--help"][..], "hierarchical loss"),
        (&["train", "--help"][..], "--search-trials"),
        (&["train", "--help"][..], "mobilenet-v2"),
        (&["eval", "--help"][..], "confusion-matrix.png"),
    ] {
        let help = stdout(&lakecat(command));
        assert!(help.contains(teaches), "{command:?}: {help}");
    }
    let refresh = stdout(&lakecat(&["refresh", "--help"]));
    assert!(refresh.contains("--chunk-rows") && refresh.contains("lakecat-refresh"), "{refresh}");
    let import = stdout(&lakecat(&["import", "--help"]));
    assert!(
        import.contains("--category-tree") && import.contains("lakecat import data/sample/fashion/products.csv"),
        "{import}"
    );
}

#[test]
fn sql_reads_a_table_version_and_prints_json() {
    let fixture = fixture();
    let table = format!("products={}@0", fixture.products);
    let model = format!("baseline={}", fixture.baseline.display());
    let output = lakecat(&[
        "sql",
        "--table",
        &table,
        "--model",
        &model,
        "--format",
        "json",
        "SELECT product_id, c.level_1 AS level_1, c.category AS category FROM (SELECT product_id, categorize(image, title, description) AS c FROM products) WHERE product_id = '14063'",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), r#"{"product_id":"14063","level_1":"Apparel","category":"Tshirts"}"#);
    assert!(stderr(&output).contains("model baseline: baseline@"), "{}", stderr(&output));
}

#[test]
fn sql_writes_predictions_to_a_delta_table() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("predictions").display().to_string();
    let table = format!("products={}", fixture.products);
    let model = fixture.baseline.display().to_string();
    let output = lakecat(&[
        "sql",
        "-t",
        &table,
        "-m",
        &model,
        "--output-table",
        &target,
        "SELECT product_id, categorize(image, title, description) AS prediction FROM products",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("wrote 239 rows"), "{}", stderr(&output));
    let read_back = lakecat(&[
        "sql",
        "-t",
        &format!("p={target}"),
        "--format",
        "csv",
        "SELECT count(*) AS n, count(prediction.error) AS errors FROM p",
    ]);
    assert_eq!(stdout(&read_back), "n,errors\n239,0\n", "{}", stderr(&read_back));
}

#[test]
fn sql_reads_a_script_from_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lakecat"))
        .args(["sql", "--format", "csv", "--model", &fixture().baseline.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lakecat runs");
    let script = "SET lakecat.top_k = 2;\nSELECT array_length(c.top_k) AS k, c.level_1 AS level_1 FROM (SELECT categorize(NULL, 'Casio Men Digital Watch', NULL) AS c);\n";
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("lakecat ends");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "k,level_1\n2,Accessories\n");
}

#[test]
fn clear_errors_and_exit_codes() {
    let output = lakecat(&["sql", "--model", "no/such/bundle", "SELECT 1"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not a directory"), "{}", stderr(&output));
    let output = lakecat(&["sql", "--table", "t=no/such/table", "SELECT 1"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not a Delta table"), "{}", stderr(&output));
    let output = lakecat(&["sql", "SELECT categorize(NULL, 'x', NULL)"]);
    assert!(stderr(&output).contains("no model is loaded"), "{}", stderr(&output));
    for (value, message) in [("three", "`three` is not MIN-MAX or none"), ("5-3", "1 <= min <= max <= 8, not 5-3")] {
        let output = lakecat(&["train", "--table", "t", "--output", "o", "--text-char-ngrams", value]);
        assert_eq!(output.status.code(), Some(2), "clap refuses the value before any work");
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let output = lakecat(&["demo", "--dir", &dir.path().display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    for expected in [
        "leaf_accuracy",
        "level_3",
        "skipped 1 rows: category under the minimum count",
        "decode: truncated JPEG",
        "input: nothing to score",
        "first run: 239 products, 239 scored, 0 unchanged",
        "re-run  : 239 products, 0 scored, 239 unchanged",
    ] {
        assert!(printed.contains(expected), "missing {expected:?} in\n{printed}");
    }
    // Training logs each epoch (on standard error, like the progress of other jobs).
    assert!(stderr(&output).contains("epoch 14/14 hierarchical"), "{}", stderr(&output));
}

#[test]
fn refresh_that_cannot_run_exits_non_zero_and_says_why() {
    let fixture = fixture();
    let output = lakecat(&[
        "refresh",
        "--model",
        &fixture.baseline.display().to_string(),
        "--source",
        "/nonexistent/products",
        "--target",
        &std::env::temp_dir().join("lakecat-unused-predictions").display().to_string(),
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/products is not a Delta table"), "{message}");
}
