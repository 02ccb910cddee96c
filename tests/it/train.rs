//! Training from a Delta snapshot with burn, the exported bundle in ONNX Runtime and in SQL,
//! and `lakecat eval`.

use std::sync::OnceLock;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor};
use datafusion::assert_batches_eq;
use lakecat::SessionBuilder;
use lakecat::jobs::OrtFeatures;
use lakecat::jobs::{EvalJob, SnapshotAt, TrainJob};
use lakecat_training::{
    Backbone, BurnFeatures, FeatureExtractor, FrozenBackbone, FusionTrainer, StackingConfig, TrainingConfig,
    TrainingReport,
};
use ort::session::Session;
use ort::value::TensorRef;

use crate::common::{fixture, sample_image};

fn mobilenet_weights() -> std::path::PathBuf {
    lakecat::jobs::installed_mobilenet_weights().expect("scripts/setup.sh installs the MobileNetV2 weights")
}

/// Small and quick, but the real pipeline: images + text trained as one network, both
/// objectives, calibration, export. (The default stacked fit: [`stacked_settings`].)
fn settings() -> TrainingConfig {
    let mut config =
        TrainingConfig::new().with_epochs(6).with_hierarchy_epochs(2).with_batch_size(32).with_stacking(None);
    config.model = config
        .model
        .with_backbone(Backbone::Tiny)
        .with_image_size(Some(32))
        .with_backbone_channels(vec![8, 16])
        .with_image_dense(64)
        .with_text_dense(64);
    config.optimizer.learning_rate = 3e-3;
    config.data.min_count = 5;
    config.data.max_count = Some(12);
    config
}

/// [`settings`] with the MobileNetV2 backbone at 64 px, its weights installed by setup.sh.
fn mobilenet_settings(epochs: usize, hierarchy_epochs: usize) -> TrainingConfig {
    let mut config = settings().with_epochs(epochs).with_hierarchy_epochs(hierarchy_epochs);
    config.model = config
        .model
        .with_backbone(Backbone::MobileNetV2)
        .with_weights(Some(mobilenet_weights()))
        .with_image_size(Some(64));
    config
}

/// One model for the tests of this module, trained once.
fn trained() -> &'static (TrainingReport, u64) {
    static TRAINED: OnceLock<(TrainingReport, u64)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new().expect("runtime").block_on(async {
                let fixture = fixture();
                let version = lakecat::delta::open_table(&fixture.products, None, &Default::default())
                    .await
                    .unwrap()
                    .version()
                    .unwrap();
                let report = TrainJob::new(&fixture.products, fixture.root.join("models/burn"))
                    .with_snapshot(SnapshotAt::Version(version as u64))
                    .with_trainer(FusionTrainer::new("burn-test").with_config(settings()))
                    .execute()
                    .await
                    .expect("training succeeds");
                (report, version as u64)
            })
        })
        .join()
        .expect("training thread")
    })
}

#[test]
fn trains_a_bundle_from_a_delta_snapshot() {
    let (report, version) = trained();
    let manifest = report.bundle.manifest();
    let training = manifest.training.as_ref().expect("the manifest records the training data");
    assert_eq!(training.delta_version, Some(*version));
    assert_eq!(training.rows, 239);
    // The manifest records the whole configuration, and it reads back as the one trained with.
    let recorded = serde_json::Value::Object(manifest.hyperparameters.clone());
    assert_eq!(recorded["data"]["split"]["validation_fraction"], 0.2);
    assert_eq!(recorded["data"]["max_count"], 12);
    let read_back: TrainingConfig = serde_json::from_value(recorded).unwrap();
    assert_eq!(serde_json::to_value(read_back).unwrap(), serde_json::to_value(settings()).unwrap());
    // 17 leaves of 14 rows survive; the one "Footwear > Shoes > Sandals" row (a leaf name that
    // also exists under Sandal) is under the minimum count and reported, not silently lost.
    assert_eq!(report.bundle.classes().len(), 17);
    assert_eq!(report.skipped.get("category under the minimum count, dropped by pruning"), Some(&1));
    assert_eq!(report.train_rows + report.validation_rows, 238);
    assert_eq!(report.train_samples_per_epoch, 17 * 12);
    assert!(report.image_failures.is_empty(), "{:?}", report.image_failures);
    assert_eq!(report.history.len(), 8);
    assert_eq!(report.history[5].objective, "cross_entropy");
    assert_eq!(report.history[6].objective, "hierarchical");
    // Losses of one objective compare (the hierarchical loss adds the ancestor levels' terms).
    let (first, last) = (&report.history[0], &report.history[5]);
    assert!(last.train_loss < first.train_loss, "{} → {}", first.train_loss, last.train_loss);
    assert!(report.temperature > 0.0 && manifest.temperature == Some(report.temperature as f32));
    // 17 classes: chance is 6%; the model must have learnt something real.
    assert!(report.validation.top1 > 0.3, "validation top-1 {}", report.validation.top1);
    assert_eq!(report.validation.per_level.len(), 3);
    let dir = report.bundle.dir();
    assert!(dir.join("training-report.json").is_file());
    let curves = image::open(dir.join("training-curves.png")).expect("the curves are a PNG");
    assert_eq!((curves.width(), curves.height()), (1200, 480));
}

/// [`settings`] fitted the default way, stacked, with the image weight `weights` chooses from.
fn stacked_settings(weights: Vec<f32>) -> TrainingConfig {
    settings().with_stacking(Some(StackingConfig::new().with_image_weights(weights).with_cv_folds(3)))
}

/// The default fit: a text SVM and the image model fitted apart, joined in one ONNX graph that
/// ONNX Runtime scores as burn does; the choice is recorded, and a weight of 0 leaves the
/// images out of the bundle.
#[tokio::test]
async fn a_stacked_fit_joins_the_text_svm_and_the_image_model_in_one_graph() {
    let fixture = fixture();
    let train = |name: &str, config: TrainingConfig| {
        TrainJob::new(&fixture.products, fixture.root.join("models").join(name))
            .with_trainer(FusionTrainer::new(name).with_config(config))
            .execute()
    };
    let report = train("stacked", stacked_settings(vec![0.5])).await.unwrap();
    let stacking = report.stacking.as_ref().expect("a stacked fit reports its choice");
    assert_eq!(stacking.image_weight, 0.5);
    assert!(StackingConfig::new().svm_costs.contains(&stacking.svm_cost), "{stacking:?}");
    assert!(stacking.svm_cv_top1 > 0.3 && stacking.holdout_rows > 0, "{stacking:?}");
    // The sample is smaller than `weighing_rows`: every fold weighs the images.
    assert_eq!(stacking.weighing_folds, 3, "{stacking:?}");
    // The image model's epochs, then the joined network's record.
    assert_eq!(report.history.len(), 9);
    assert_eq!(report.history[8].objective, "stacked");
    assert!(report.validation.top1 > 0.3, "validation top-1 {}", report.validation.top1);
    let manifest = report.bundle.manifest();
    assert_eq!(manifest.hyperparameters["stacking_chosen"]["image_weight"], 0.5);
    assert!(manifest.hyperparameters["trainer"].as_str().unwrap().contains("stacked"));
    assert_burn_matches_onnx_runtime(&report);

    let text_only = train("stacked-text", stacked_settings(vec![0.0])).await.unwrap();
    assert_eq!(text_only.stacking.as_ref().unwrap().image_weight, 0.0);
    assert_eq!(text_only.history.len(), 1);
    let manifest = text_only.bundle.manifest();
    assert!(manifest.inputs.image.is_none() && manifest.inputs.text.is_some());
    assert!(text_only.validation.top1 > 0.3, "validation top-1 {}", text_only.validation.top1);
    // The wide path alone, scored by ONNX Runtime through SQL: burn's metrics to within a row.
    let evaluated = EvalJob::new(text_only.bundle.dir(), &fixture.products).execute().await.unwrap();
    let tolerance = 1.0 / evaluated.metrics.rows as f64 + 1e-9;
    assert!((evaluated.metrics.top1 - text_only.validation.top1).abs() <= tolerance);

    // Several weights: the best enters the bundle only if its held-out gain beats chance.
    let chosen = train("stacked-choice", stacked_settings(StackingConfig::new().image_weights)).await.unwrap();
    let stacking = chosen.stacking.as_ref().unwrap();
    let significant = stacking.images_p_value <= StackingConfig::new().image_significance;
    // No net gain is never significant.
    assert!(stacking.images_fixed > stacking.images_broke || !significant, "{stacking:?}");
    assert_eq!(stacking.image_weight, if significant { stacking.best_image_weight } else { 0.0 }, "{stacking:?}");
    assert_eq!(chosen.bundle.manifest().inputs.image.is_some(), stacking.image_weight > 0.0, "{stacking:?}");
}

/// Softmax of `logits / temperature`, row by row.
fn probabilities(logits: &[f32], classes: usize, temperature: f32) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|z| ((z - max) / temperature).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.into_iter().map(move |e| e / sum)
        })
        .collect()
}

#[test]
fn burn_and_onnx_runtime_give_the_same_probabilities() {
    let (report, _) = trained();
    assert_burn_matches_onnx_runtime(report);
}

/// Feeds fresh random inputs to the trained burn model and to ONNX Runtime on the exported file.
fn assert_burn_matches_onnx_runtime(report: &TrainingReport) {
    let bundle = &report.bundle;
    let manifest = bundle.manifest();
    let device = Device::default();
    let spec = bundle.image().unwrap();
    let text_dim = bundle.text().unwrap().dim();
    let rows = 5;
    // Fresh random inputs, not training data: normalised pixels and a sparse-ish text vector.
    let images = Tensor::<4>::random(spec.tensor_shape(rows), Distribution::Normal(0.0, 1.0), &device);
    let text = Tensor::<2>::random([rows, text_dim], Distribution::Bernoulli(0.05), &device);
    let image_values = images.to_data().try_to_vec::<f32>().unwrap();
    let text_values = text.to_data().try_to_vec::<f32>().unwrap();
    let temperature = manifest.temperature.unwrap();
    let burn = softmax(report.model.forward(Some(images), Some(text)).div_scalar(temperature), 1)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    let environment = lakecat_udfs::runtime::environment().expect("ONNX Runtime (scripts/setup.sh installs it)");
    let mut session = Session::builder(environment).unwrap().commit_from_file(bundle.model_path()).unwrap();
    let image_input = TensorRef::from_array_view((spec.tensor_shape(rows), image_values.as_slice())).unwrap();
    let text_input = TensorRef::from_array_view(([rows, text_dim], text_values.as_slice())).unwrap();
    let outputs = session
        .run(ort::inputs![
            manifest.inputs.image.as_deref().unwrap() => image_input,
            manifest.inputs.text.as_deref().unwrap() => text_input,
        ])
        .unwrap();
    let (_, logits) = outputs[manifest.output.as_str()].try_extract_tensor::<f32>().unwrap();
    let onnx = probabilities(logits, bundle.classes().len(), temperature);

    assert_eq!(burn.len(), rows * bundle.classes().len());
    let max_abs_diff = burn.iter().zip(&onnx).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("burn vs ONNX Runtime, {rows} random rows: max abs probability difference {max_abs_diff:e}");
    assert!(max_abs_diff < 1e-5, "max abs diff {max_abs_diff}");
}

#[tokio::test]
async fn the_trained_bundle_scores_in_sql_and_evaluates() {
    let (report, version) = trained();
    let fixture = fixture();
    let session = SessionBuilder::new()
        .with_table("products", &fixture.products)
        .with_model("burn", report.bundle.dir())
        .build()
        .await
        .unwrap();
    let batches = session
        .ctx
        .sql(
            "SELECT count(*) AS rows, count(c.level_3) AS leaves, count(c.error) AS errors, \
             min(c.confidence) > 0 AS confident FROM (SELECT categorize(image, title, description) AS c FROM products)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    datafusion::assert_batches_eq!(
        [
            "+------+--------+--------+-----------+",
            "| rows | leaves | errors | confident |",
            "+------+--------+--------+-----------+",
            "| 239  | 239    | 0      | true      |",
            "+------+--------+--------+-----------+",
        ],
        &batches
    );

    let reports = fixture.root.join("eval");
    let eval = EvalJob::new(report.bundle.dir(), &fixture.products)
        .with_snapshot(SnapshotAt::Version(*version))
        .with_output(reports.display().to_string())
        .execute()
        .await
        .unwrap();
    assert_eq!(eval.rows, "validation split");
    // The same rows as training's validation split (less the pruned single-row category).
    assert_eq!(eval.metrics.rows as usize, report.validation_rows);
    assert_eq!(eval.per_class.len(), 17);
    let total: u64 = eval.confusion.counts.iter().flatten().sum();
    assert_eq!(total, eval.metrics.rows);
    // Scored by ONNX Runtime through SQL, the metrics match burn's own to within one row.
    let tolerance = 1.0 / eval.metrics.rows as f64 + 1e-9;
    assert!(
        (eval.metrics.top1 - report.validation.top1).abs() <= tolerance,
        "{} vs {}",
        eval.metrics.top1,
        report.validation.top1
    );
    // The job writes its reports, as training does: the metrics as JSON and the picture.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("eval.json")).unwrap()).unwrap();
    // serde_json reads a float back to within one unit in the last place.
    let written_top1 = written["metrics"]["top1"].as_f64().unwrap();
    assert!((written_top1 - eval.metrics.top1).abs() < 1e-12, "{written_top1} vs {}", eval.metrics.top1);
    assert!(image::open(reports.join("confusion-matrix.png")).is_ok());
}

#[tokio::test]
async fn an_empty_snapshot_is_a_clear_error() {
    let fixture = fixture();
    let error = TrainJob::new(&fixture.products, fixture.root.join("models/never"))
        .with_filter("product_id = 'no such product'")
        .execute()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("has no rows matching product_id = 'no such product' to train on"), "{error}");
}

#[tokio::test]
async fn a_frozen_pretrained_mobilenet_trains_from_cached_features_and_exports() {
    let fixture = fixture();
    let settings = mobilenet_settings(3, 1);
    let cache = fixture.root.join("feature-cache").display().to_string();
    let train = |name: &str| {
        TrainJob::new(&fixture.products, fixture.root.join("models").join(name))
            .with_trainer(FusionTrainer::new("mobilenet-test").with_config(settings.clone()))
            .with_feature_cache(&cache)
            .execute()
    };
    let first = train("mobilenet").await.unwrap();
    assert_eq!(first.bundle.manifest().hyperparameters["model"]["backbone"], "mobilenet-v2");
    assert_eq!(first.features_reused, 0);
    // ImageNet features separate these 17 classes well even after a few epochs of the head.
    assert!(first.validation.top1 > 0.5, "validation top-1 {}", first.validation.top1);
    // The whole network, MobileNetV2 included (ReLU6 as relu(x) − relu(x − 6)), is in the ONNX file.
    assert_burn_matches_onnx_runtime(&first);

    // One cache row per distinct image that decoded; a second run computes none of them again.
    let session = SessionBuilder::new().build().await.unwrap();
    session
        .register_table("cache", &lakecat::delta::open_table(&cache, None, &Default::default()).await.unwrap())
        .await
        .unwrap();
    let counts = session
        .ctx
        .sql("SELECT count(*) AS n, count(DISTINCT image_blake3) AS images, min(array_length(features)) AS dim FROM cache")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+-----+--------+------+",
            "| n   | images | dim  |",
            "+-----+--------+------+",
            "| 238 | 238    | 1280 |",
            "+-----+--------+------+"
        ],
        &counts
    );
    let second = train("mobilenet-again").await.unwrap();
    assert_eq!(
        second.features_reused,
        first.train_rows + first.validation_rows - first.image_failures.values().sum::<usize>()
    );
    assert!(second.validation.top1 > 0.5, "validation top-1 {}", second.validation.top1);
}

/// Fine-tuning the last MobileNetV2 layer: the frozen layers keep their ImageNet weights (the
/// trained network's frozen part equals a freshly loaded backbone), the exported network
/// includes the trained layer, and the cache keys the frozen part separately.
#[tokio::test]
async fn the_last_backbone_layers_can_train() {
    let fixture = fixture();
    let mut settings = mobilenet_settings(2, 0);
    settings.model.trainable_layers = 1;
    let report = TrainJob::new(&fixture.products, fixture.root.join("models/mobilenet-fine-tuned"))
        .with_trainer(FusionTrainer::new("fine-tuned").with_config(settings.clone()))
        .execute()
        .await
        .unwrap();
    assert_eq!(report.bundle.manifest().hyperparameters["model"]["trainable_layers"], 1);
    let device = Device::default();
    let images = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &device);
    let frozen = FrozenBackbone::load(&settings.model).unwrap();
    let pixels = images.clone().into_data().try_to_vec::<f32>().unwrap();
    let trained = report.model.image_features(images).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(trained.len(), 2 * 320 * 2 * 2, "the output of features.17 at 64 px: 320 × 2 × 2");
    assert_eq!(trained, frozen.run(&pixels, 2));
    assert_burn_matches_onnx_runtime(&report);
    let error = TrainJob::new(&fixture.products, fixture.root.join("models/too-many"))
        .with_trainer(FusionTrainer::new("x").with_config({
            settings.model.trainable_layers = 20;
            settings
        }))
        .execute()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("MobileNetV2 has 19 layers"), "{error}");
}

/// The backbone exported alone and run in ONNX Runtime (what `lakecat train` does) gives the
/// features burn computes, on real images, a missing one and an undecodable one.
#[test]
fn onnx_runtime_features_match_burn() {
    let model = lakecat_training::FusionModelConfig::new()
        .with_backbone(Backbone::MobileNetV2)
        .with_weights(Some(mobilenet_weights()))
        .with_image_size(Some(96));
    let backbone = FrozenBackbone::load(&model).unwrap();
    let files: Vec<Vec<u8>> =
        ["10102.jpg", "10223.jpg", "10240.jpg"].iter().map(|name| std::fs::read(sample_image(name)).unwrap()).collect();
    let mut images: Vec<Option<&[u8]>> = files.iter().map(|bytes| Some(bytes.as_slice())).collect();
    images.extend([None, Some(b"not an image".as_slice())]);
    let burn = BurnFeatures.extract(&backbone, &images, &|_| {}).unwrap();
    let ort = OrtFeatures::default();
    let onnx = ort.extract(&backbone, &images, &|_| {}).unwrap();
    assert_eq!(onnx.failures, burn.failures);
    assert!(onnx.failures[4].is_some() && onnx.failures[..4].iter().all(Option::is_none));
    let max_diff = burn.values.iter().zip(&onnx.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("MobileNetV2 features, burn vs ONNX Runtime: max abs diff {max_diff:e}");
    assert!(max_diff < 1e-4, "max abs diff {max_diff}");
    // Asked again, nothing is computed: the three decodable images are known (a missing image
    // has no content to key on and is run as zeros, like a failed one).
    let again = ort.extract(&backbone, &images, &|_| {}).unwrap();
    assert_eq!((again.reused, again.values), (3, onnx.values));
    assert_eq!(ort.computed()[backbone.fingerprint()].len(), 3);
}

#[test]
fn weights_of_another_architecture_are_refused() {
    let device = Device::default();
    let mut resnet = lakecat_training::backbones::resnet::ResNet50::new(&device);
    let error = resnet.load_torchvision(&mobilenet_weights()).unwrap_err().to_string();
    assert!(error.contains("does not hold ResNet-50 weights (torchvision layout)"), "{error}");
    assert!(error.contains("layers have no weights in the file"), "{error}");
    let missing = lakecat_training::backbones::mobilenet::MobileNetV2::new(&device)
        .load_torchvision(std::path::Path::new("/nonexistent/mobilenet.pth"))
        .unwrap_err();
    assert!(missing.to_string().contains("does not exist; set `weights`"), "{missing}");
}

/// `confidence` is the calibrated probability, softmax(logits / T) of ONNX Runtime's logits for
/// the trained bundle's own temperature, and `confident_path` stops where the threshold falls
/// between a leaf's probability and its parent's (the sum over the parent's leaves).
#[tokio::test]
async fn confidence_is_the_calibrated_probability_and_confident_path_follows_the_threshold() {
    use arrow::array::{Array, AsArray};
    let (report, _) = trained();
    let bundle = &report.bundle;
    let temperature = bundle.manifest().temperature.unwrap();
    assert!((temperature - 1.0).abs() > 1e-3, "a temperature of {temperature} would not test the division");
    let session = SessionBuilder::new()
        .with_table("products", &fixture().products)
        .with_model("burn", bundle.dir())
        .build()
        .await
        .unwrap();
    let sample = "SELECT product_id, image, title, description FROM products ORDER BY product_id LIMIT 24";
    let batches = session.ctx.sql(sample).await.unwrap().collect().await.unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let text_column =
        |index: usize| arrow::compute::cast(batch.column(index), &arrow::datatypes::DataType::Utf8).unwrap();
    let (ids, titles, descriptions) = (text_column(0), text_column(2), text_column(3));
    let (ids, titles, descriptions) =
        (ids.as_string::<i32>(), titles.as_string::<i32>(), descriptions.as_string::<i32>());
    let images = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Binary).unwrap();
    let images = images.as_binary::<i32>();
    let rows = batch.num_rows();

    // The inputs categorize prepares, by the bundle's own specs, through ONNX Runtime directly.
    let spec = bundle.image().unwrap();
    let preprocessor = lakecat_core::ImagePreprocessor::new(spec.clone()).unwrap();
    let mut image_values = vec![0.0f32; rows * spec.values_per_image()];
    let inputs: Vec<Option<&[u8]>> = (0..rows).map(|row| Some(images.value(row))).collect();
    assert!(preprocessor.preprocess_batch(&inputs, &mut image_values).iter().all(Result::is_ok));
    let vectorizer = bundle.text().unwrap();
    let dim = vectorizer.dim();
    let mut text_values = vec![0.0f32; rows * dim];
    for (row, slot) in text_values.chunks_mut(dim).enumerate() {
        let description = descriptions.is_valid(row).then(|| descriptions.value(row));
        vectorizer.encode_into(Some(titles.value(row)), description, slot).unwrap();
    }
    let manifest = bundle.manifest();
    let environment = lakecat_udfs::runtime::environment().unwrap();
    let mut ort = Session::builder(environment).unwrap().commit_from_memory(bundle.model_bytes()).unwrap();
    let outputs = ort
        .run(ort::inputs![
            manifest.inputs.image.as_deref().unwrap() => TensorRef::from_array_view((spec.tensor_shape(rows), image_values.as_slice())).unwrap(),
            manifest.inputs.text.as_deref().unwrap() => TensorRef::from_array_view(([rows, dim], text_values.as_slice())).unwrap(),
        ])
        .unwrap();
    let (_, logits) = outputs[manifest.output.as_str()].try_extract_tensor::<f32>().unwrap();
    let classes = bundle.classes();
    let expected = probabilities(logits, classes.len(), temperature);

    let taxonomy = bundle.taxonomy();
    let scored = session
        .ctx
        .sql(&format!(
            "SELECT c.category_id, c.confidence FROM (SELECT product_id, categorize(image, title, description) AS c \
             FROM ({sample})) ORDER BY product_id"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let scored = arrow::compute::concat_batches(&scored[0].schema(), &scored).unwrap();
    let category_ids = arrow::compute::cast(scored.column(0), &arrow::datatypes::DataType::Int64).unwrap();
    let category_ids = category_ids.as_primitive::<arrow::datatypes::Int64Type>();
    let confidences = scored.column(1).as_primitive::<arrow::datatypes::Float64Type>();
    // The row whose leaf is least sure of its parent's share: where the threshold can fall between.
    let mut widest: Option<(usize, f32, f32)> = None;
    for (row, probabilities) in expected.chunks(classes.len()).enumerate() {
        let (best, leaf) =
            probabilities.iter().copied().enumerate().fold((0, 0.0f32), |a, b| if b.1 > a.1 { b } else { a });
        assert_eq!(category_ids.value(row), i64::from(classes[best]), "row {row}: the most probable class");
        assert!(
            (confidences.value(row) - f64::from(leaf)).abs() < 1e-5,
            "row {row}: {} vs {leaf}",
            confidences.value(row)
        );
        let path = taxonomy.path(classes[best]);
        let parent: f32 = classes
            .iter()
            .zip(probabilities)
            .filter(|(class, _)| taxonomy.path(**class).starts_with(&path[..path.len() - 1]))
            .map(|(_, probability)| probability)
            .sum();
        if widest.is_none_or(|(_, l, p)| parent - leaf > p - l) {
            widest = Some((row, leaf, parent));
        }
    }
    let (row, leaf, parent) = widest.unwrap();
    assert!(parent - leaf > 1e-3, "no sampled row leaves room between leaf {leaf} and parent {parent}");
    let id = ids.value(row);
    let leaf_path = taxonomy.path(category_ids.value(row) as u32).join(" > ");
    let parent_path = leaf_path.rsplit_once(" > ").unwrap().0.to_string();
    for (threshold, expected_path) in [(leaf - 1e-4, leaf_path.clone()), ((leaf + parent) / 2.0, parent_path)] {
        session.ctx.sql(&format!("SET lakecat.confidence_threshold = {threshold}")).await.unwrap();
        let path = session
            .ctx
            .sql(&format!(
                "SELECT array_to_string(categorize(image, title, description)['confident_path'], ' > ') \
                 FROM products WHERE product_id = '{id}'"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let path = arrow::compute::cast(path[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        assert_eq!(
            path.as_string::<i32>().value(0),
            expected_path,
            "threshold {threshold} (leaf {leaf}, parent {parent})"
        );
    }
}
