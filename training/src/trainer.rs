//! Trains the burn [`FusionModel`] and writes its bundle (DESIGN.md §4):
//!
//! 1. labels → taxonomy → pruned trainable leaves ([`crate::data::label_examples`]);
//! 2. train/validation split by hashed product id; the vocabulary is fitted on the training
//!    split only; inputs encoded with the scoring code;
//! 3. optional balancing to `max_count` per class (down-sampling; synthetic products with
//!    augmented images and SMOTE text);
//! 4. `epochs` of cross-entropy, then `hierarchy_epochs` of the hierarchical loss
//!    ([`crate::loss`]), AdamW; per-epoch validation metrics ([`crate::metrics`]);
//! 5. temperature calibration on the validation split;
//! 6. ONNX export of the whole network (burn-onnx) + vocabulary, taxonomy, preprocessing and
//!    manifest = a bundle that `categorize` loads unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use burn_onnx::export::OnnxExporter;
use indicatif::ProgressBar;
use lakecat_core::onnx::graph_io_names;
use lakecat_core::{
    Bundle, BundleBuilder, CharNgrams, ImageSpec, Pruner, SmallCategories, Taxonomy, TextSpec, TextVectorizer,
    TrainingSource,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::augment::Augmentation;
use crate::calibration::{fit_temperature, negative_log_likelihood};
use crate::data::{Encoded, Example, FusionBatch, FusionBatcher, Sample, Split, balance, encode, label_examples};
use crate::features::{BurnFeatures, FeatureExtractor, FrozenBackbone};
use crate::loss::{Hierarchy, cross_entropy, hierarchical_loss, one_hot};
use crate::metrics::{Metrics, Scored, ranked};
use crate::model::{Backbone, FusionModel, FusionModelConfig};
use crate::{Error, Result};

/// Settings of a training run; every one is recorded in the bundle's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingSettings {
    pub backbone: Backbone,
    /// Pretrained backbone weights (torchvision format); MobileNetV2 needs them.
    pub weights: Option<PathBuf>,
    pub image_size: u32,
    pub use_images: bool,
    pub use_text: bool,
    pub backbone_channels: Vec<usize>,
    /// The last layers of a pretrained backbone that are trained; the others stay frozen
    /// (their output is computed once per image and cached). 0: the whole backbone is frozen.
    pub trainable_layers: usize,
    pub image_dense: usize,
    pub text_dense: usize,
    pub dropout: f64,
    pub epochs: usize,
    pub hierarchy_epochs: usize,
    pub hierarchy_weight: f32,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub learning_rate_schedule: LearningRateSchedule,
    pub weight_decay: f32,
    /// Categories with fewer labelled rows are merged into their parent (or dropped).
    pub min_count: u64,
    pub drop_small_categories: bool,
    /// Classes are balanced to this many training samples each; `None` keeps the data as is.
    pub max_count: Option<usize>,
    pub augmentation: Augmentation,
    pub smote_neighbours: usize,
    pub min_document_count: usize,
    pub max_terms: usize,
    /// 1: words; 2: words and pairs of adjacent words ("casual shoes" vs "sports shoes").
    pub text_ngrams: usize,
    /// Character n-grams of each word as extra text terms (unseen spellings and compounds
    /// share them with seen ones); `None`: whole words only.
    pub text_char_ngrams: Option<CharNgrams>,
    pub split: Split,
    pub seed: u64,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            backbone: Backbone::Tiny,
            weights: None,
            image_size: 64,
            use_images: true,
            use_text: true,
            backbone_channels: vec![16, 32, 64],
            trainable_layers: 0,
            image_dense: 1024,
            text_dense: 256,
            dropout: 0.5,
            epochs: 8,
            hierarchy_epochs: 2,
            hierarchy_weight: 1.0,
            batch_size: 64,
            learning_rate: 1e-3,
            learning_rate_schedule: LearningRateSchedule::Cosine,
            weight_decay: 1e-4,
            min_count: 10,
            drop_small_categories: false,
            max_count: None,
            augmentation: Augmentation::default(),
            smote_neighbours: 5,
            min_document_count: 2,
            max_terms: 20_000,
            text_ngrams: 1,
            text_char_ngrams: Some(CharNgrams { min: 3, max: 5 }),
            split: Split::default(),
            seed: 42,
        }
    }
}

/// How the learning rate changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LearningRateSchedule {
    Constant,
    /// From the learning rate down to a hundredth of it along a half cosine over all batches:
    /// large steps first, small ones when the model is nearly there (steadier final epochs).
    Cosine,
}

impl LearningRateSchedule {
    /// The learning rate of step `step` (from 0) of `total` steps.
    pub fn at(self, learning_rate: f64, step: usize, total: usize) -> f64 {
        match self {
            Self::Constant => learning_rate,
            Self::Cosine => {
                let floor = learning_rate / 100.0;
                let progress = step as f64 / total.max(1) as f64;
                floor + 0.5 * (learning_rate - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Trains a [`FusionModel`] into a bundle. Configure with the `with_*` methods, then [`fit`](Self::fit).
#[derive(Debug, Clone)]
pub struct FusionTrainer {
    name: String,
    settings: TrainingSettings,
    taxonomy: Option<Taxonomy>,
    training: Option<TrainingSource>,
    progress: ProgressBar,
    epoch_log: bool,
    /// Runs a frozen backbone over the images (default: burn).
    features: Arc<dyn FeatureExtractor>,
}

/// One epoch of the schedule.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// `cross_entropy` or `hierarchical`.
    pub objective: &'static str,
    pub train_loss: f64,
    pub train_top1: f64,
    /// Leaf cross-entropy on the validation split (temperature 1).
    pub validation_loss: f64,
    pub validation: Metrics,
    pub samples_per_second: f64,
}

/// Seconds and throughput of each phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseTimes {
    pub encode_seconds: f64,
    pub encode_rows_per_second: f64,
    pub train_seconds: f64,
    pub train_samples_per_second: f64,
    pub export_seconds: f64,
}

/// What training did. Nothing is dropped without a count and a reason here.
#[derive(Debug)]
pub struct TrainingReport {
    pub bundle: Bundle,
    /// The trained network (inference mode), e.g. to compare with the exported ONNX file.
    pub model: FusionModel,
    pub history: Vec<EpochRecord>,
    /// Metrics of the final model on the validation split.
    pub validation: Metrics,
    pub temperature: f64,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub train_samples_per_epoch: usize,
    /// Reason → rows left out of training.
    pub skipped: BTreeMap<String, usize>,
    /// Reason → rows whose image could not be decoded (trained on their text alone).
    pub image_failures: BTreeMap<String, usize>,
    pub times: PhaseTimes,
    /// Rows whose frozen-backbone features were reused (e.g. from a cache) instead of computed.
    pub features_reused: usize,
}

impl TrainingReport {
    /// The report as JSON (what `lakecat train --json` prints and the bundle keeps next to it).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bundle": self.bundle.dir().display().to_string(),
            "fingerprint": self.bundle.fingerprint(),
            "classes": self.bundle.classes().len(),
            "train_rows": self.train_rows,
            "validation_rows": self.validation_rows,
            "train_samples_per_epoch": self.train_samples_per_epoch,
            "temperature": self.temperature,
            "validation": self.validation,
            "skipped": self.skipped,
            "image_failures": self.image_failures,
            "times": self.times,
            "features_reused": self.features_reused,
            "history": self.history,
        })
    }
}

impl FusionTrainer {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            settings: TrainingSettings::default(),
            taxonomy: None,
            training: None,
            progress: ProgressBar::hidden(),
            epoch_log: false,
            features: Arc::new(BurnFeatures),
        }
    }

    pub fn with_settings(mut self, settings: TrainingSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn settings(&self) -> &TrainingSettings {
        &self.settings
    }

    /// Labels must be paths of this taxonomy (default: the taxonomy the labels themselves form).
    pub fn with_taxonomy(mut self, taxonomy: Taxonomy) -> Self {
        self.taxonomy = Some(taxonomy);
        self
    }

    /// Records the training table and version in the manifest.
    pub fn with_training_source(mut self, source: TrainingSource) -> Self {
        self.training = Some(source);
        self
    }

    /// Shows progress on this bar (hidden by default).
    pub fn with_progress(mut self, progress: ProgressBar) -> Self {
        self.progress = progress;
        self
    }

    /// Prints a line per epoch (above the progress bar, or on standard error without one).
    pub fn with_epoch_log(mut self, log: bool) -> Self {
        self.epoch_log = log;
        self
    }

    /// Computes (or looks up) a frozen pretrained backbone's image features with `extractor`.
    pub fn with_feature_extractor(mut self, extractor: Arc<dyn FeatureExtractor>) -> Self {
        self.features = extractor;
        self
    }

    /// A line of the training log (above the progress bar, or on standard error without one).
    fn log(&self, line: &str) {
        if !self.epoch_log {
            return;
        }
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }

    fn check_settings(&self) -> Result<()> {
        let s = &self.settings;
        let refuse = |message: &str| Err(Error::Setting(message.into()));
        if !s.use_images && !s.use_text {
            return refuse("the model must read images, text or both");
        }
        if s.batch_size == 0 {
            return refuse("batch size must be at least 1");
        }
        if s.epochs + s.hierarchy_epochs == 0 {
            return refuse("train for at least one epoch");
        }
        if !(s.learning_rate.is_finite() && s.learning_rate > 0.0) {
            return refuse("the learning rate must be a positive number");
        }
        if !(0.0..1.0).contains(&s.dropout) {
            return refuse("dropout must be in [0, 1)");
        }
        if s.max_count == Some(0) {
            return refuse("max_count must be at least 1");
        }
        if !(0.0..1.0).contains(&s.split.validation_fraction) {
            return refuse("the validation fraction must be in [0, 1)");
        }
        if s.trainable_layers > s.backbone.layers() {
            return Err(Error::Setting(match s.backbone {
                Backbone::Tiny => {
                    "the tiny CNN always trains whole; trainable layers apply to pretrained backbones".into()
                }
                backbone => format!("{backbone:?} has {} layers; train at most that many", backbone.layers()),
            }));
        }
        if !(1..=2).contains(&s.text_ngrams) {
            return refuse("text n-grams must be 1 (words) or 2 (words and word pairs)");
        }
        if let Some(char_ngrams) = s.text_char_ngrams {
            char_ngrams.validate().map_err(|error| Error::Setting(error.to_string()))?;
        }
        if s.use_images && (s.image_size < 8 || s.backbone_channels.is_empty()) {
            return refuse("images need a size of at least 8 and at least one backbone layer");
        }
        Ok(())
    }

    pub fn fit(&self, examples: &[Example<'_>], bundle_dir: impl AsRef<Path>) -> Result<TrainingReport> {
        self.check_settings()?;
        let s = &self.settings;
        if examples.is_empty() {
            return Err(Error::NoExamples("the training table is empty".into()));
        }
        let small = if s.drop_small_categories { SmallCategories::Drop } else { SmallCategories::MergeIntoParent };
        let pruner = Pruner::new(s.min_count.max(1)).with_small_categories(small);
        let labelled = label_examples(examples, self.taxonomy.as_ref(), &pruner)?;
        let mut skipped = labelled.skipped.clone();

        let (mut train_rows, mut validation_rows) = (Vec::new(), Vec::new());
        let mut rows = Vec::with_capacity(labelled.rows.len());
        for &(index, class) in &labelled.rows {
            let Some(id) = examples[index].id else {
                *skipped.entry("no product id (the split needs one)".into()).or_default() += 1;
                continue;
            };
            let side = if s.split.is_validation(id) { &mut validation_rows } else { &mut train_rows };
            side.push(rows.len());
            rows.push((index, class));
        }
        if train_rows.is_empty() {
            return Err(Error::NoExamples(format!("no rows left for the training split of {} rows", rows.len())));
        }

        let started = Instant::now();
        self.progress.set_message("encoding images and text");
        let vectorizer = if s.use_text {
            let texts: Vec<String> = train_rows
                .iter()
                .map(|&row| {
                    let example = &examples[rows[row].0];
                    format!("{} {}", example.title.unwrap_or(""), example.description.unwrap_or(""))
                })
                .collect();
            Some(TextVectorizer::fit(
                TextSpec { max_ngram: s.text_ngrams, char_ngrams: s.text_char_ngrams, ..TextSpec::with_defaults() },
                texts.iter().map(String::as_str),
                s.min_document_count,
                s.max_terms,
            )?)
        } else {
            None
        };
        let image_spec = s.use_images.then(|| ImageSpec::imagenet(s.image_size));
        let text_dim = vectorizer.as_ref().map_or(0, TextVectorizer::dim);
        if s.use_text && text_dim == 0 {
            return Err(Error::NoExamples(
                "the training text has no term in at least min_document_count products; lower it or train on images only"
                    .into(),
            ));
        }
        let classes = labelled.classes.clone();
        let device = Device::default().autodiff();
        device.seed(s.seed);
        let mut model = FusionModelConfig::new(classes.len(), text_dim)
            .with_backbone(s.backbone)
            .with_use_images(s.use_images)
            .with_backbone_channels(s.backbone_channels.clone())
            .with_trainable_layers(s.trainable_layers)
            .with_image_dense(s.image_dense)
            .with_text_dense(s.text_dense)
            .with_dropout(s.dropout)
            .init(&device);
        let cache_features = s.use_images && s.backbone.is_pretrained();
        // A frozen pretrained backbone is run once per image, not once per epoch.
        let frozen = cache_features.then(|| FrozenBackbone::load(s)).transpose()?;
        if let Some(weights) = s.weights.as_deref().filter(|_| cache_features) {
            // Loaded into the trained network too, for the export; never updated.
            model.load_backbone_weights(weights)?;
        }
        self.progress.set_length(rows.len() as u64);
        self.log(&format!(
            "encoding {} rows ({})",
            rows.len(),
            match &frozen {
                Some(backbone) => format!(
                    "images through the frozen {:?} backbone once, with {}",
                    backbone.backbone(),
                    self.features.describe(backbone)
                ),
                None => "images and text".into(),
            }
        ));
        let extractor = frozen.as_ref().map(|backbone| (&*self.features, backbone));
        let data = encode(examples, &rows, image_spec.as_ref(), vectorizer.as_ref(), extractor, &|n| {
            self.progress.inc(n as u64)
        })?;
        drop(frozen);
        let encode_seconds = started.elapsed().as_secs_f64();
        self.log(&format!(
            "encoded in {encode_seconds:.0} s{}",
            if cache_features {
                format!(
                    " ({} image features reused, {} computed)",
                    data.features_reused,
                    rows.len() - data.features_reused
                )
            } else {
                String::new()
            }
        ));

        let samples = match s.max_count {
            Some(max_count) => balance(&data, &train_rows, max_count, s.smote_neighbours, s.seed),
            None => train_rows.iter().map(|&row| Sample::Row(row)).collect(),
        };
        let mut optimizer = AdamWConfig::new().with_weight_decay(s.weight_decay).init();
        let hierarchy = Hierarchy::new(&labelled.taxonomy, &classes);
        let batcher = FusionBatcher::new(&data, s.augmentation);
        let plain = FusionBatcher::new(&data, Augmentation::none());
        let mut rng = StdRng::seed_from_u64(s.seed);
        let mut history = Vec::new();
        let epochs = s.epochs + s.hierarchy_epochs;
        let batches_per_epoch = samples.len().div_ceil(s.batch_size);
        self.progress.set_length((epochs * batches_per_epoch) as u64);
        self.progress.set_position(0);
        let validation_labels: Vec<usize> = validation_rows.iter().map(|&row| data.classes[row]).collect();
        let total_steps = epochs * batches_per_epoch;
        let mut step = 0;
        let training_started = Instant::now();
        let mut validation_logits = Vec::new();
        for epoch in 0..epochs {
            let objective = if epoch < s.epochs { "cross_entropy" } else { "hierarchical" };
            let epoch_started = Instant::now();
            let mut order = samples.clone();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut correct) = (0.0f64, 0usize);
            for (index, chunk) in order.chunks(s.batch_size).enumerate() {
                let batch = batcher.batch(chunk.to_vec(), &device);
                let classes_of_batch = batch.classes.clone();
                let logits = forward(&model, batch);
                let targets = one_hot(&classes_of_batch, classes.len(), &device);
                let loss = match objective {
                    "cross_entropy" => cross_entropy(logits.clone(), targets),
                    _ => hierarchical_loss(logits.clone(), targets, &hierarchy, s.hierarchy_weight),
                };
                let value: f32 = loss.clone().into_scalar();
                if !value.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        epoch: epoch + 1,
                        batch: index + 1,
                        value,
                        learning_rate: s.learning_rate,
                    });
                }
                loss_sum += f64::from(value) * chunk.len() as f64;
                let predicted = values::<2, _, i64>(logits.clone().argmax(1));
                correct += predicted.iter().zip(&classes_of_batch).filter(|(p, c)| **p as usize == **c).count();
                let gradients = GradientsParams::from_grads(loss.backward(), &model);
                model =
                    optimizer.step(s.learning_rate_schedule.at(s.learning_rate, step, total_steps), model, gradients);
                step += 1;
                self.progress.inc(1);
            }
            let seconds = epoch_started.elapsed().as_secs_f64();
            validation_logits = predict_logits(&model.valid(), &plain, &validation_rows, s.batch_size);
            let record = EpochRecord {
                epoch: epoch + 1,
                objective,
                train_loss: loss_sum / samples.len() as f64,
                train_top1: correct as f64 / samples.len() as f64,
                validation_loss: negative_log_likelihood(&validation_logits, classes.len(), &validation_labels, 1.0),
                validation: validation_metrics(
                    &labelled.taxonomy,
                    &classes,
                    &data,
                    &validation_rows,
                    &validation_logits,
                ),
                samples_per_second: samples.len() as f64 / seconds.max(1e-9),
            };
            let line = format!(
                "epoch {:>2}/{epochs} {:<13} loss {:.4}  train top-1 {:.3}  validation top-1 {:.3} (level 1 {:.3})  {:.0} samples/s",
                record.epoch,
                objective,
                record.train_loss,
                record.train_top1,
                record.validation.top1,
                record.validation.per_level.first().copied().unwrap_or(0.0),
                record.samples_per_second
            );
            self.log(&line);
            history.push(record);
        }
        let train_seconds = training_started.elapsed().as_secs_f64();
        let model = model.valid();
        let temperature = fit_temperature(&validation_logits, classes.len(), &validation_labels);
        // The last epoch's validation metrics are the final model's: the same logits.
        let validation = history.last().expect("at least one epoch ran").validation.clone();

        self.progress.set_message("exporting to ONNX");
        let export_started = Instant::now();
        // The exporter moves the module's parameters to its capture device; a copy of its own
        // keeps the returned model usable.
        let exported = export_onnx(&model.valid(), image_spec.as_ref(), data.text_dim)?;
        let export_seconds = export_started.elapsed().as_secs_f64();

        let mut builder =
            BundleBuilder::new(&self.name, labelled.taxonomy.clone(), classes.clone(), exported.model, exported.output)
                .with_temperature(temperature as f32)
                .with_hyperparameter("trainer", describe_network(s))
                .with_metric("validation_top1", validation.top1)
                .with_metric("validation_hierarchy_win", validation.hierarchy_win)
                .with_metric("validation_fallback", validation.fallback)
                .with_metric("validation_per_level", validation.per_level.clone())
                .with_metric("validation_rows", validation_rows.len() as u64)
                .with_metric("train_rows", train_rows.len() as u64);
        if let serde_json::Value::Object(settings) = serde_json::to_value(s).expect("settings serialize") {
            for (key, value) in settings {
                builder = builder.with_hyperparameter(key, value);
            }
        }
        if let (Some(name), Some(spec)) = (exported.image, image_spec) {
            builder = builder.with_image_input(name, spec);
        }
        if let (Some(name), Some(vectorizer)) = (exported.text, &vectorizer) {
            builder = builder.with_text_input(name, vectorizer.spec().clone());
        }
        if let Some(training) = &self.training {
            builder = builder.with_training(training.clone());
        }
        let bundle = builder.write(&bundle_dir)?;
        self.progress.finish_and_clear();
        let train_samples_per_epoch = samples.len();
        Ok(TrainingReport {
            bundle,
            model,
            history,
            validation,
            temperature,
            train_rows: train_rows.len(),
            validation_rows: validation_rows.len(),
            train_samples_per_epoch,
            skipped,
            image_failures: data.image_failures.clone(),
            times: PhaseTimes {
                encode_seconds,
                encode_rows_per_second: rows.len() as f64 / encode_seconds.max(1e-9),
                train_seconds,
                train_samples_per_second: (train_samples_per_epoch * epochs) as f64 / train_seconds.max(1e-9),
                export_seconds,
            },
            features_reused: data.features_reused,
        })
    }
}

/// The network in words, for the manifest.
fn describe_network(s: &TrainingSettings) -> String {
    let image = match (s.use_images, s.backbone) {
        (false, _) => None,
        (true, Backbone::Tiny) => Some(format!("tiny CNN image branch ({} px)", s.image_size)),
        (true, backbone) => Some(format!("frozen {backbone:?} image branch ({} px)", s.image_size)),
    };
    let text = s.use_text.then(|| "two-layer text branch".to_string());
    let parts: Vec<String> = image.into_iter().chain(text).collect();
    format!("burn FusionModel ({})", parts.join(" + "))
}

/// Logits of `rows`, `[rows, classes]` row-major, in inference mode.
fn predict_logits(model: &FusionModel, batcher: &FusionBatcher<'_>, rows: &[usize], batch_size: usize) -> Vec<f32> {
    let device = Device::default();
    let mut logits = Vec::new();
    for chunk in rows.chunks(batch_size) {
        let batch = batcher.batch(chunk.iter().map(|&row| Sample::Row(row)).collect(), &device);
        let output = forward(model, batch);
        logits.extend(values::<2, _, f32>(output));
    }
    logits
}

/// A tensor's values as `E`, whatever element type the backend computed them in.
pub(crate) fn values<const D: usize, K: burn::tensor::kind::Basic, E: burn::tensor::Element>(
    tensor: Tensor<D, K>,
) -> Vec<E> {
    tensor.into_data().convert::<E>().try_into_vec::<E>().expect("converted to the requested element type")
}

/// Logits of a batch: from its images, or from their cached backbone features.
fn forward(model: &FusionModel, batch: FusionBatch) -> Tensor<2> {
    match batch.image_features {
        Some(features) => model.forward_features(Some(features), batch.text),
        None => model.forward(batch.images, batch.text),
    }
}

fn validation_metrics(taxonomy: &Taxonomy, classes: &[u32], data: &Encoded, rows: &[usize], logits: &[f32]) -> Metrics {
    let scored: Vec<Scored> = ranked(logits, classes)
        .into_iter()
        .zip(rows)
        .map(|(ranked, &row)| Scored { truth: classes[data.classes[row]], ranked })
        .collect();
    Metrics::compute(taxonomy, &scored)
}

/// The exported network and the names its graph gave the inputs and output.
pub struct Exported {
    pub model: Vec<u8>,
    pub image: Option<String>,
    pub text: Option<String>,
    pub output: String,
}

/// Batch size of the export trace. The batch axis is made symbolic afterwards
/// ([`dynamic_batch`]); a prime no layer width uses keeps batch-derived dimensions recognisable.
pub(crate) const TRACE_BATCH: usize = 13;

/// Exports `model` to ONNX with a dynamic batch axis. burn-onnx names graph inputs itself; they
/// are read back from the file (in the order given: image, then text).
///
/// burn-onnx's `export_dynamic` refuses this network: with two inputs sharing the batch axis,
/// the reshape after global pooling "matches 2 dynamic source axes and is ambiguous". So the
/// graph is traced with a fixed batch and the batch axis made symbolic afterwards.
pub fn export_onnx(model: &FusionModel, image: Option<&ImageSpec>, text_dim: usize) -> Result<Exported> {
    let device = Device::default();
    let exporter = OnnxExporter::new();
    let images = |spec: &ImageSpec| Tensor::<4>::random(spec.tensor_shape(TRACE_BATCH), Distribution::Default, &device);
    let text = || Tensor::<2>::random([TRACE_BATCH, text_dim], Distribution::Default, &device);
    let onnx = match (image.filter(|_| model.has_images()), model.has_text()) {
        (Some(spec), true) => exporter.export(model, (images(spec), text()), |model: &FusionModel, (images, text)| {
            model.forward(Some(images), Some(text))
        }),
        (Some(spec), false) => {
            exporter.export(model, images(spec), |model: &FusionModel, images| model.forward(Some(images), None))
        }
        (None, true) => exporter.export(model, text(), |model: &FusionModel, text| model.forward(None, Some(text))),
        (None, false) => return Err(Error::Export("the model has neither an image nor a text branch".into())),
    }
    .map_err(|error| Error::Export(error.to_string()))?;
    let bytes = dynamic_batch(onnx.as_bytes())?;
    let (inputs, outputs) = graph_io_names(&bytes)?;
    let output = outputs.first().cloned().ok_or_else(|| Error::Export("the exported graph has no output".into()))?;
    let mut inputs = inputs.into_iter();
    let image_name = model.has_images().then(|| inputs.next()).flatten();
    let text_name = model.has_text().then(|| inputs.next()).flatten();
    Ok(Exported { model: bytes, image: image_name, text: text_name, output })
}

/// Turns the traced batch size into a symbolic `batch` axis: axis 0 of every graph input and
/// output, and `-1` (inferred) in the first entry of each Reshape target that starts with it
/// (the reshapes of activations, which keep the batch first; those of weights start with 1). Intermediate shape annotations are dropped; ONNX Runtime
/// infers them.
pub(crate) fn dynamic_batch(model: &[u8]) -> Result<Vec<u8>> {
    use onnx_ir::Message;
    let fail = |what: String| Error::Export(format!("making the batch axis dynamic: {what}"));
    let mut proto = onnx_ir::ModelProto::parse_from_bytes(model).map_err(|error| fail(error.to_string()))?;
    let graph = proto.graph.mut_or_insert_default();
    for value in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        let dims = &mut value.type_.mut_or_insert_default().mut_tensor_type().shape.mut_or_insert_default().dim;
        let first = dims.first_mut().ok_or_else(|| fail(format!("{} has no dimensions", value.name)))?;
        if first.dim_value() != TRACE_BATCH as i64 {
            return Err(fail(format!("{} does not start with the traced batch", value.name)));
        }
        first.set_dim_param("batch".into());
    }
    graph.value_info.clear();
    let shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "Reshape")
        .filter_map(|node| node.input.get(1).cloned())
        .collect();
    for shape in shapes {
        let tensor = graph
            .initializer
            .iter_mut()
            .find(|tensor| tensor.name == shape)
            .ok_or_else(|| fail(format!("the reshape target {shape} is not a constant")))?;
        let first = tensor.raw_data.get(..8).map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes")));
        // Reshapes of weights (e.g. a bias to [1, C]) do not involve the batch.
        if first != Some(TRACE_BATCH as i64) {
            continue;
        }
        let mut raw = tensor.raw_data.to_vec();
        raw[..8].copy_from_slice(&(-1i64).to_le_bytes());
        tensor.raw_data = raw.into();
    }
    proto.write_to_bytes().map_err(|error| fail(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
    use std::io::Cursor;

    fn solid(colour: [u8; 3]) -> Vec<u8> {
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(ImageBuffer::from_pixel(24, 24, Rgb(colour)))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn the_cosine_schedule_falls_from_the_learning_rate_to_a_hundredth() {
        let at = |step| LearningRateSchedule::Cosine.at(0.01, step, 100);
        assert_eq!(at(0), 0.01);
        assert!((at(50) - 0.00505).abs() < 1e-12);
        assert!((at(100) - 0.0001).abs() < 1e-12);
        assert!((1..100).all(|step| at(step) < at(step - 1)));
        assert_eq!(LearningRateSchedule::Constant.at(0.01, 70, 100), 0.01);
    }

    fn quick() -> TrainingSettings {
        TrainingSettings {
            image_size: 16,
            backbone_channels: vec![4],
            image_dense: 8,
            text_dense: 8,
            epochs: 2,
            hierarchy_epochs: 1,
            batch_size: 8,
            min_count: 2,
            min_document_count: 1,
            ..TrainingSettings::default()
        }
    }

    /// Red shirts and blue shoes, alternating, one per id.
    fn examples<'a>(ids: &'a [String], red: &'a [u8], blue: &'a [u8]) -> Vec<Example<'a>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Example {
                id: Some(id),
                image: Some(if i % 2 == 0 { red } else { blue }),
                title: Some(if i % 2 == 0 { "red cotton shirt" } else { "blue leather shoe" }),
                description: None,
                label: lakecat_core::taxonomy::split_path(if i % 2 == 0 {
                    "Apparel > Shirts"
                } else {
                    "Footwear > Shoes"
                }),
            })
            .collect()
    }

    #[test]
    fn counts_every_row_it_cannot_use() {
        let ids: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
        let (red, blue) = (solid([220, 20, 20]), solid([20, 20, 220]));
        let mut data = examples(&ids, &red, &blue);
        data[0].image = Some(b"not an image");
        data[1].image = Some(&red[..20]);
        data.push(Example {
            id: Some("lonely"),
            image: None,
            title: Some("a hat"),
            description: None,
            label: vec!["Apparel".into(), "Hats".into()],
        });
        data.push(Example {
            id: Some("unlabelled"),
            image: None,
            title: Some("?"),
            description: None,
            label: Vec::new(),
        });
        data.push(Example {
            id: None,
            image: None,
            title: Some("no id"),
            description: None,
            label: vec!["Apparel".into(), "Shirts".into()],
        });
        let taxonomy = Taxonomy::from_paths(
            "shop",
            [["Apparel", "Shirts"], ["Apparel", "Hats"], ["Footwear", "Shoes"]].map(|p| p.map(String::from).to_vec()),
        )
        .unwrap();
        data.push(Example {
            id: Some("alien"),
            image: None,
            title: Some("x"),
            description: None,
            label: vec!["Toys".into(), "Robots".into()],
        });

        let dir = tempfile::tempdir().unwrap();
        let report =
            FusionTrainer::new("unit").with_settings(quick()).with_taxonomy(taxonomy).fit(&data, dir.path()).unwrap();
        assert_eq!(report.skipped["no label"], 1);
        assert_eq!(report.skipped["no product id (the split needs one)"], 1);
        assert_eq!(report.skipped["label not in taxonomy shop (1 distinct, e.g. \"Toys > Robots\" (1))"], 1);
        // The one-example class is merged into its parent, which then has too few rows of its own.
        assert_eq!(report.skipped["category under the minimum count, dropped by pruning"], 1);
        assert_eq!(report.image_failures.values().sum::<usize>(), 2, "{:?}", report.image_failures);
        assert_eq!(report.train_rows + report.validation_rows, 24);
        assert_eq!(report.bundle.classes().len(), 2);
        assert!(report.bundle.manifest().inputs.image.is_some() && report.bundle.manifest().inputs.text.is_some());
    }

    #[test]
    fn a_diverging_run_stops_with_advice() {
        let ids: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
        let (red, blue) = (solid([220, 20, 20]), solid([20, 20, 220]));
        let data = examples(&ids, &red, &blue);
        let settings = TrainingSettings { learning_rate: 1e30, epochs: 6, ..quick() };
        let error = FusionTrainer::new("unit")
            .with_settings(settings)
            .fit(&data, tempfile::tempdir().unwrap().path())
            .unwrap_err();
        assert!(matches!(error, Error::NonFiniteLoss { .. }), "{error}");
        assert!(error.to_string().contains("Lower the learning rate"), "{error}");
    }

    #[test]
    fn refuses_empty_and_unlabelled_data_and_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        let trainer = FusionTrainer::new("unit").with_settings(quick());
        let error = trainer.fit(&[], dir.path()).unwrap_err();
        assert_eq!(error.to_string(), "no training examples: the training table is empty");
        let unlabelled =
            [Example { id: Some("a"), image: None, title: Some("x"), description: None, label: Vec::new() }];
        let error = trainer.fit(&unlabelled, dir.path()).unwrap_err();
        assert!(error.to_string().contains("none of the 1 rows has a label"), "{error}");
        let settings = TrainingSettings { use_images: false, use_text: false, ..quick() };
        let error = FusionTrainer::new("unit").with_settings(settings).fit(&unlabelled, dir.path()).unwrap_err();
        assert!(error.to_string().contains("images, text or both"), "{error}");
        let settings = TrainingSettings { text_char_ngrams: Some(CharNgrams { min: 5, max: 3 }), ..quick() };
        let error = FusionTrainer::new("unit").with_settings(settings).fit(&unlabelled, dir.path()).unwrap_err();
        assert!(error.to_string().contains("1 <= min <= max <= 8, not 5-3"), "{error}");
    }

    #[test]
    fn exports_text_only_and_image_only_models() {
        let ids: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
        let (red, blue) = (solid([220, 20, 20]), solid([20, 20, 220]));
        let data = examples(&ids, &red, &blue);
        for (images, text) in [(false, true), (true, false)] {
            let settings = TrainingSettings { use_images: images, use_text: text, ..quick() };
            let dir = tempfile::tempdir().unwrap();
            let report = FusionTrainer::new("unit").with_settings(settings).fit(&data, dir.path()).unwrap();
            let inputs = &report.bundle.manifest().inputs;
            assert_eq!((inputs.image.is_some(), inputs.text.is_some()), (images, text));
            if let Some(text) = report.bundle.text() {
                // The scoring side rebuilds the same terms: the n-gram range travels in the bundle.
                assert_eq!(text.spec().char_ngrams, TrainingSettings::default().text_char_ngrams);
                assert!(text.spec().vocabulary.iter().any(|term| term == "#<sho"), "{:?}", text.spec().vocabulary);
            }
        }
    }

    #[test]
    fn a_search_keeps_the_best_trial_and_survives_a_diverging_one() {
        use crate::search::{HyperparameterSearch, SearchSpace, SearchStrategy};
        let ids: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
        let (red, blue) = (solid([220, 20, 20]), solid([20, 20, 220]));
        let data = examples(&ids, &red, &blue);
        let space = SearchSpace { learning_rate: vec![1e-2, 1e30], ..SearchSpace::default() };
        let work = tempfile::tempdir().unwrap();
        let bundle = work.path().join("best");
        let report = HyperparameterSearch::new(space)
            .with_strategy(SearchStrategy::Grid)
            .with_max_trials(2)
            .run(&FusionTrainer::new("unit").with_settings(quick()), &data, &work.path().join("trials"), &bundle)
            .unwrap();
        assert_eq!(report.trials.len(), 2);
        assert!(report.trials[1].error.as_deref().is_some_and(|e| e.contains("Lower the learning rate")));
        assert_eq!(report.trials[report.best].learning_rate, 1e-2);
        assert!(report.table().contains("(kept)"));
        let kept = report.best_report.expect("the best trial's report");
        assert_eq!(kept.bundle.dir(), bundle.as_path());
        assert!(lakecat_core::Bundle::load(&bundle).is_ok());
    }
}
