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
    for command in ["demo", "import", "sql", "serve", "cluster", "refresh", "taxonomy", "labels", "train", "eval"] {
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
        (&["cluster", "--help"][..], "lakecat cluster executor --scheduler df://127.0.0.1:50050"),
        (&["cluster", "executor", "--help"][..], "--task-slots"),
        (&["sql", "--help"][..], "--cluster <df://HOST:PORT>"),
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
    // The accuracy row itself (the words above also appear in the SQL the demo prints): the
    // 39 hold-out products, scored well above chance (1 in 17 leaves) at every level.
    let row = accuracy_row(&printed);
    assert_eq!(row[0], 39.0, "{printed}");
    let (level_1, level_2, leaf) = (row[1], row[2], row[3]);
    println!("demo hold-out accuracy: level 1 {level_1}, level 2 {level_2}, leaf {leaf}");
    assert!(level_1 >= 0.95 && level_2 >= 0.9 && leaf >= 0.85, "the demo's model is not learning: {row:?}\n{printed}");
}

/// The numbers of the row under the demo's `| products | level_1_accuracy | … |` header.
fn accuracy_row(printed: &str) -> Vec<f64> {
    let lines: Vec<&str> = printed.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("| products") && line.contains("leaf_accuracy"))
        .unwrap_or_else(|| panic!("no accuracy table in\n{printed}"));
    let cells = lines[header + 2].split('|').map(str::trim).filter(|cell| !cell.is_empty());
    cells.map(|cell| cell.parse().unwrap_or_else(|_| panic!("{cell:?} in {}", lines[header + 2]))).collect()
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

#[test]
fn sql_runs_a_file_into_a_table_with_each_write_mode() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("score.sql");
    std::fs::write(
        &script,
        "SET lakecat.top_k = 2;\n\
         SELECT product_id, c.category, array_length(c.top_k) AS k \
         FROM (SELECT product_id, categorize(image, title, description) AS c FROM products) \
         WHERE product_id IN ('14063', '45245');\n",
    )
    .unwrap();
    let (products, out) = (fixture().products.clone(), dir.path().join("out").display().to_string());
    let model = fixture().baseline.display().to_string();
    let table = format!("products={products}");
    let write = |mode: &str| {
        let args = ["sql", "-f", &script.display().to_string(), "-t", &table, "-m", &model, "--output-table", &out];
        lakecat(&[&args[..], &["--mode", mode]].concat())
    };
    let count = || {
        let output = lakecat(&[
            "sql",
            "--format",
            "csv",
            "-t",
            &format!("out={out}"),
            "SELECT count(*) AS n, max(k) AS k FROM out",
        ]);
        stdout(&output)
    };
    assert!(write("error").status.success());
    assert_eq!(count(), "n,k\n2,2\n", "the file's SET applies to its SELECT");
    let refused = write("error");
    assert!(!refused.status.success() && stderr(&refused).contains("already exists"), "{}", stderr(&refused));
    assert!(write("append").status.success());
    assert_eq!(count(), "n,k\n4,2\n");
    assert!(write("overwrite").status.success());
    assert_eq!(count(), "n,k\n2,2\n");
}

#[test]
fn labels_consensus_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (consensus, rejected) = (dir.path().join("consensus"), dir.path().join("rejected"));
    let output = lakecat(&[
        "labels",
        "consensus",
        "--labels",
        &fixture().labels,
        "--consensus",
        &consensus.display().to_string(),
        "--rejected",
        &rejected.display().to_string(),
        "--min-agree",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = format!("c={}", consensus.display());
    let rows =
        lakecat(&["sql", "--format", "csv", "-t", &table, "SELECT product_id, category FROM c ORDER BY product_id"]);
    // Each labeller's latest label counts: ann changed her mind to T-shirts.
    assert_eq!(
        stdout(&rows),
        "product_id,category\nagreed,Apparel > Topwear > Shirts\nchanged_mind,Apparel > Topwear > Tshirts\n"
    );
}

/// The training library says which setting to change (`min_count`); the CLI says which flag.
#[test]
fn errors_name_the_flag_of_the_setting_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let output = lakecat(&[
        "train",
        "--table",
        &fixture().products,
        "--output",
        &dir.path().join("model").display().to_string(),
        "--no-images",
        "--min-count",
        "100000",
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("a classifier needs at least 2 (lower --min-count?)"), "{message}");
    let output = lakecat(&[
        "refresh",
        "--model",
        &fixture().baseline.display().to_string(),
        "--source",
        &fixture().products,
        "--target",
        &dir.path().join("predictions").display().to_string(),
        "--id-column",
        "sku",
    ]);
    let message = stderr(&output);
    assert!(!output.status.success() && message.contains("; name it with --id-column"), "{message}");
}

#[test]
fn train_options_reach_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("model");
    let output = lakecat(&[
        "train",
        "--table",
        &fixture().products,
        "--output",
        &bundle.display().to_string(),
        "--name",
        "cli",
        "--no-images",
        "--epochs",
        "2",
        "--hierarchy-epochs",
        "1",
        "--dropout",
        "0.2",
        "--seed",
        "7",
        "--text-ngrams",
        "1",
        "--text-char-ngrams",
        "none",
        "--min-count",
        "3",
        "--validation-fraction",
        "0.25",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let settings = &manifest["hyperparameters"];
    assert_eq!(manifest["name"], "cli");
    assert_eq!(manifest["inputs"]["image"], serde_json::Value::Null, "--no-images: a text-only bundle");
    for (pointer, expected) in [
        ("/model/use_images", serde_json::json!(false)),
        ("/epochs", serde_json::json!(2)),
        ("/hierarchy_epochs", serde_json::json!(1)),
        ("/model/dropout", serde_json::json!(0.2)),
        ("/seed", serde_json::json!(7)),
        ("/text/ngrams", serde_json::json!(1)),
        ("/text/char_ngrams", serde_json::Value::Null),
        ("/data/min_count", serde_json::json!(3)),
        ("/data/split/validation_fraction", serde_json::json!(0.25)),
        // Not given: the configuration's default, which `--help` shows too.
        ("/model/text_dense", serde_json::json!(256)),
        ("/optimizer/schedule", serde_json::json!("cosine")),
    ] {
        assert_eq!(settings.pointer(pointer), Some(&expected), "{pointer} in {settings}");
    }
    let help = stdout(&lakecat(&["train", "--help"]));
    assert!(help.contains("--text-dense <TEXT_DENSE>") && help.contains("[default: 256]"), "{help}");
}
