//! End-to-end `categorize` throughput divided by bare ONNX Runtime throughput on the same model,
//! the same batch size and the same number of rows, where ONNX Runtime gets tensors made in
//! advance. The ratio is lakecat's overhead: fetching nothing, decoding and resizing images,
//! vectorizing text, DataFusion, softmax and assembling the result struct.
//!
//!   cargo bench --profile dev --bench categorize_vs_ort -- [--rows 512] [--batch 64]
//!       [--size 224] [--convs 32,64,128,256] [--images DIR] [--rounds 3]
//!
//! The default network (four 3×3 stride-2 conv layers at 224×224, ~0.2 GMAC per image, a
//! 2,000-term text input, 60 classes) is of the order of MobileNetV2 (0.3 GMAC), so the model,
//! not the pipeline, should dominate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use lakecat_core::onnx::{FusionNet, IMAGE_INPUT, LOGITS_OUTPUT, TEXT_INPUT};
use lakecat_core::{BundleBuilder, ImagePreprocessor, ImageSpec, Taxonomy, TextSpec};
use lakecat_udfs::{EngineBuilder, ModelRegistry};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

struct Options {
    rows: usize,
    batch: usize,
    size: u32,
    convs: Vec<usize>,
    images: PathBuf,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        rows: 512,
        batch: 64,
        size: 224,
        convs: vec![32, 64, 128, 256],
        images: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/fashion/images")),
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rows" => options.rows = value().parse().expect("--rows N"),
            "--batch" => options.batch = value().parse().expect("--batch N"),
            "--size" => options.size = value().parse().expect("--size N"),
            "--convs" => options.convs = value().split(',').map(|c| c.parse().expect("--convs 32,64")).collect(),
            "--images" => options.images = PathBuf::from(value()),
            "--rounds" => options.rounds = value().parse().expect("--rounds N"),
            _ => {}
        }
    }
    options
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let (text_terms, classes) = (2000, 60);
    let paths: Vec<Vec<String>> =
        (0..classes).map(|i| vec![format!("Department {}", i / 10), format!("Category {i}")]).collect();
    let taxonomy = Taxonomy::from_paths("bench", paths).expect("taxonomy");
    let leaves = taxonomy.leaves();
    let network = FusionNet::random(
        Some((options.size as usize, options.size as usize, &options.convs, 1)),
        text_terms,
        classes,
        42,
    );
    let text =
        TextSpec { vocabulary: (0..text_terms).map(|i| format!("term{i}")).collect(), ..TextSpec::with_defaults() };
    let bundle_dir = dir.path().join("bundle");
    BundleBuilder::new("bench", taxonomy, leaves, network.to_onnx().expect("onnx"), LOGITS_OUTPUT)
        .with_text_input(TEXT_INPUT, text)
        .with_image_input(IMAGE_INPUT, ImageSpec::imagenet(options.size))
        .write(&bundle_dir)
        .expect("bundle");

    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&options.images).expect("images").flatten().map(|e| e.path()).collect();
    files.sort();
    let images: Vec<Vec<u8>> =
        files.iter().cycle().take(options.rows).map(|path| std::fs::read(path).expect("image")).collect();
    let titles: Vec<String> = (0..options.rows)
        .map(|i| format!("term{} term{} blue cotton shirt", i % text_terms, (i * 7) % text_terms))
        .collect();

    // Bare ONNX Runtime: the same file, tensors prepared before the clock starts.
    let environment = lakecat_udfs::runtime::environment().expect("ONNX Runtime (run scripts/setup.sh)");
    let mut session = Session::builder(environment)
        .expect("builder")
        .with_optimization_level(GraphOptimizationLevel::All)
        .expect("optimization level")
        .commit_from_file(bundle_dir.join("model.onnx"))
        .expect("session");
    let preprocessor = ImagePreprocessor::new(ImageSpec::imagenet(options.size)).expect("spec");
    let per_image = preprocessor.spec().values_per_image();
    let mut image_tensor = vec![0.0f32; options.rows * per_image];
    let inputs: Vec<Option<&[u8]>> = images.iter().map(|bytes| Some(bytes.as_slice())).collect();
    preprocessor.preprocess_batch(&inputs, &mut image_tensor);
    let mut text_tensor = vec![0.0f32; options.rows * text_terms];
    for (row, slot) in text_tensor.chunks_mut(text_terms).enumerate() {
        slot[row % text_terms] = 1.0;
    }

    // End to end: the same rows as image bytes and titles in a table, scored in SQL.
    let engine = EngineBuilder::new(&bundle_dir).with_batch_size(options.batch).build().expect("engine");
    let provider = engine.provider();
    let ctx = SessionContext::new_with_config(lakecat_udfs::config::session_config().with_batch_size(8192));
    lakecat_udfs::register_all(&ctx, Arc::new(ModelRegistry::new().with_model("bench", engine)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("image", DataType::Binary, false),
        Field::new("title", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(BinaryArray::from_iter_values(images.iter())),
            Arc::new(StringArray::from_iter_values(titles.iter())),
        ],
    )
    .expect("batch");
    ctx.register_table("products", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table")))
        .expect("register");

    let (mut bare, mut end_to_end) = (Vec::new(), Vec::new());
    for _ in 0..options.rounds {
        let started = Instant::now();
        for start in (0..options.rows).step_by(options.batch) {
            let rows = options.batch.min(options.rows - start);
            let image = TensorRef::from_array_view((
                preprocessor.spec().tensor_shape(rows),
                &image_tensor[start * per_image..(start + rows) * per_image],
            ))
            .expect("image tensor");
            let text = TensorRef::from_array_view((
                [rows, text_terms],
                &text_tensor[start * text_terms..(start + rows) * text_terms],
            ))
            .expect("text tensor");
            let outputs = session.run(ort::inputs![IMAGE_INPUT => image, TEXT_INPUT => text]).expect("run");
            assert_eq!(outputs[LOGITS_OUTPUT].try_extract_tensor::<f32>().expect("logits").1.len(), rows * classes);
        }
        bare.push(options.rows as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let result = ctx
            .sql("SELECT count(*) AS rows, count(c.error) AS errors FROM (SELECT categorize(image, title, NULL) AS c FROM products)")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        end_to_end.push(options.rows as f64 / started.elapsed().as_secs_f64());
        let count = |column: usize| result[0].column(column).as_primitive::<Int64Type>().value(0);
        assert_eq!((count(0), count(1)), (options.rows as i64, 0), "every row scored without error");
    }
    let (bare, end_to_end) = (median(bare), median(end_to_end));
    println!(
        "{{\"provider\": \"{provider}\", \"rows\": {}, \"batch\": {}, \"size\": {}, \"convs\": {:?}, \"bare_ort_rows_per_s\": {bare:.1}, \"categorize_rows_per_s\": {end_to_end:.1}, \"ratio\": {:.3}}}",
        options.rows,
        options.batch,
        options.size,
        options.convs,
        end_to_end / bare
    );
}
