//! The text-linear model of a stacked fit ([`crate::stack`]): one linear SVM per class
//! (one-vs-rest, squared hinge loss, L2 penalty, a bias), fitted by dual coordinate descent
//! (Hsieh et al., ICML 2008: liblinear's solver, the one behind scikit-learn's `LinearSVC`).
//!
//! On sparse TF-IDF rows a pass costs one multiply-add per stored term and class, so a fit
//! takes seconds where the same linear layer trained by gradient descent on dense batches
//! takes minutes; and each class's problem is solved to a tolerance, in a fixed order, so the
//! result does not depend on threads.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::data::SparseText;

/// A pass over the rows stops the descent once no dual variable's projected gradient is further
/// than this from the others' (liblinear's stopping rule; its default for this solver is 0.1).
const TOLERANCE: f64 = 0.01;
/// Passes over the rows at most, per class.
const MAX_PASSES: usize = 1_000;

/// Weights of one linear SVM per class.
#[derive(Debug, Clone)]
pub struct LinearSvm {
    /// `[dim, classes]` row-major: the layout of a burn `Linear` weight.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub dim: usize,
    pub classes: usize,
}

impl LinearSvm {
    /// Fits one SVM per class on `rows` of `text` (sparse vectors of `dim` terms) with labels
    /// `labels[row]`; `cost` is liblinear's C (larger: a closer fit of the training rows).
    /// Deterministic for a seed, whatever the threads.
    pub fn fit(
        text: &[SparseText],
        labels: &[usize],
        rows: &[usize],
        dim: usize,
        classes: usize,
        cost: f64,
        seed: u64,
    ) -> Self {
        let per_class: Vec<(Vec<f64>, f64)> =
            (0..classes).into_par_iter().map(|class| fit_binary(text, labels, rows, dim, class, cost, seed)).collect();
        let mut weights = vec![0.0f32; dim * classes];
        let mut bias = vec![0.0f32; classes];
        for (class, (w, b)) in per_class.into_iter().enumerate() {
            for (term, value) in w.into_iter().enumerate() {
                weights[term * classes + class] = value as f32;
            }
            bias[class] = b as f32;
        }
        Self { weights, bias, dim, classes }
    }

    /// Scores `[rows, classes]` row-major: `w·x + b` per class.
    pub fn scores(&self, text: &[SparseText], rows: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.classes);
        for &row in rows {
            let start = out.len();
            out.extend_from_slice(&self.bias);
            let scores = &mut out[start..];
            for &(term, value) in &text[row] {
                let weights = &self.weights[term as usize * self.classes..(term as usize + 1) * self.classes];
                for (score, weight) in scores.iter_mut().zip(weights) {
                    *score += value * weight;
                }
            }
        }
        out
    }
}

/// The dual coordinate descent of one class against the rest: `w` and the bias (a constant
/// feature 1, penalised like the others, as in liblinear).
fn fit_binary(
    text: &[SparseText],
    labels: &[usize],
    rows: &[usize],
    dim: usize,
    class: usize,
    cost: f64,
    seed: u64,
) -> (Vec<f64>, f64) {
    // The squared hinge loss adds 1/(2C) to the diagonal of the dual's Hessian and no upper bound.
    let diagonal = 1.0 / (2.0 * cost);
    let sign: Vec<f64> = rows.iter().map(|&row| if labels[row] == class { 1.0 } else { -1.0 }).collect();
    let curvature: Vec<f64> = rows
        .iter()
        .map(|&row| text[row].iter().map(|&(_, value)| f64::from(value).powi(2)).sum::<f64>() + 1.0 + diagonal)
        .collect();
    let (mut w, mut bias) = (vec![0.0f64; dim], 0.0f64);
    let mut alpha = vec![0.0f64; rows.len()];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for _ in 0..MAX_PASSES {
        order.shuffle(&mut rng);
        let (mut highest, mut lowest) = (f64::NEG_INFINITY, f64::INFINITY);
        for &i in &order {
            let x = &text[rows[i]];
            let margin = x.iter().map(|&(term, value)| w[term as usize] * f64::from(value)).sum::<f64>() + bias;
            let gradient = sign[i] * margin - 1.0 + alpha[i] * diagonal;
            let projected = if alpha[i] == 0.0 { gradient.min(0.0) } else { gradient };
            highest = highest.max(projected);
            lowest = lowest.min(projected);
            if projected.abs() > 1e-12 {
                let updated = (alpha[i] - gradient / curvature[i]).max(0.0);
                let step = (updated - alpha[i]) * sign[i];
                alpha[i] = updated;
                for &(term, value) in x {
                    w[term as usize] += step * f64::from(value);
                }
                bias += step;
            }
        }
        if highest - lowest < TOLERANCE {
            break;
        }
    }
    (w, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three classes, each named by its own term, with a shared noise term: the SVM ranks every
    /// training row's class first and its scores separate the classes by a margin.
    #[test]
    fn separates_classes_by_their_terms() {
        let text: Vec<SparseText> = (0..30).map(|row| vec![((row % 3) as u32, 0.8), (3, 0.6)]).collect();
        let labels: Vec<usize> = (0..30).map(|row| row % 3).collect();
        let rows: Vec<usize> = (0..30).collect();
        let svm = LinearSvm::fit(&text, &labels, &rows, 4, 3, 1.0, 7);
        let scores = svm.scores(&text, &rows);
        for (row, scores) in scores.chunks(3).enumerate() {
            let truth = scores[labels[row]];
            for (class, &score) in scores.iter().enumerate() {
                if class != labels[row] {
                    assert!(truth > score + 0.5, "row {row}: {scores:?}");
                }
            }
        }
        assert_eq!(svm.weights.len(), 4 * 3);
        // The same seed gives the same weights.
        assert_eq!(LinearSvm::fit(&text, &labels, &rows, 4, 3, 1.0, 7).weights, svm.weights);
    }
}
