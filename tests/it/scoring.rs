use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use datafusion::assert_batches_eq;
use lakecat::SessionBuilder;
use lakecat_core::onnx::{FusionNet, IMAGE_INPUT, LOGITS_OUTPUT, TEXT_INPUT};
use lakecat_core::taxonomy::split_path;
use lakecat_core::{BundleBuilder, ImageSpec, Taxonomy, TextSpec};
use lakecat_udfs::{Device, EngineBuilder};

use crate::common::{fixture, session};

async fn query(sql: &str) -> Vec<RecordBatch> {
    session().await.ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

#[tokio::test]
async fn real_products_get_every_level_of_their_category() {
    let batches = query(
        "SELECT product_id, c.category AS category, c.level_1 AS level_1, c.level_2 AS level_2, c.level_3 AS level_3, \
         c.path = category_path AS correct, c.error AS error \
         FROM (SELECT product_id, category_path, categorize(image, title, description) AS c FROM products) \
         WHERE product_id IN ('14063', '45245', '27034', '21523', '10303', '58968') ORDER BY product_id",
    )
    .await;
    // 10303 is the one product filed under Footwear > Shoes > Sandals; the model says the
    // far more common Footwear > Sandal > Sandals: same leaf name, different category.
    assert_batches_eq!(
        [
            "+------------+-----------------------+---------------+-----------+-----------------------+---------+-------+",
            "| product_id | category              | level_1       | level_2   | level_3               | correct | error |",
            "+------------+-----------------------+---------------+-----------+-----------------------+---------+-------+",
            "| 10303      | Sandals               | Footwear      | Sandal    | Sandals               | false   |       |",
            "| 14063      | Tshirts               | Apparel       | Topwear   | Tshirts               | true    |       |",
            "| 21523      | Handbags              | Accessories   | Bags      | Handbags              | true    |       |",
            "| 27034      | Heels                 | Footwear      | Shoes     | Heels                 | true    |       |",
            "| 45245      | Watches               | Accessories   | Watches   | Watches               | true    |       |",
            "| 58968      | Perfume and Body Mist | Personal Care | Fragrance | Perfume and Body Mist | true    |       |",
            "+------------+-----------------------+---------------+-----------+-----------------------+---------+-------+",
        ],
        &batches
    );
}

#[tokio::test]
async fn onnx_runtime_agrees_with_the_fitted_weights() {
    // The trainer computed its training accuracy in Rust from the weights it wrote; scoring the
    // same rows through the ONNX graph in ONNX Runtime must give the same share.
    let manifest_accuracy =
        lakecat_core::Bundle::load(&fixture().baseline).unwrap().manifest().metrics["training_accuracy"]
            .as_f64()
            .unwrap();
    let batches = query(
        "SELECT avg(CASE WHEN c.path = category_path THEN 1.0 ELSE 0.0 END) AS accuracy, count(c.error) AS errors \
         FROM (SELECT category_path, categorize(image, title, description) AS c FROM products)",
    )
    .await;
    let accuracy = batches[0].column(0).as_primitive::<Float64Type>().value(0);
    // ONNX Runtime computes in f32, the trainer in f64: at most a near-tie may flip.
    assert!(
        (accuracy - manifest_accuracy).abs() <= 1.0 / 239.0 + 1e-9,
        "ONNX Runtime {accuracy} vs fitted {manifest_accuracy}"
    );
    assert!(accuracy > 0.9, "the baseline should fit its own training data, got {accuracy}");
    assert_eq!(batches[0].column(1).as_primitive::<arrow::datatypes::Int64Type>().value(0), 0);
}

#[tokio::test]
async fn every_bad_row_keeps_its_place_with_a_reason() {
    let batches = query(
        "SELECT product_id, c.category IS NOT NULL AS scored, substr(c.error, 1, 60) AS error \
         FROM (SELECT product_id, categorize(image, title, description) AS c FROM bad_images) ORDER BY product_id",
    )
    .await;
    assert_batches_eq!(
        [
            "+------------------+--------+--------------------------------------------------------------+",
            "| product_id       | scored | error                                                        |",
            "+------------------+--------+--------------------------------------------------------------+",
            "| bomb_png         | false  | decode: image is 60000x60000 = 3600000000 pixels, over the l |",
            "| cmyk_jpeg        | true   |                                                              |",
            "| corrupt_png      | false  | decode: cannot decode PNG: Format error decoding Png: Corrup |",
            "| good_jpeg        | true   |                                                              |",
            "| gray16_png       | true   |                                                              |",
            "| long_description | false  | text: description is 70000 bytes, over the limit of 65536 by |",
            "| no_image         | true   |                                                              |",
            "| not_an_image     | false  | decode: bytes are not a supported image (JPEG, PNG, WebP, GI |",
            "| nothing          | false  | input: nothing to score: image, title and description are al |",
            "| progressive_jpeg | true   |                                                              |",
            "| rgba_png         | true   |                                                              |",
            "| truncated_jpeg   | false  | decode: truncated JPEG (the file ends before the image data  |",
            "| webp             | true   |                                                              |",
            "| zero_bytes       | false  | decode: image is empty (0 bytes)                             |",
            "+------------------+--------+--------------------------------------------------------------+",
        ],
        &batches
    );
}

#[tokio::test]
async fn model_batch_size_does_not_change_predictions() {
    let fixture = fixture();
    let sql = "SELECT product_id, c.category_id, round(c.confidence, 5) AS confidence \
               FROM (SELECT product_id, categorize(image, title, description) AS c FROM products) ORDER BY product_id";
    let mut results = Vec::new();
    for batch_size in [1, 7, 256] {
        let session = SessionBuilder::new()
            .with_table("products", &fixture.products)
            .with_model("baseline", &fixture.baseline)
            .with_batch_size(batch_size)
            .build()
            .await
            .unwrap();
        let batches = session.ctx.sql(sql).await.unwrap().collect().await.unwrap();
        results.push(arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[tokio::test]
async fn engine_reports_its_execution_provider() {
    let auto = EngineBuilder::new(&fixture().baseline).build().unwrap();
    match auto.provider() {
        "CUDAExecutionProvider" => assert!(auto.provider_note().is_none()),
        "CPUExecutionProvider" => {
            let note = auto.provider_note().unwrap();
            assert!(note.starts_with("CUDA not used") && note.contains("libonnxruntime.so"), "{note}");
        }
        other => panic!("unexpected provider {other}"),
    }
    // CUDA asked for explicitly: it runs there, or the error says which library was loaded (the
    // wheel and its version, not "lakecat's build") and how to get the GPU one.
    match EngineBuilder::new(&fixture().baseline).with_device(Device::Cuda).build() {
        Ok(cuda) => assert_eq!(cuda.provider(), "CUDAExecutionProvider"),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("The ONNX Runtime library loaded is "), "{message}");
            assert!(message.contains("(PyPI package onnxruntime 1.31.1)"), "{message}");
            assert!(message.contains("onnxruntime-gpu") && message.contains("--device cpu"), "{message}");
        }
    }
    let cpu = EngineBuilder::new(&fixture().baseline).with_device(Device::Cpu).with_batch_size(3).build().unwrap();
    assert_eq!((cpu.provider(), cpu.provider_note(), cpu.batch_size()), ("CPUExecutionProvider", None, 3));
}

/// Writes a bundle whose parts are valid on their own; `text_terms`, `classes_in_model` and
/// the taxonomy decide whether they fit together.
fn write_bundle(
    dir: &Path,
    text_terms: usize,
    model_text_dim: usize,
    model_classes: usize,
) -> lakecat_core::Result<lakecat_core::Bundle> {
    let taxonomy = Taxonomy::from_paths("t", ["A > B", "A > C", "D"].map(split_path)).unwrap();
    let classes = taxonomy.leaves();
    let network = FusionNet::random(Some((8, 8, &[4], 1)), model_text_dim, model_classes, 1);
    let text =
        TextSpec { vocabulary: (0..text_terms).map(|i| format!("term{i}")).collect(), ..TextSpec::with_defaults() };
    BundleBuilder::new("broken", taxonomy, classes, network.to_onnx().unwrap(), LOGITS_OUTPUT)
        .with_text_input(TEXT_INPUT, text)
        .with_image_input(IMAGE_INPUT, ImageSpec::imagenet(8))
        .write(dir)
}

async fn load_error(bundle: &Path) -> String {
    match SessionBuilder::new().with_model("m", bundle).build().await {
        Ok(_) => panic!("{} should have been refused", bundle.display()),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn bundles_that_do_not_add_up_are_refused_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    write_bundle(&good, 5, 5, 3).unwrap();
    assert!(SessionBuilder::new().with_model("m", &good).build().await.is_ok());

    let vocabulary = dir.path().join("vocabulary");
    write_bundle(&vocabulary, 4, 5, 3).unwrap();
    let error = load_error(&vocabulary).await;
    assert!(
        error.contains("text.json describes 4 text inputs (terms and n-gram buckets) but model.onnx's takes 5"),
        "{error}"
    );

    let classes = dir.path().join("classes");
    write_bundle(&classes, 5, 5, 4).unwrap();
    let error = load_error(&classes).await;
    assert!(error.contains("model.onnx returns 4 logits but the bundle lists 3 classes"), "{error}");

    let tampered = dir.path().join("tampered");
    write_bundle(&tampered, 5, 5, 3).unwrap();
    let model = tampered.join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&model, bytes).unwrap();
    let error = load_error(&tampered).await;
    assert!(error.contains("model.onnx was modified after the bundle was written"), "{error}");

    let error = load_error(&dir.path().join("nowhere")).await;
    assert!(error.contains("is not a directory"), "{error}");
}

#[tokio::test]
async fn named_models_and_an_unknown_name() {
    let batches = query(
        "SELECT c.category AS category, c.model LIKE 'text_only@%' AS by_text_model \
         FROM (SELECT categorize('text_only', NULL, 'Titan Women Analog Watch', NULL) AS c)",
    )
    .await;
    assert_batches_eq!(
        [
            "+----------+---------------+",
            "| category | by_text_model |",
            "+----------+---------------+",
            "| Watches  | true          |",
            "+----------+---------------+",
        ],
        &batches
    );
    let error = session().await.ctx.sql("SELECT categorize('nope', NULL, 'x', NULL)").await.unwrap_err().to_string();
    assert!(error.contains("no model named \"nope\" is loaded (loaded: baseline, text_only)"), "{error}");
}

/// Selecting several fields of `categorize`'s struct (and filtering on one) must run the model
/// once per row, not once per field: DataFusion 55's leaf-expression pushdown would inline the
/// call into every `get_field` (see `lakecat_udfs::config::session_config`).
#[tokio::test]
async fn categorize_runs_once_however_many_fields_are_selected() {
    let ctx = session().await.ctx;
    for sql in [
        "SELECT product_id, c.category_id, c.category, c.level_1, c.level_2, c.confidence
         FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)",
        "SELECT c.category, c.confidence
         FROM (SELECT categorize(image, title, description) AS c FROM products)
         WHERE c.confidence > 0.5 AND c.level_1 = 'Apparel'",
        "WITH scored AS (SELECT product_id, categorize(image, title, description) AS c FROM products)
         SELECT product_id, c.category, c.confidence FROM scored WHERE c.error IS NULL ORDER BY c.confidence",
    ] {
        let plan = ctx.sql(sql).await.expect("plans").create_physical_plan().await.expect("physical plan");
        let text = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
        assert_eq!(text.matches("categorize(").count(), 1, "categorize evaluated more than once:\n{text}");
    }
}
