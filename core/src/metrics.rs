//! How good a categorizer is, in the terms the original team reported (DESIGN.md §4):
//!
//! - **top-1**: the predicted leaf is the true leaf;
//! - **hierarchy win**: the predicted leaf shares the true leaf's parent (a near miss counts);
//! - **fallback**: top-1 is right, or the second guess shares the true leaf's parent (what a
//!   reviewer choosing between two suggestions gets);
//! - **per-level accuracy**: the predicted path agrees with the true path down to level *l*;
//! - per-class precision and recall, and the confusion matrix behind them.
//!
//! Used by training (every epoch, on the validation split) and by `lakecat eval` (on a bundle's
//! predictions in SQL), so the two report the same numbers; here, so that eval builds without
//! the training crate.

use std::collections::BTreeMap;

use crate::Taxonomy;
use serde::Serialize;

/// Index of the largest value, the first of equals (NaN above every number, as `total_cmp`
/// orders it); 0 when there are none. Training's top-1 and scoring's `category` both pick by it.
pub fn argmax(values: impl IntoIterator<Item = f32>) -> usize {
    values
        .into_iter()
        .enumerate()
        .max_by(|(a_index, a), (b_index, b)| a.total_cmp(b).then(b_index.cmp(a_index)))
        .map_or(0, |(index, _)| index)
}

/// One scored product: its true category and the model's guesses, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub truth: u32,
    pub ranked: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub id: u32,
    pub path: String,
    pub support: u64,
    pub predicted: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub rows: u64,
    pub top1: f64,
    pub hierarchy_win: f64,
    pub fallback: f64,
    /// Accuracy of the path down to level 1, 2, …
    pub per_level: Vec<f64>,
}

impl Metrics {
    pub fn compute(taxonomy: &Taxonomy, scored: &[Scored]) -> Self {
        let parent = |id: u32| taxonomy.node(id).and_then(|node| node.parent);
        let depth = taxonomy.max_depth();
        let (mut top1, mut win, mut fallback) = (0u64, 0u64, 0u64);
        let mut level_hits = vec![0u64; depth];
        let mut level_rows = vec![0u64; depth];
        for row in scored {
            let first = row.ranked.first().copied();
            let right = first == Some(row.truth);
            let shares_parent =
                |guess: Option<u32>| guess.is_some_and(|g| g == row.truth || parent(g) == parent(row.truth));
            top1 += u64::from(right);
            win += u64::from(shares_parent(first));
            fallback += u64::from(right || shares_parent(row.ranked.get(1).copied()));
            let truth_path = taxonomy.lineage(row.truth);
            let guess_path = first.map(|g| taxonomy.lineage(g)).unwrap_or_default();
            for level in 0..truth_path.len().min(depth) {
                level_rows[level] += 1;
                level_hits[level] += u64::from(guess_path.get(level) == truth_path.get(level));
            }
        }
        let rows = scored.len() as u64;
        let share = |hits: u64, of: u64| if of == 0 { 0.0 } else { hits as f64 / of as f64 };
        Self {
            rows,
            top1: share(top1, rows),
            hierarchy_win: share(win, rows),
            fallback: share(fallback, rows),
            per_level: level_hits.iter().zip(&level_rows).map(|(h, n)| share(*h, *n)).collect(),
        }
    }
}

/// Counts of (true class, predicted class); classes absent from `classes` are counted under
/// "other" so that rows are never lost from the totals.
#[derive(Debug, Clone)]
pub struct Confusion {
    pub classes: Vec<u32>,
    /// `counts[truth][predicted]`, with one extra last row/column for "other".
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    pub fn new(classes: Vec<u32>, scored: &[Scored]) -> Self {
        let index: BTreeMap<u32, usize> = classes.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let other = classes.len();
        let mut counts = vec![vec![0u64; other + 1]; other + 1];
        for row in scored {
            let truth = index.get(&row.truth).copied().unwrap_or(other);
            let predicted = row.ranked.first().and_then(|g| index.get(g)).copied().unwrap_or(other);
            counts[truth][predicted] += 1;
        }
        Self { classes, counts }
    }

    pub fn per_class(&self, taxonomy: &Taxonomy) -> Vec<ClassMetrics> {
        self.classes
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let support: u64 = self.counts[i].iter().sum();
                let predicted: u64 = self.counts.iter().map(|row| row[i]).sum();
                let hits = self.counts[i][i];
                ClassMetrics {
                    id,
                    path: taxonomy.path(id).join(" > "),
                    support,
                    predicted,
                    precision: (predicted > 0).then(|| hits as f64 / predicted as f64),
                    recall: (support > 0).then(|| hits as f64 / support as f64),
                }
            })
            .collect()
    }
}

/// The two best classes of each row of `probabilities` (`[rows, classes.len()]`, row-major).
pub fn ranked(probabilities: &[f32], classes: &[u32]) -> Vec<Vec<u32>> {
    probabilities
        .chunks_exact(classes.len())
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order.into_iter().take(2).map(|i| classes[i]).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax([0.1, 0.7, 0.7, -1.0]), 1);
        assert_eq!(argmax([f32::NEG_INFINITY, -3.0]), 1);
        assert_eq!(argmax([]), 0);
    }

    fn taxonomy() -> Taxonomy {
        Taxonomy::from_paths(
            "t",
            [
                vec!["Apparel".to_string(), "Topwear".into(), "Shirts".into()],
                vec!["Apparel".into(), "Topwear".into(), "Tshirts".into()],
                vec!["Apparel".into(), "Bottomwear".into(), "Jeans".into()],
                vec!["Footwear".into(), "Shoes".into(), "Sneakers".into()],
            ],
        )
        .unwrap()
    }

    fn id(taxonomy: &Taxonomy, path: &str) -> u32 {
        taxonomy.find_path(&crate::taxonomy::split_path(path)).unwrap()
    }

    #[test]
    fn counts_wins_fallbacks_and_levels() {
        let t = taxonomy();
        let shirts = id(&t, "Apparel > Topwear > Shirts");
        let tshirts = id(&t, "Apparel > Topwear > Tshirts");
        let jeans = id(&t, "Apparel > Bottomwear > Jeans");
        let sneakers = id(&t, "Footwear > Shoes > Sneakers");
        let scored = [
            Scored { truth: shirts, ranked: vec![shirts, jeans] },   // right
            Scored { truth: shirts, ranked: vec![tshirts, shirts] }, // sibling: win + fallback
            Scored { truth: shirts, ranked: vec![jeans, tshirts] },  // wrong, 2nd shares parent
            Scored { truth: shirts, ranked: vec![sneakers, jeans] }, // wrong everywhere
        ];
        let metrics = Metrics::compute(&t, &scored);
        assert_eq!(metrics.rows, 4);
        assert_eq!(metrics.top1, 0.25);
        assert_eq!(metrics.hierarchy_win, 0.5);
        assert_eq!(metrics.fallback, 0.75);
        assert_eq!(metrics.per_level, vec![0.75, 0.5, 0.25]);

        let confusion = Confusion::new(vec![shirts, tshirts, jeans], &scored);
        assert_eq!(confusion.counts[0], vec![1, 1, 1, 1], "the sneakers guess is counted as other");
        let per_class = confusion.per_class(&t);
        assert_eq!(per_class[0].recall, Some(0.25));
        assert_eq!(per_class[0].precision, Some(1.0));
        assert_eq!(per_class[2].support, 0);
        assert_eq!(per_class[2].recall, None);
    }

    #[test]
    fn ranks_the_two_most_probable_classes() {
        assert_eq!(ranked(&[0.1, 0.7, 0.2, 0.5, 0.1, 0.4], &[10, 11, 12]), vec![vec![11, 12], vec![10, 12]]);
    }
}
