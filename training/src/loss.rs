//! The training objectives.
//!
//! Cross-entropy on the leaves, and the hierarchical loss used in the last epochs:
//!
//! ```text
//! L = −log p(leaf) + λ · Σ_ℓ −log P_ℓ(true ancestor at level ℓ),   P_ℓ(a) = Σ_{leaves k under a} p(k)
//! ```
//!
//! with `p = softmax(logits)` over the trainable leaves and ℓ running over the levels above the
//! true leaf. A wrong guess inside the right branch costs less than one in another branch, which
//! is what the hierarchy win and fallback metrics reward.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use lakecat_core::Taxonomy;

/// For each level above the leaves, which ancestor each class has there (`None`: the class's
/// leaf is at or above that level).
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// `[classes × nodes at level ℓ]` 0/1 matrices, row-major, with their widths.
    levels: Vec<(Vec<f32>, usize)>,
    classes: usize,
}

impl Hierarchy {
    pub fn new(taxonomy: &Taxonomy, classes: &[u32]) -> Self {
        let lineages: Vec<Vec<u32>> = classes.iter().map(|&class| taxonomy.lineage(class)).collect();
        let depth = lineages.iter().map(Vec::len).max().unwrap_or(0);
        let levels = (0..depth.saturating_sub(1))
            .map(|level| {
                let mut nodes: Vec<u32> =
                    lineages.iter().filter(|lineage| lineage.len() > level + 1).map(|lineage| lineage[level]).collect();
                nodes.sort_unstable();
                nodes.dedup();
                let mut matrix = vec![0.0f32; classes.len() * nodes.len()];
                for (class, lineage) in lineages.iter().enumerate() {
                    if lineage.len() > level + 1 {
                        let column = nodes.binary_search(&lineage[level]).expect("every ancestor was collected");
                        matrix[class * nodes.len() + column] = 1.0;
                    }
                }
                (matrix, nodes.len())
            })
            .collect();
        Self { levels, classes: classes.len() }
    }

    pub fn levels(&self) -> usize {
        self.levels.len()
    }
}

/// One-hot targets `[N, classes]`.
pub fn one_hot(classes: &[usize], width: usize, device: &Device) -> Tensor<2> {
    let mut values = vec![0.0f32; classes.len() * width];
    for (row, &class) in classes.iter().enumerate() {
        values[row * width + class] = 1.0;
    }
    Tensor::from_data(TensorData::new(values, [classes.len(), width]), device)
}

/// Mean leaf cross-entropy of `logits` against one-hot `targets`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg().reshape([1])
}

/// The hierarchical loss above, with `weight` = λ.
pub fn hierarchical_loss(logits: Tensor<2>, targets: Tensor<2>, hierarchy: &Hierarchy, weight: f32) -> Tensor<1> {
    let device = logits.device();
    let mut loss = cross_entropy(logits.clone(), targets.clone());
    let probabilities = softmax(logits, 1);
    for (matrix, width) in &hierarchy.levels {
        let membership = Tensor::<2>::from_data(TensorData::new(matrix.clone(), [hierarchy.classes, *width]), &device);
        let ancestor_probabilities = probabilities.clone().matmul(membership.clone()).clamp_min(1e-7);
        let ancestor_targets = targets.clone().matmul(membership);
        let level = (ancestor_probabilities.log() * ancestor_targets).sum_dim(1).mean().neg().reshape([1]);
        loss = loss + level.mul_scalar(weight);
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(tensor: Tensor<1>) -> f32 {
        tensor.into_data().try_to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn a_near_miss_costs_less_than_a_far_one() {
        let taxonomy = Taxonomy::from_paths(
            "t",
            [vec!["A".to_string(), "x".into()], vec!["A".into(), "y".into()], vec!["B".into(), "z".into()]],
        )
        .unwrap();
        let classes = taxonomy.leaves();
        let hierarchy = Hierarchy::new(&taxonomy, &classes);
        assert_eq!(hierarchy.levels(), 1);
        let device = Device::default();
        let truth = one_hot(&[0], 3, &device);
        let near = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 4.0, 0.0], [1, 3]), &device);
        let far = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 4.0], [1, 3]), &device);
        // Plain cross-entropy cannot tell the two mistakes apart; the hierarchical loss can.
        let (ce_near, ce_far) =
            (value(cross_entropy(near.clone(), truth.clone())), value(cross_entropy(far.clone(), truth.clone())));
        assert!((ce_near - ce_far).abs() < 1e-5);
        let h_near = value(hierarchical_loss(near, truth.clone(), &hierarchy, 1.0));
        let h_far = value(hierarchical_loss(far, truth, &hierarchy, 1.0));
        assert!(h_near < h_far, "{h_near} vs {h_far}");
        // The level term of the near miss: −log(p(x) + p(y)).
        let p = [1.0, 4f32.exp(), 1.0].map(|v| v / (2.0 + 4f32.exp()));
        assert!((h_near - ce_near - (-(p[0] + p[1]).ln())).abs() < 1e-4);
    }
}
