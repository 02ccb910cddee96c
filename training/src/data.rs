//! Training data: labelled products → trainable classes → encoded inputs → balanced, augmented
//! batches.
//!
//! Inputs are encoded with the scoring code itself ([`ImagePreprocessor`], [`TextVectorizer`]),
//! so a trained model sees exactly what `categorize` will feed it.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Device, Tensor, TensorData};
use lakecat_core::{ImagePreprocessor, ImageSpec, Pruned, Pruner, Taxonomy, TextVectorizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::augment::Augmentation;
use crate::features::{FeatureExtractor, FrozenBackbone, count_failures};
use crate::{Error, Result};
pub use lakecat_core::split::Split;

/// One labelled product.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    /// Product id: decides the train/validation split.
    pub id: Option<&'a str>,
    pub image: Option<&'a [u8]>,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    /// Category path, top level first.
    pub label: Vec<String>,
}

/// Examples mapped to trainable classes, with every row that could not be used counted by reason.
#[derive(Debug)]
pub struct Labelled {
    /// The pruned taxonomy; its leaves are the classes, in this order.
    pub taxonomy: Taxonomy,
    pub classes: Vec<u32>,
    /// Index into the examples and class index, of each usable row.
    pub rows: Vec<(usize, usize)>,
    /// Reason → rows.
    pub skipped: BTreeMap<String, usize>,
    pub pruned: Pruned,
}

/// Maps labels to `taxonomy` (or to a taxonomy built from the labels themselves) and prunes
/// categories under the minimum count with `pruner`, the same code as `lakecat taxonomy prune`.
pub fn label_examples(examples: &[Example<'_>], taxonomy: Option<&Taxonomy>, pruner: &Pruner) -> Result<Labelled> {
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let built;
    let taxonomy = match taxonomy {
        Some(taxonomy) => taxonomy,
        None => {
            built = Taxonomy::from_paths(
                "labels",
                examples.iter().filter(|example| !example.label.is_empty()).map(|example| example.label.clone()),
            )?;
            &built
        }
    };
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    let mut nodes: Vec<Option<u32>> = Vec::with_capacity(examples.len());
    for example in examples {
        let node = if example.label.is_empty() {
            *skipped.entry("no label".into()).or_default() += 1;
            None
        } else {
            let node = taxonomy.find_path(example.label.as_slice());
            if node.is_none() {
                *unknown.entry(example.label.join(" > ")).or_default() += 1;
            }
            node
        };
        nodes.push(node);
    }
    if !unknown.is_empty() {
        let rows: usize = unknown.values().sum();
        let shown: Vec<String> = unknown.iter().take(3).map(|(label, count)| format!("{label:?} ({count})")).collect();
        skipped.insert(
            format!(
                "label not in taxonomy {} ({} distinct, e.g. {})",
                taxonomy.version(),
                unknown.len(),
                shown.join(", ")
            ),
            rows,
        );
    }
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for node in nodes.iter().flatten() {
        *counts.entry(*node).or_default() += 1;
    }
    if counts.is_empty() {
        return Err(Error::NoExamples(format!(
            "none of the {} rows has a label in the taxonomy{}",
            examples.len(),
            describe(&skipped)
        )));
    }
    let pruned = pruner.prune(taxonomy, &counts, &format!("{}-trainable", taxonomy.version()))?;
    let classes = pruned.taxonomy.leaves();
    let class_index: HashMap<u32, usize> = classes.iter().enumerate().map(|(index, &id)| (id, index)).collect();
    let mut rows = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        match pruned.mapping.get(node).copied().flatten().and_then(|leaf| class_index.get(&leaf)) {
            Some(&class) => rows.push((index, class)),
            None => *skipped.entry("category under the minimum count, dropped by pruning".into()).or_default() += 1,
        }
    }
    if classes.len() < 2 {
        return Err(Error::NoExamples(format!(
            "after pruning there {} {} trainable categor{}; a classifier needs at least 2 (lower `min_count`?){}",
            if classes.len() == 1 { "is" } else { "are" },
            classes.len(),
            if classes.len() == 1 { "y" } else { "ies" },
            describe(&skipped)
        )));
    }
    Ok(Labelled { taxonomy: pruned.taxonomy.clone(), classes, rows, skipped, pruned })
}

fn describe(skipped: &BTreeMap<String, usize>) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = skipped.iter().map(|(reason, rows)| format!("{reason}: {rows}")).collect();
    format!(" (skipped: {})", parts.join("; "))
}

/// A text vector kept sparse (term index, value): vocabularies are 10k+ terms wide.
pub type SparseText = Vec<(u32, f32)>;

/// Model inputs of the usable rows, encoded once.
#[derive(Debug)]
pub struct Encoded {
    /// Rows × values per image, NCHW, normalised as the bundle's image spec says; empty without
    /// an image branch. Rows without an image (or whose image failed) are zeros, as in scoring.
    pub images: Vec<f32>,
    pub values_per_image: usize,
    pub image_spec: Option<ImageSpec>,
    /// Rows × `feature_dim` backbone features, when a frozen backbone's features are cached
    /// instead of the images (then `images` is empty).
    pub features: Vec<f32>,
    pub feature_dim: usize,
    /// Rows whose backbone features were found (e.g. in a cache) rather than computed.
    pub features_reused: usize,
    pub text: Vec<SparseText>,
    pub text_dim: usize,
    pub classes: Vec<usize>,
    /// Reason → rows whose image could not be used (kept, trained on text alone).
    pub image_failures: BTreeMap<String, usize>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn image(&self, row: usize) -> &[f32] {
        &self.images[row * self.values_per_image..(row + 1) * self.values_per_image]
    }

    pub fn image_features(&self, row: usize) -> &[f32] {
        &self.features[row * self.feature_dim..(row + 1) * self.feature_dim]
    }
}

/// Encodes `rows` (example index, class) with the scoring side's preprocessing. With a frozen
/// backbone and its extractor, only the backbone features of the images are kept.
pub fn encode(
    examples: &[Example<'_>],
    rows: &[(usize, usize)],
    image_spec: Option<&ImageSpec>,
    vectorizer: Option<&TextVectorizer>,
    frozen: Option<(&dyn FeatureExtractor, &FrozenBackbone)>,
    progress: &dyn Fn(usize),
) -> Result<Encoded> {
    let mut image_failures: BTreeMap<String, usize> = BTreeMap::new();
    let (mut images, mut features, mut feature_dim, mut values_per_image) = (Vec::new(), Vec::new(), 0, 0);
    let mut features_reused = 0;
    let inputs: Vec<Option<&[u8]>> = rows.iter().map(|&(index, _)| examples[index].image).collect();
    match (image_spec, frozen) {
        (Some(_), Some((extractor, backbone))) => {
            let extracted = extractor.extract(backbone, &inputs, progress)?;
            image_failures = count_failures(&extracted.failures);
            features = extracted.values;
            feature_dim = backbone.dim();
            features_reused = extracted.reused;
        }
        (Some(spec), None) => {
            let preprocessor = ImagePreprocessor::new(spec.clone())?;
            values_per_image = spec.values_per_image();
            images = vec![0.0f32; rows.len() * values_per_image];
            for result in preprocessor.preprocess_batch(&inputs, &mut images) {
                if let Err(error) = result {
                    *image_failures.entry(error.to_string()).or_default() += 1;
                }
            }
            progress(rows.len());
        }
        (None, _) => {}
    }
    let text_dim = vectorizer.map_or(0, TextVectorizer::dim);
    let text: Vec<SparseText> = match vectorizer {
        Some(vectorizer) => rows
            .par_iter()
            .map_init(
                || vec![0.0f32; text_dim],
                |dense, &(index, _)| {
                    let example = &examples[index];
                    // Text over the scoring limits is trained on as "no text", as scoring would see it.
                    if vectorizer.encode_into(example.title, example.description, dense).is_err() {
                        return Vec::new();
                    }
                    dense.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, v)| (i as u32, *v)).collect()
                },
            )
            .collect(),
        None => Vec::new(),
    };
    Ok(Encoded {
        images,
        values_per_image,
        image_spec: image_spec.cloned(),
        features,
        feature_dim,
        features_reused,
        text,
        text_dim,
        classes: rows.iter().map(|&(_, class)| class).collect(),
        image_failures,
    })
}

/// One training sample: a real row, or a synthetic product made from one.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Row(usize),
    /// An augmented copy of `row`'s image with a SMOTE text vector: `row`'s text moved `gap` of
    /// the way towards that of `neighbour` (a near row of the same class).
    Synthetic {
        row: usize,
        neighbour: usize,
        gap: f32,
        seed: u64,
    },
}

/// Balances classes to `max_count` samples each: larger classes are sampled down, smaller ones
/// topped up with synthetic samples (none for a class of one row: there is no neighbour to
/// interpolate towards, so it is repeated as is). Deterministic for a seed.
pub fn balance(data: &Encoded, train_rows: &[usize], max_count: usize, neighbours: usize, seed: u64) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &row in train_rows {
        by_class.entry(data.classes[row]).or_default().push(row);
    }
    let mut samples = Vec::new();
    for rows in by_class.values_mut() {
        if rows.len() >= max_count {
            rows.shuffle(&mut rng);
            samples.extend(rows[..max_count].iter().map(|&row| Sample::Row(row)));
            continue;
        }
        samples.extend(rows.iter().map(|&row| Sample::Row(row)));
        let near = nearest_neighbours(&data.text, rows, neighbours);
        for index in 0..max_count - rows.len() {
            let base = index % rows.len();
            let row = rows[base];
            let neighbour = near[base].get(rng.random_range(0..near[base].len().max(1))).copied().unwrap_or(row);
            samples.push(Sample::Synthetic { row, neighbour, gap: rng.random(), seed: rng.random() });
        }
    }
    samples
}

/// For each of `rows`, up to `k` other rows of the list with the most similar text (cosine).
fn nearest_neighbours(text: &[SparseText], rows: &[usize], k: usize) -> Vec<Vec<usize>> {
    if text.is_empty() {
        // No text branch: any other row of the class will do.
        return rows.iter().map(|&row| rows.iter().copied().filter(|&other| other != row).take(k).collect()).collect();
    }
    let norms: Vec<f32> = rows.iter().map(|&row| text[row].iter().map(|(_, v)| v * v).sum::<f32>().sqrt()).collect();
    rows.par_iter()
        .enumerate()
        .map(|(i, &row)| {
            let lookup: HashMap<u32, f32> = text[row].iter().copied().collect();
            let mut scored: Vec<(f32, usize)> = rows
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, &other)| {
                    let dot: f32 = text[other].iter().filter_map(|(t, v)| lookup.get(t).map(|w| v * w)).sum();
                    (dot / (norms[i] * norms[j]).max(1e-12), other)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(k).map(|(_, other)| other).collect()
        })
        .collect()
}

/// Interpolates two sparse vectors: `a + gap · (b − a)`.
fn interpolate(a: &SparseText, b: &SparseText, gap: f32) -> SparseText {
    let mut merged: BTreeMap<u32, f32> = a.iter().map(|&(t, v)| (t, v * (1.0 - gap))).collect();
    for &(t, v) in b {
        *merged.entry(t).or_default() += gap * v;
    }
    merged.into_iter().filter(|(_, v)| *v != 0.0).collect()
}

/// A batch on the training device: images, or their cached backbone features.
#[derive(Debug, Clone)]
pub struct FusionBatch {
    pub images: Option<Tensor<4>>,
    pub image_features: Option<Tensor<2>>,
    pub text: Option<Tensor<2>>,
    pub classes: Vec<usize>,
}

/// Turns samples into tensors, augmenting the images of synthetic samples (or, with cached
/// features, interpolating the features like the text).
#[derive(Debug, Clone)]
pub struct FusionBatcher<'a> {
    data: &'a Encoded,
    augmentation: Augmentation,
}

impl<'a> FusionBatcher<'a> {
    pub fn new(data: &'a Encoded, augmentation: Augmentation) -> Self {
        Self { data, augmentation }
    }
}

// The shape of burn's `Batcher` trait, which burn 0.22 only has behind its `dataset` feature
// (burn-dataset and its dependencies); the trainer needs nothing else from it.
impl FusionBatcher<'_> {
    pub fn batch(&self, samples: Vec<Sample>, device: &Device) -> FusionBatch {
        let n = samples.len();
        let data = self.data;
        let image_features = (data.feature_dim > 0).then(|| {
            let dim = data.feature_dim;
            let mut values = vec![0.0f32; n * dim];
            for (slot, sample) in values.chunks_mut(dim).zip(&samples) {
                match sample {
                    Sample::Row(row) => slot.copy_from_slice(data.image_features(*row)),
                    Sample::Synthetic { row, neighbour, gap, .. } => {
                        let (a, b) = (data.image_features(*row), data.image_features(*neighbour));
                        slot.iter_mut().zip(a.iter().zip(b)).for_each(|(out, (a, b))| *out = a + gap * (b - a));
                    }
                }
            }
            Tensor::<2>::from_data(TensorData::new(values, [n, dim]), device)
        });
        let images = data.image_spec.as_ref().filter(|_| data.feature_dim == 0).map(|spec| {
            let per_image = data.values_per_image;
            let mut values = vec![0.0f32; n * per_image];
            values.par_chunks_mut(per_image).zip(samples.par_iter()).for_each(|(slot, sample)| match sample {
                Sample::Row(row) => slot.copy_from_slice(data.image(*row)),
                Sample::Synthetic { row, seed, .. } => self.augmentation.apply(data.image(*row), spec, *seed, slot),
            });
            Tensor::<4>::from_data(TensorData::new(values, spec.tensor_shape(n)), device)
        });
        let text = (data.text_dim > 0).then(|| {
            let mut values = vec![0.0f32; n * data.text_dim];
            for (slot, sample) in values.chunks_mut(data.text_dim).zip(&samples) {
                let vector = match sample {
                    Sample::Row(row) => data.text[*row].clone(),
                    Sample::Synthetic { row, neighbour, gap, .. } => {
                        interpolate(&data.text[*row], &data.text[*neighbour], *gap)
                    }
                };
                for (term, value) in vector {
                    slot[term as usize] = value;
                }
            }
            Tensor::<2>::from_data(TensorData::new(values, [n, data.text_dim]), device)
        });
        let classes: Vec<usize> = samples
            .iter()
            .map(|sample| match sample {
                Sample::Row(row) | Sample::Synthetic { row, .. } => data.classes[*row],
            })
            .collect();
        FusionBatch { images, image_features, text, classes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_moves_between_vectors() {
        let a = vec![(0, 1.0), (2, 1.0)];
        let b = vec![(1, 1.0), (2, 1.0)];
        assert_eq!(interpolate(&a, &b, 0.25), vec![(0, 0.75), (1, 0.25), (2, 1.0)]);
        assert_eq!(interpolate(&a, &b, 0.0), vec![(0, 1.0), (2, 1.0)]);
    }

    fn encoded(classes: Vec<usize>) -> Encoded {
        let text = classes.iter().map(|&c| vec![(c as u32, 1.0)]).collect();
        Encoded {
            images: Vec::new(),
            values_per_image: 0,
            image_spec: None,
            features: Vec::new(),
            feature_dim: 0,
            features_reused: 0,
            text,
            text_dim: 4,
            classes,
            image_failures: BTreeMap::new(),
        }
    }

    #[test]
    fn balancing_caps_big_classes_and_fills_small_ones() {
        let data = encoded([vec![0; 10], vec![1; 3], vec![2; 1]].concat());
        let rows: Vec<usize> = (0..data.len()).collect();
        let samples = balance(&data, &rows, 5, 3, 7);
        let mut per_class = [0; 3];
        for sample in &samples {
            let (Sample::Row(row) | Sample::Synthetic { row, .. }) = sample;
            per_class[data.classes[*row]] += 1;
        }
        assert_eq!(per_class, [5, 5, 5]);
        assert_eq!(samples.iter().filter(|s| matches!(s, Sample::Synthetic { .. })).count(), 2 + 4);
        assert_eq!(samples, balance(&data, &rows, 5, 3, 7), "seeded");
        // A one-row class has no neighbour: its synthetic samples interpolate with itself.
        assert!(samples.iter().any(|s| matches!(s, Sample::Synthetic { row: 13, neighbour: 13, .. })));
    }
}
