//! The middle stages of a training run ([`crate::trainer`]):
//!
//! - [`fit`]: optional balancing to `max_count` per class, then `epochs` of cross-entropy and
//!   `hierarchy_epochs` of the hierarchical loss ([`crate::loss`]) with AdamW, validation
//!   metrics after every epoch;
//! - [`calibrate`]: the confidence temperature fitted on the validation split.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use lakecat_core::Progress;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::augment::Augmentation;
use crate::calibration::{fit_temperature, negative_log_likelihood};
use crate::config::TrainingConfig;
use crate::data::{Encoded, FusionBatch, FusionBatcher, Sample, balance};
use crate::loss::{Hierarchy, cross_entropy, hierarchical_loss, one_hot};
use crate::metrics::{Metrics, Scored, ranked};
use crate::model::{FusionModel, values};
use crate::prepare::{Inputs, Prepared};
use crate::stack::Stacking;
use crate::{Error, Result};

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

/// The trained network and how it got there.
#[derive(Debug)]
pub struct Fitted {
    /// Inference mode.
    pub model: FusionModel,
    /// At least one epoch.
    pub history: Vec<EpochRecord>,
    /// The final model's logits on the validation rows, `[rows, classes]` row-major.
    pub validation_logits: Vec<f32>,
    /// Class index of each validation row.
    pub validation_labels: Vec<usize>,
    pub classes: usize,
    pub samples_per_epoch: usize,
    pub seconds: f64,
    /// What a stacked fit chose ([`crate::stack`]); `None` for one network trained whole.
    pub stacking: Option<Stacking>,
}

impl Fitted {
    /// Metrics of the final model on the validation split (those of the last epoch: the same logits).
    pub fn validation(&self) -> &Metrics {
        &self.history.last().expect("fit runs at least one epoch").validation
    }
}

/// The fitted network with its confidence temperature.
#[derive(Debug)]
pub struct Calibrated {
    pub fitted: Fitted,
    pub temperature: f64,
}

/// Fits the temperature that makes the validation confidences honest probabilities.
pub fn calibrate(fitted: Fitted) -> Calibrated {
    let temperature = fit_temperature(&fitted.validation_logits, fitted.classes, &fitted.validation_labels);
    Calibrated { fitted, temperature }
}

/// Trains a new network on the prepared, encoded rows. Reports batches to `progress` and a
/// line per epoch to its log.
pub fn fit(config: &TrainingConfig, prepared: &Prepared, inputs: &Inputs, progress: &dyn Progress) -> Result<Fitted> {
    let data = &inputs.data;
    let classes = prepared.classes.len();
    let device = Device::default().autodiff();
    device.seed(config.seed);
    let mut model = config.model.init(classes, data.text_dim, &device);
    if let Some(weights) = config.model.weights.as_deref().filter(|_| config.model.uses_frozen_backbone()) {
        // Loaded into the trained network too, for the export; the frozen layers never update.
        model.load_backbone_weights(weights)?;
    }
    let samples = match config.data.max_count {
        Some(max_count) => balance(data, &prepared.train_rows, max_count, config.data.smote_neighbours, config.seed),
        None => prepared.train_rows.iter().map(|&row| Sample::Row(row)).collect(),
    };
    let mut optimizer = config.optimizer.adamw().init();
    let text_parameters = model.text_parameters();
    let hierarchy = Hierarchy::new(&prepared.taxonomy, &prepared.classes);
    let batcher = FusionBatcher::new(data, config.data.augmentation);
    let plain = FusionBatcher::new(data, Augmentation::none());
    let mut rng = StdRng::seed_from_u64(config.seed);
    let epochs = config.total_epochs();
    let total_steps = epochs * samples.len().div_ceil(config.batch_size);
    let validation_labels: Vec<usize> = prepared.validation_rows.iter().map(|&row| data.classes[row]).collect();
    progress.start("training", Some(total_steps as u64));
    let started = Instant::now();
    let (mut history, mut validation_logits, mut step) = (Vec::new(), Vec::new(), 0);
    for epoch in 0..epochs {
        let objective = if epoch < config.epochs { "cross_entropy" } else { "hierarchical" };
        let epoch_started = Instant::now();
        let mut order = samples.clone();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (index, chunk) in order.chunks(config.batch_size).enumerate() {
            let batch = batcher.batch(chunk.to_vec(), &device);
            let classes_of_batch = batch.classes.clone();
            let logits = forward(&model, batch);
            let targets = one_hot(&classes_of_batch, classes, &device);
            let loss = match objective {
                "cross_entropy" => cross_entropy(logits.clone(), targets),
                _ => hierarchical_loss(logits.clone(), targets, &hierarchy, config.hierarchy_weight),
            };
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    epoch: epoch + 1,
                    batch: index + 1,
                    value,
                    learning_rate: config.optimizer.learning_rate,
                });
            }
            loss_sum += f64::from(value) * chunk.len() as f64;
            let predicted = values::<2, _, i64>(logits.argmax(1));
            correct += predicted.iter().zip(&classes_of_batch).filter(|(p, c)| **p as usize == **c).count();
            let mut gradients = loss.backward();
            let text = GradientsParams::from_params(&mut gradients, &model, &text_parameters);
            let rest = GradientsParams::from_grads(gradients, &model);
            model = optimizer.step(config.optimizer.learning_rate_at(step, total_steps), model, rest);
            model = optimizer.step(config.optimizer.text_learning_rate_at(step, total_steps), model, text);
            step += 1;
            progress.advance(1);
        }
        let seconds = epoch_started.elapsed().as_secs_f64();
        validation_logits = predict_logits(&model.valid(), &plain, &prepared.validation_rows, config.batch_size);
        let (validation_loss, validation) = held_out(prepared, data, &validation_logits, &validation_labels);
        let record = EpochRecord {
            epoch: epoch + 1,
            objective,
            train_loss: loss_sum / samples.len() as f64,
            train_top1: correct as f64 / samples.len() as f64,
            validation_loss,
            validation,
            samples_per_second: samples.len() as f64 / seconds.max(1e-9),
        };
        progress.log(&format!(
            "epoch {:>2}/{epochs} {:<13} loss {:.4}  train top-1 {:.3}  validation top-1 {:.3} (level 1 {:.3})  {:.0} samples/s",
            record.epoch,
            objective,
            record.train_loss,
            record.train_top1,
            record.validation.top1,
            record.validation.per_level.first().copied().unwrap_or(0.0),
            record.samples_per_second
        ));
        history.push(record);
    }
    progress.finish();
    Ok(Fitted {
        model: model.valid(),
        history,
        validation_logits,
        validation_labels,
        classes,
        samples_per_epoch: samples.len(),
        seconds: started.elapsed().as_secs_f64(),
        stacking: None,
    })
}

/// Logits of `rows`, `[rows, classes]` row-major, in inference mode.
pub(crate) fn predict_logits(
    model: &FusionModel,
    batcher: &FusionBatcher<'_>,
    rows: &[usize],
    batch_size: usize,
) -> Vec<f32> {
    let device = Device::default();
    let mut logits = Vec::new();
    for chunk in rows.chunks(batch_size) {
        let batch = batcher.batch(chunk.iter().map(|&row| Sample::Row(row)).collect(), &device);
        let output = forward(model, batch);
        logits.extend(values::<2, _, f32>(output));
    }
    logits
}

/// Logits of a batch: from its images, or from their cached backbone features.
fn forward(model: &FusionModel, batch: FusionBatch) -> Tensor<2> {
    match batch.image_features {
        Some(features) => model.forward_features(Some(features), batch.text),
        None => model.forward(batch.images, batch.text),
    }
}

/// Leaf cross-entropy (temperature 1) and metrics of `logits` on `prepared`'s validation rows,
/// whose classes are `labels`: what every [`EpochRecord`] holds out.
pub(crate) fn held_out(prepared: &Prepared, data: &Encoded, logits: &[f32], labels: &[usize]) -> (f64, Metrics) {
    let rows = &prepared.validation_rows;
    let scored: Vec<Scored> = ranked(logits, &prepared.classes)
        .into_iter()
        .zip(rows)
        .map(|(ranked, &row)| Scored { truth: prepared.classes[data.classes[row]], ranked })
        .collect();
    (
        negative_log_likelihood(logits, prepared.classes.len(), labels, 1.0),
        Metrics::compute(&prepared.taxonomy, &scored),
    )
}
