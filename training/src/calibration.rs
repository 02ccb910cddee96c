//! Temperature scaling (Guo et al., 2017): one scalar `T` dividing the logits, chosen to
//! minimise the negative log-likelihood of the validation split. It changes confidences, never
//! the ranking, so accuracy is untouched while `confidence` becomes an honest probability.

/// Mean negative log-likelihood of `labels` under `softmax(logits / temperature)`;
/// `logits` is `[rows, classes]` row-major.
pub fn negative_log_likelihood(logits: &[f32], classes: usize, labels: &[usize], temperature: f64) -> f64 {
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let scaled: Vec<f64> = row.iter().map(|&z| f64::from(z) / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
            log_sum - scaled[label]
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// The temperature in [0.05, 20] with the lowest validation NLL (golden-section search on
/// log T; the NLL is convex in 1/T). 1 when there is nothing to calibrate on.
pub fn fit_temperature(logits: &[f32], classes: usize, labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 1.0;
    }
    let nll = |log_t: f64| negative_log_likelihood(logits, classes, labels, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut low, mut high) = (0.05f64.ln(), 20f64.ln());
    let mut a = high - ratio * (high - low);
    let mut b = low + ratio * (high - low);
    let (mut fa, mut fb) = (nll(a), nll(b));
    for _ in 0..60 {
        if fa < fb {
            high = b;
            b = a;
            fb = fa;
            a = high - ratio * (high - low);
            fa = nll(a);
        } else {
            low = a;
            a = b;
            fa = fb;
            b = low + ratio * (high - low);
            fb = nll(b);
        }
    }
    ((low + high) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overconfident_logits_get_a_temperature_above_one() {
        // Always 10 nats sure, right 70% of the time: the best temperature softens that.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            logits.extend([10.0f32, 0.0]);
            labels.push(usize::from(i % 10 >= 7));
        }
        let t = fit_temperature(&logits, 2, &labels);
        assert!(t > 1.0, "{t}");
        // At the optimum the confidence matches the accuracy: sigmoid(10 / T) = 0.7.
        let confidence = 1.0 / (1.0 + (-10.0 / t).exp());
        assert!((confidence - 0.7).abs() < 1e-3, "{confidence}");
        assert!(negative_log_likelihood(&logits, 2, &labels, t) < negative_log_likelihood(&logits, 2, &labels, 1.0));
    }

    #[test]
    fn nothing_to_calibrate_on_keeps_one() {
        assert_eq!(fit_temperature(&[], 3, &[]), 1.0);
    }
}
