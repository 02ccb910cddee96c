//! Stacked fusion, the default fit of a model with text (benches/TRAINING.md, issue 17):
//!
//! 1. the text SVM's cost ([`LinearSvm`], one per cost in [`StackingConfig::svm_costs`]) is
//!    chosen by [`StackingConfig::cv_folds`]-fold cross-validation on the training split;
//! 2. on the first folds, as many as hold [`StackingConfig::weighing_rows`] rows, each scored by
//!    the image model (the [`FusionModel`] with its image branch only, trained by [`fit`])
//!    fitted on the other folds, the weight `w` whose sum `svm + w · image` ranks the most rows
//!    right is kept (ties: the smaller weight; one candidate: that weight), if the rows it
//!    fixes outnumber those it breaks by more than chance ([`StackingConfig::image_significance`]);
//! 3. both are refitted on the whole training split and joined into one network
//!    ([`FusionModel::stacked`]): the SVM as the wide path, the image head scaled by `w`.
//!
//! A linear text model is what scores best on short titles and on ~600-row catalogs
//! (benches/linear_baseline.py); trained together with the image branch by gradient descent,
//! the network fits the training rows through whichever branch memorises them first. Fitted
//! apart, the image model adds to the text's scores in the proportion held-out rows ask for,
//! and images that do not help get weight 0 (the bundle then reads text only) instead of
//! costing accuracy.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::Device;
use lakecat_core::Progress;
use lakecat_core::metrics::argmax;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::augment::Augmentation;
use crate::calibration::negative_log_likelihood;
use crate::config::{StackingConfig, TrainingConfig};
use crate::data::FusionBatcher;
use crate::fit::{EpochRecord, Fitted, fit, held_out, predict_logits};
use crate::linear::LinearSvm;
use crate::model::FusionModel;
use crate::prepare::{Inputs, Prepared};
use crate::{Error, Result};

/// What the held-out rows chose.
#[derive(Debug, Clone, Serialize)]
pub struct Stacking {
    /// The text SVM's cost (liblinear's C), chosen by cross-validation on the training split.
    pub svm_cost: f64,
    /// Top-1 of the training rows, each scored by the SVM fitted on the other folds.
    pub svm_cv_top1: f64,
    /// Weight of the image model's logits; 0: the bundle reads text only.
    pub image_weight: f32,
    /// Folds that chose the image weight, and the rows they hold.
    pub weighing_folds: usize,
    pub holdout_rows: usize,
    /// Top-1 of the held-out rows (the weighing folds) with the chosen weight, and with the
    /// text SVM alone.
    pub holdout_top1: f64,
    pub holdout_text_only_top1: f64,
    /// The image weight that ranked the most held-out rows right (the chosen one, unless it
    /// failed the sign test), the held-out rows it ranked right that the text SVM alone did
    /// not and the other way round, and the one-sided sign test's p-value of those counts:
    /// how much the choice rests on.
    pub best_image_weight: f32,
    pub images_fixed: usize,
    pub images_broke: usize,
    pub images_p_value: f64,
}

/// Fits the stacked network ([`crate::stack`]) on `prepared`'s training split; its validation
/// metrics are those of the joined network, whose record ends the image model's history.
pub fn fit_stacked(
    config: &TrainingConfig,
    stacking: &StackingConfig,
    prepared: &Prepared,
    inputs: &Inputs,
    progress: &dyn Progress,
) -> Result<Fitted> {
    let started = Instant::now();
    let data = &inputs.data;
    let classes = prepared.classes.len();
    let labels = &data.classes;
    let use_images = config.model.use_images;
    let mut shuffled = prepared.train_rows.clone();
    shuffled.shuffle(&mut StdRng::seed_from_u64(config.seed));
    let folds = stacking.cv_folds;
    if shuffled.len() < 2 * folds {
        return Err(Error::NoExamples(format!(
            "stacking cross-validates the text SVM's cost over {folds} folds of the {} training rows: too few rows; \
             train more rows, lower `cv_folds`, or train without stacking",
            shuffled.len()
        )));
    }
    // Fold `k` holds every `folds`-th shuffled row from the `k`-th on: (held out, the rest).
    let fold_rows: Vec<(Vec<usize>, Vec<usize>)> = (0..folds)
        .map(|k| {
            let (held, rest): (Vec<_>, Vec<_>) = shuffled.iter().enumerate().partition(|(index, _)| index % folds == k);
            (held.into_iter().map(|(_, &row)| row).collect(), rest.into_iter().map(|(_, &row)| row).collect())
        })
        .collect();
    // The first `weighing` folds hold at least `weighing_rows` rows (fold sizes differ by one at most).
    let weighing = (1..=folds)
        .find(|&m| fold_rows[..m].iter().map(|(held, _)| held.len()).sum::<usize>() >= stacking.weighing_rows)
        .unwrap_or(folds);
    let svm =
        |rows: &[usize], cost: f64| LinearSvm::fit(&data.text, labels, rows, data.text_dim, classes, cost, config.seed);
    let truth = |rows: &[usize]| -> Vec<usize> { rows.iter().map(|&row| labels[row]).collect() };

    progress.log(&format!(
        "stacking: choosing the text SVM's cost by {folds}-fold cross-validation on {} training rows",
        shuffled.len()
    ));
    progress.start("text SVMs", Some((stacking.svm_costs.len() * folds) as u64));
    // Per cost, rows ranked right over all folds, and the scores of the weighing folds (one
    // after the other).
    let mut cross_validated = Vec::with_capacity(stacking.svm_costs.len());
    for &cost in &stacking.svm_costs {
        let (mut right, mut weighing_scores) = (0, Vec::new());
        for (k, (held, rest)) in fold_rows.iter().enumerate() {
            let scores = svm(rest, cost).scores(&data.text, held);
            right += correct(&scores, None, 0.0, &truth(held), classes);
            if k < weighing {
                weighing_scores.extend(scores);
            }
            progress.advance(1);
        }
        cross_validated.push((right, weighing_scores));
    }
    progress.finish();
    // The most rows right; ties: the smaller cost (listed first).
    let best = (0..cross_validated.len())
        .fold(0, |best, index| if cross_validated[index].0 > cross_validated[best].0 { index } else { best });
    let cost = stacking.svm_costs[best];
    let cv_top1 = cross_validated[best].0 as f64 / shuffled.len() as f64;

    let holdout: Vec<usize> = fold_rows[..weighing].iter().flat_map(|(held, _)| held.iter().copied()).collect();
    let holdout_labels = truth(&holdout);
    let text_scores = &cross_validated[best].1;
    let image_config = image_only(config);
    let (mut image_weight, mut holdout_correct) = (0.0, correct(text_scores, None, 0.0, &holdout_labels, classes));
    let text_only_correct = holdout_correct;
    let (mut best_image_weight, mut images_fixed_broke, mut images_p_value) = (0.0, (0, 0), 1.0);
    if use_images {
        let mut image_scores = Vec::with_capacity(text_scores.len());
        for (k, (held, rest)) in fold_rows[..weighing].iter().enumerate() {
            progress.log(&format!(
                "stacking: the image model on {} training rows, to weigh it on the other {} (fold {} of {weighing})",
                rest.len(),
                held.len(),
                k + 1
            ));
            let inner = Prepared {
                taxonomy: prepared.taxonomy.clone(),
                classes: prepared.classes.clone(),
                rows: prepared.rows.clone(),
                train_rows: rest.clone(),
                validation_rows: held.clone(),
                skipped: BTreeMap::new(),
            };
            image_scores.extend(fit(&image_config, &inner, inputs, progress)?.validation_logits);
        }
        let text_right = ranked_right(text_scores, None, 0.0, &holdout_labels, classes);
        // (weight, each held-out row ranked right, how many)
        let mut best: Option<(f32, Vec<bool>, usize)> = None;
        for &weight in &stacking.image_weights {
            let right = ranked_right(text_scores, Some(&image_scores), weight, &holdout_labels, classes);
            let count = right.iter().filter(|&&right| right).count();
            // Ties: the smaller weight.
            if best.as_ref().is_none_or(|&(best_weight, _, best_count)| {
                count > best_count || (count == best_count && weight < best_weight)
            }) {
                best = Some((weight, right, count));
            }
        }
        if let Some((weight, right, _)) = best {
            let fixed = right.iter().zip(&text_right).filter(|&(&with, &without)| with && !without).count();
            let broken = right.iter().zip(&text_right).filter(|&(&with, &without)| !with && without).count();
            (best_image_weight, images_fixed_broke, images_p_value) =
                (weight, (fixed, broken), sign_test(fixed, broken));
            let forced = stacking.image_weights.len() == 1;
            if forced || images_p_value <= stacking.image_significance {
                (image_weight, holdout_correct) = (weight, text_only_correct + fixed - broken);
            }
        }
    }
    let chosen = Stacking {
        svm_cost: cost,
        svm_cv_top1: cv_top1,
        image_weight,
        weighing_folds: weighing,
        holdout_rows: holdout.len(),
        holdout_top1: holdout_correct as f64 / holdout.len() as f64,
        holdout_text_only_top1: text_only_correct as f64 / holdout.len() as f64,
        best_image_weight,
        images_fixed: images_fixed_broke.0,
        images_broke: images_fixed_broke.1,
        images_p_value,
    };
    let images = if !use_images {
        String::new()
    } else {
        let counts = format!(
            "at weight {best_image_weight} the images ranked {} rows right that the text ranked wrong, {} wrong it ranked right (sign test p {})",
            chosen.images_fixed,
            chosen.images_broke,
            if chosen.images_p_value < 1e-3 { "< 0.001".into() } else { format!("{:.3}", chosen.images_p_value) }
        );
        match (image_weight > 0.0, best_image_weight > 0.0) {
            (true, _) => format!("; {counts}"),
            (false, true) => format!(
                "; {counts}: p above --image-significance {}, no more than chance would give, so the bundle reads text only",
                stacking.image_significance
            ),
            (false, false) => "; the images did not help, so the bundle reads text only".into(),
        }
    };
    progress.log(&format!(
        "stacking: SVM cost {cost} (cross-validated top-1 {cv_top1:.3}); image weight {image_weight}: \
         top-1 {:.3} of {} held-out rows (text SVM alone {:.3}){images}",
        chosen.holdout_top1, chosen.holdout_rows, chosen.holdout_text_only_top1,
    ));

    progress.start("text SVM on the whole training split", Some(1));
    let text_linear = svm(&prepared.train_rows, cost);
    progress.finish();
    let image = if image_weight > 0.0 {
        progress.log(&format!("stacking: the image model on all {} training rows", prepared.train_rows.len()));
        Some(fit(&image_config, prepared, inputs, progress)?)
    } else {
        None
    };
    let (image_model, mut history, samples_per_epoch) = match image {
        Some(fitted) => (Some(fitted.model), fitted.history, fitted.samples_per_epoch),
        None => (None, Vec::new(), prepared.train_rows.len()),
    };
    let model = FusionModel::stacked(image_model, image_weight, &text_linear, &Device::default());

    // The joined network's own scores, as it will be exported.
    let plain = FusionBatcher::new(data, Augmentation::none());
    let scoring = Instant::now();
    let train_logits = predict_logits(&model, &plain, &prepared.train_rows, config.batch_size);
    let validation_logits = predict_logits(&model, &plain, &prepared.validation_rows, config.batch_size);
    let (train_labels, validation_labels) = (truth(&prepared.train_rows), truth(&prepared.validation_rows));
    let train_correct = correct(&train_logits, None, 0.0, &train_labels, classes);
    let (validation_loss, validation) = held_out(prepared, data, &validation_logits, &validation_labels);
    history.push(EpochRecord {
        epoch: history.len() + 1,
        objective: "stacked",
        train_loss: negative_log_likelihood(&train_logits, classes, &train_labels, 1.0),
        train_top1: train_correct as f64 / train_labels.len() as f64,
        validation_loss,
        validation,
        samples_per_second: (train_labels.len() + validation_labels.len()) as f64
            / scoring.elapsed().as_secs_f64().max(1e-9),
    });
    Ok(Fitted {
        model,
        history,
        validation_logits,
        validation_labels,
        classes,
        samples_per_epoch,
        seconds: started.elapsed().as_secs_f64(),
        stacking: Some(chosen),
    })
}

/// `config` for the image model alone: no text, not stacked.
fn image_only(config: &TrainingConfig) -> TrainingConfig {
    let mut image = config.clone();
    image.model.use_text = false;
    image.stacking = None;
    image
}

/// The one-sided sign test: the chance that `fixed` or more of the `fixed + broke` rows the
/// images changed went their way, if each had gone either way with even odds.
fn sign_test(fixed: usize, broke: usize) -> f64 {
    let rows = fixed + broke;
    // ln P(k) = ln C(rows, k) − rows · ln 2, from P(0) up, in logs so that large counts do not
    // underflow.
    let mut ln_probability = -(rows as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for k in 0..=rows {
        if k >= fixed {
            tail += ln_probability.exp();
        }
        ln_probability += ((rows - k) as f64 / (k + 1) as f64).ln();
    }
    tail.min(1.0)
}

/// Rows of `labels` whose largest `text + weight · image` score (`[rows, classes]` each) is
/// their label's.
fn correct(text: &[f32], image: Option<&[f32]>, weight: f32, labels: &[usize], classes: usize) -> usize {
    ranked_right(text, image, weight, labels, classes).into_iter().filter(|&right| right).count()
}

/// Whether each row's largest `text + weight · image` score is its label's.
fn ranked_right(text: &[f32], image: Option<&[f32]>, weight: f32, labels: &[usize], classes: usize) -> Vec<bool> {
    let image = image.filter(|_| weight > 0.0);
    text.chunks(classes)
        .enumerate()
        .map(|(row, scores)| {
            let sum = |class: usize| scores[class] + image.map_or(0.0, |image| weight * image[row * classes + class]);
            argmax((0..classes).map(sum)) == labels[row]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_test_is_the_binomial_tail_at_even_odds() {
        let close = |p: f64, expected: f64| assert!((p - expected).abs() < 1e-12, "{p} vs {expected}");
        // Flipkart's held-out rows: 4 fixed, 1 broken: (C(5,4) + C(5,5)) / 2⁵.
        close(sign_test(4, 1), 6.0 / 32.0);
        close(sign_test(3, 0), 1.0 / 8.0);
        close(sign_test(5, 5), 638.0 / 1024.0);
        close(sign_test(0, 0), 1.0);
        close(sign_test(0, 7), 1.0);
        // Thousands of rows neither underflow nor lose the tail.
        assert!(sign_test(1100, 900) < 1e-5);
        close(sign_test(1000, 1000), 0.5 + 0.5 * sign_test_point(1000));
    }

    /// P(X = n) for X ~ Binomial(2n, ½), by the product formula.
    fn sign_test_point(n: usize) -> f64 {
        (1..=n).map(|k| (n + k) as f64 / (4.0 * k as f64)).product()
    }
}
