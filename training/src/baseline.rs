//! The closed-form baseline: fitted in one pass over the data, no gradient descent.
//!
//! - Text: Bernoulli naive Bayes over the multi-hot vocabulary. Its log-odds are linear in the
//!   multi-hot vector: `w[t,k] = ln p(t|k) − ln(1 − p(t|k))`,
//!   `b[k] = ln p(k) + Σ_t ln(1 − p(t|k))`, with Laplace smoothing.
//! - Image: the discriminant directions of linear discriminant analysis (shared diagonal
//!   covariance) over the image averaged on a `pool_grid`×`pool_grid` grid per channel,
//!   `w[j,k] = μ[k,j] / σ²[j]`, with pixels normalised by the training set's own channel mean and
//!   std. LDA's `−|μ_k|²/2σ²` bias is left out on purpose: then a missing image (an all-zero
//!   input, the average training image) adds nothing, instead of voting for whichever class
//!   looks most average. The image's share is scaled by one weight chosen on the training rows.
//!
//! Both are one dense layer over [image features, text vector]: exactly the head of
//! [`FusionNet`], so the result is a regular ONNX bundle scored by the same engine as a burn
//! model.

use std::collections::BTreeMap;
use std::path::Path;

use lakecat_core::onnx::{Dense, FusionNet, IMAGE_INPUT, ImageBranch, LOGITS_OUTPUT, TEXT_INPUT};
use lakecat_core::{
    Bundle, BundleBuilder, ImagePreprocessor, ImageSpec, Taxonomy, TextSpec, TextVectorizer, TrainingSource,
};
use rayon::prelude::*;

use crate::{Error, Example, Result};

/// Fits the baseline and writes its bundle.
#[derive(Debug, Clone)]
pub struct BaselineTrainer {
    name: String,
    image_size: u32,
    pool_grid: usize,
    text: TextSpec,
    min_document_count: usize,
    max_terms: usize,
    smoothing: f64,
    use_images: bool,
    use_text: bool,
    training: Option<TrainingSource>,
}

impl Default for BaselineTrainer {
    fn default() -> Self {
        Self {
            name: "baseline".into(),
            image_size: 32,
            pool_grid: 4,
            text: TextSpec::with_defaults(),
            min_document_count: 1,
            max_terms: 20_000,
            smoothing: 1.0,
            use_images: true,
            use_text: true,
            training: None,
        }
    }
}

/// What fitting did: the bundle, and every example it could not use, with the reason.
#[derive(Debug)]
pub struct BaselineReport {
    pub bundle: Bundle,
    pub examples_used: usize,
    /// Reason → number of examples skipped for it.
    pub skipped: BTreeMap<String, usize>,
    /// Examples used whose image failed to decode (their image features are left out).
    pub image_failures: BTreeMap<String, usize>,
    pub training_accuracy: f64,
}

impl BaselineTrainer {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Side of the (square) image the model reads; default 32.
    pub fn with_image_size(mut self, size: u32) -> Self {
        self.image_size = size;
        self
    }

    /// Image features are the channel means on a grid of this many cells per side; default 4.
    pub fn with_pool_grid(mut self, grid: usize) -> Self {
        self.pool_grid = grid;
        self
    }

    pub fn with_text_settings(mut self, spec: TextSpec) -> Self {
        self.text = spec;
        self
    }

    /// Terms must occur in this many products to enter the vocabulary; default 1.
    pub fn with_min_document_count(mut self, count: usize) -> Self {
        self.min_document_count = count;
        self
    }

    pub fn with_max_terms(mut self, terms: usize) -> Self {
        self.max_terms = terms;
        self
    }

    /// Which inputs the model reads (both by default).
    pub fn with_inputs(mut self, images: bool, text: bool) -> Self {
        self.use_images = images;
        self.use_text = text;
        self
    }

    /// Records the training table in the manifest.
    pub fn with_training_source(mut self, source: TrainingSource) -> Self {
        self.training = Some(source);
        self
    }

    /// Fits the baseline in stages: [`leaf_rows`] → text vocabulary → [`PooledImages`] →
    /// [`Head`] (priors, naive Bayes text weights, LDA image directions, the image weight) →
    /// bundle.
    pub fn fit(&self, examples: &[Example<'_>], bundle_dir: impl AsRef<Path>) -> Result<BaselineReport> {
        if !self.use_images && !self.use_text {
            return Err(Error::NoExamples("the model must read images, text or both".into()));
        }
        let rows = leaf_rows(examples)?;
        let vectorizer = self.use_text.then(|| self.fit_vectorizer(&rows.used)).transpose()?;
        let branch = ImageBranch {
            height: self.image_size as usize,
            width: self.image_size as usize,
            convs: Vec::new(),
            pool_grid: self.pool_grid,
        };
        let images = self.use_images.then(|| PooledImages::new(&rows.used, &branch, self.image_size)).transpose()?;
        let mut head = Head::new(&rows, images.as_ref().map_or(0, |_| branch.feature_dim()), vectorizer.as_ref());
        if let Some(vectorizer) = &vectorizer {
            head.fit_text(&rows.used, vectorizer, self.smoothing);
        }
        if let Some(images) = &images {
            head.fit_images(&rows.used, &images.features);
        }
        let no_images;
        let features = match &images {
            Some(images) => &images.features,
            None => {
                no_images = vec![None; rows.used.len()];
                &no_images
            }
        };
        let parts = LogitParts::new(&head, &rows.used, features, vectorizer.as_ref());
        let image_weight = head.scale_images(&parts);
        // The scaled weights compute exactly `text + image_weight · image`.
        let training_accuracy = parts.correct(image_weight) as f64 / rows.used.len() as f64;

        let network = FusionNet {
            image: images.is_some().then_some(branch),
            text_dim: head.text_dim,
            head: Dense {
                inputs: head.image_dim + head.text_dim,
                outputs: head.classes,
                weights: head.weights.iter().map(|&w| w as f32).collect(),
                bias: head.bias.iter().map(|&b| b as f32).collect(),
            },
        };
        let mut builder =
            BundleBuilder::new(&self.name, rows.taxonomy, rows.classes, network.to_onnx()?, LOGITS_OUTPUT)
                .with_hyperparameter(
                    "trainer",
                    "baseline: Bernoulli naive Bayes (text) + LDA directions on pooled colours (image)",
                )
                .with_hyperparameter("image_size", self.image_size)
                .with_hyperparameter("pool_grid", self.pool_grid as u64)
                .with_hyperparameter("smoothing", self.smoothing)
                .with_hyperparameter("image_weight", image_weight)
                .with_hyperparameter("min_document_count", self.min_document_count as u64)
                .with_metric("training_accuracy", training_accuracy)
                .with_metric("examples", rows.used.len() as u64);
        if let Some(vectorizer) = vectorizer {
            builder = builder.with_text_input(TEXT_INPUT, vectorizer.spec().clone());
        }
        let mut image_failures = BTreeMap::new();
        if let Some(images) = images {
            builder = builder.with_image_input(IMAGE_INPUT, images.spec);
            image_failures = images.failures;
        }
        if let Some(training) = &self.training {
            builder = builder.with_training(training.clone());
        }
        let bundle = builder.write(bundle_dir)?;
        Ok(BaselineReport {
            bundle,
            examples_used: rows.used.len(),
            skipped: rows.skipped,
            image_failures,
            training_accuracy,
        })
    }

    /// The vocabulary of the titles and descriptions of `used`.
    fn fit_vectorizer(&self, used: &[(&Example<'_>, usize)]) -> Result<TextVectorizer> {
        let texts: Vec<String> = used
            .iter()
            .map(|(example, _)| format!("{} {}", example.title.unwrap_or(""), example.description.unwrap_or("")))
            .collect();
        Ok(TextVectorizer::fit(
            self.text.clone(),
            texts.iter().map(String::as_str),
            self.min_document_count,
            self.max_terms,
        )?)
    }
}

/// Labelled examples whose label is a leaf of the labels' own taxonomy.
struct LeafRows<'e, 'a> {
    taxonomy: Taxonomy,
    classes: Vec<u32>,
    /// Each example with its class index.
    used: Vec<(&'e Example<'a>, usize)>,
    /// Reason → examples left out.
    skipped: BTreeMap<String, usize>,
}

/// The first stage: the taxonomy the labels form; a label that another label extends is an
/// inner category, not a class.
fn leaf_rows<'e, 'a>(examples: &'e [Example<'a>]) -> Result<LeafRows<'e, 'a>> {
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let labelled: Vec<&Example<'_>> = examples
        .iter()
        .filter(|example| {
            let keep = !example.label.is_empty();
            if !keep {
                *skipped.entry("no label".into()).or_default() += 1;
            }
            keep
        })
        .collect();
    let taxonomy = Taxonomy::from_paths("labels", labelled.iter().map(|example| example.label.clone()))?;
    let classes = taxonomy.leaves();
    let class_index: BTreeMap<u32, usize> = classes.iter().enumerate().map(|(index, &class)| (class, index)).collect();
    let mut used = Vec::new();
    for example in labelled {
        let node = taxonomy
            .find_path(example.label.as_slice())
            .expect("every label is a path of the taxonomy built from the labels");
        match class_index.get(&node) {
            Some(&class) => used.push((example, class)),
            None => *skipped.entry("label is an inner category (another label extends it)".into()).or_default() += 1,
        }
    }
    if used.is_empty() {
        return Err(Error::NoExamples(format!("none of the {} rows has a usable label", examples.len())));
    }
    Ok(LeafRows { taxonomy, classes, used, skipped })
}

/// Images averaged on the branch's grid, normalised with the training set's own channel
/// statistics, so an all-zero input (no image) is the average training image and carries no
/// evidence.
struct PooledImages {
    /// Per example; `None` without a usable image.
    features: Vec<Option<Vec<f32>>>,
    /// The preprocessing that gives those features when scoring (the mean and std found here).
    spec: ImageSpec,
    /// Reason → examples whose image could not be decoded.
    failures: BTreeMap<String, usize>,
}

impl PooledImages {
    fn new(used: &[(&Example<'_>, usize)], branch: &ImageBranch, image_size: u32) -> Result<Self> {
        let raw_spec = ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..ImageSpec::imagenet(image_size) };
        let preprocessor = ImagePreprocessor::new(raw_spec.clone())?;
        let results: Vec<Result<Option<RawImageFeatures>, String>> = used
            .par_iter()
            .map(|(example, _)| {
                let Some(bytes) = example.image else { return Ok(None) };
                let mut tensor = vec![0.0; raw_spec.values_per_image()];
                preprocessor.preprocess_into(bytes, &mut tensor).map_err(|error| error.to_string())?;
                let plane = tensor.len() / 3;
                let squares = [0, 1, 2].map(|c| {
                    tensor[c * plane..(c + 1) * plane].iter().map(|v| f64::from(v * v)).sum::<f64>() / plane as f64
                });
                Ok(Some((grid_means(&tensor, branch.height, branch.width, branch.pool_grid), squares)))
            })
            .collect();
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let raw: Vec<Option<RawImageFeatures>> = results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|reason| {
                    *failures.entry(reason).or_default() += 1;
                    None
                })
            })
            .collect();
        let cells = branch.pool_grid * branch.pool_grid;
        let decoded: Vec<&RawImageFeatures> = raw.iter().flatten().collect();
        let (mut mean, mut std) = ([0.0f32; 3], [1.0f32; 3]);
        if !decoded.is_empty() {
            let n = decoded.len() as f64;
            for c in 0..3 {
                let channel_mean = decoded
                    .iter()
                    .map(|(grid, _)| {
                        grid[c * cells..(c + 1) * cells].iter().map(|v| f64::from(*v)).sum::<f64>() / cells as f64
                    })
                    .sum::<f64>()
                    / n;
                let mean_square = decoded.iter().map(|(_, squares)| squares[c]).sum::<f64>() / n;
                mean[c] = channel_mean as f32;
                std[c] = (mean_square - channel_mean * channel_mean).max(1e-4).sqrt() as f32;
            }
        }
        let features = raw
            .into_iter()
            .map(|features| {
                features.map(|(grid, _)| {
                    grid.iter().enumerate().map(|(j, v)| (v - mean[j / cells]) / std[j / cells]).collect()
                })
            })
            .collect();
        Ok(Self { features, spec: ImageSpec { mean, std, ..raw_spec }, failures })
    }
}

/// The one dense layer: `[inputs, classes]` weights with the image rows first, and a bias that
/// holds the log prior and the naive Bayes absent-term terms.
struct Head {
    classes: usize,
    image_dim: usize,
    text_dim: usize,
    weights: Vec<f64>,
    bias: Vec<f64>,
    class_sizes: Vec<usize>,
}

impl Head {
    /// Zero weights and the log prior of each class as its bias.
    fn new(rows: &LeafRows<'_, '_>, image_dim: usize, vectorizer: Option<&TextVectorizer>) -> Self {
        let classes = rows.classes.len();
        let text_dim = vectorizer.map_or(0, TextVectorizer::dim);
        let mut class_sizes = vec![0usize; classes];
        for (_, class) in &rows.used {
            class_sizes[*class] += 1;
        }
        let bias = class_sizes.iter().map(|&size| (size as f64 / rows.used.len() as f64).ln()).collect();
        Self { classes, image_dim, text_dim, weights: vec![0.0; (image_dim + text_dim) * classes], bias, class_sizes }
    }

    /// Bernoulli naive Bayes with Laplace smoothing `alpha`: the log-odds of each term per class.
    fn fit_text(&mut self, used: &[(&Example<'_>, usize)], vectorizer: &TextVectorizer, alpha: f64) {
        let (classes, image_dim, text_dim) = (self.classes, self.image_dim, self.text_dim);
        let mut term_counts = vec![0usize; text_dim * classes];
        let mut vector = vec![0.0; text_dim];
        for (example, class) in used {
            // Training text longer than the scoring limit is a data problem scoring would also
            // report; here it simply contributes nothing.
            if vectorizer.encode_into(example.title, example.description, &mut vector).is_ok() {
                for (term, value) in vector.iter().enumerate() {
                    if *value > 0.0 {
                        term_counts[term * classes + class] += 1;
                    }
                }
            }
        }
        for term in 0..text_dim {
            for class in 0..classes {
                let n = self.class_sizes[class] as f64;
                let p = (term_counts[term * classes + class] as f64 + alpha) / (n + 2.0 * alpha);
                self.weights[(image_dim + term) * classes + class] = p.ln() - (1.0 - p).ln();
                self.bias[class] += (1.0 - p).ln();
            }
        }
    }

    /// LDA with a shared diagonal covariance: `w[j,k] = μ[k,j] / σ²[j]` over the examples with
    /// an image.
    fn fit_images(&mut self, used: &[(&Example<'_>, usize)], images: &[Option<Vec<f32>>]) {
        let (classes, image_dim) = (self.classes, self.image_dim);
        let mut sums = vec![0.0f64; image_dim * classes];
        let mut counts = vec![0usize; classes];
        for ((_, class), features) in used.iter().zip(images) {
            if let Some(features) = features {
                counts[*class] += 1;
                for (j, value) in features.iter().enumerate() {
                    sums[j * classes + class] += f64::from(*value);
                }
            }
        }
        let means: Vec<f64> = sums
            .iter()
            .enumerate()
            .map(|(index, sum)| {
                let count = counts[index % classes];
                if count > 0 { sum / count as f64 } else { 0.0 }
            })
            .collect();
        let mut variance = vec![0.0f64; image_dim];
        let mut total = 0usize;
        for ((_, class), features) in used.iter().zip(images) {
            if let Some(features) = features {
                total += 1;
                for (j, value) in features.iter().enumerate() {
                    let deviation = f64::from(*value) - means[j * classes + class];
                    variance[j] += deviation * deviation;
                }
            }
        }
        for (j, variance) in variance.iter_mut().enumerate() {
            // Pooled within-class variance, floored so a constant feature cannot blow up.
            *variance = (*variance / total.max(1) as f64).max(1e-2);
            for class in (0..classes).filter(|&class| counts[class] > 0) {
                self.weights[j * classes + class] = means[j * classes + class] / *variance;
            }
        }
    }

    /// Naive Bayes treats the pooled colours as independent evidence, which they are not: the
    /// image's share of the logits is scaled by the weight that classifies the training rows
    /// best (one parameter; ties go to the smaller weight). Returns that weight.
    fn scale_images(&mut self, parts: &LogitParts) -> f64 {
        if self.image_dim == 0 {
            return 0.0;
        }
        let image_weight = IMAGE_WEIGHTS
            .iter()
            .copied()
            .map(|weight| (weight, parts.correct(weight)))
            .fold((0.0, 0), |best, candidate| if candidate.1 > best.1 { candidate } else { best })
            .0;
        for value in &mut self.weights[..self.image_dim * self.classes] {
            *value *= image_weight;
        }
        image_weight
    }
}

/// Grid means of an image in [0, 1] pixel values, and the mean square of each channel.
type RawImageFeatures = (Vec<f32>, [f64; 3]);

/// Candidate scales of the image evidence.
const IMAGE_WEIGHTS: [f64; 8] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Per-example text and image logits, kept apart so the image weight can be chosen cheaply.
struct LogitParts {
    text: Vec<Vec<f64>>,
    image: Vec<Vec<f64>>,
    labels: Vec<usize>,
}

impl LogitParts {
    /// The text and image logits of `head` (before the image weight) for each of `used`. A
    /// missing image is a zero input, as in the graph.
    fn new(
        head: &Head,
        used: &[(&Example<'_>, usize)],
        images: &[Option<Vec<f32>>],
        vectorizer: Option<&TextVectorizer>,
    ) -> Self {
        let (classes, image_dim, weights) = (head.classes, head.image_dim, &head.weights);
        let mut parts = Self { text: Vec::new(), image: Vec::new(), labels: Vec::new() };
        let mut vector = vec![0.0; vectorizer.map_or(0, TextVectorizer::dim)];
        for ((example, class), features) in used.iter().zip(images) {
            let mut text = head.bias.clone();
            if let Some(vectorizer) = vectorizer
                && vectorizer.encode_into(example.title, example.description, &mut vector).is_ok()
            {
                for (term, value) in vector.iter().enumerate().filter(|(_, value)| **value != 0.0) {
                    let row = &weights[(image_dim + term) * classes..(image_dim + term + 1) * classes];
                    text.iter_mut().zip(row).for_each(|(logit, w)| *logit += f64::from(*value) * w);
                }
            }
            let mut image = vec![0.0; classes];
            for (j, value) in features.iter().flatten().enumerate() {
                let row = &weights[j * classes..(j + 1) * classes];
                image.iter_mut().zip(row).for_each(|(logit, w)| *logit += f64::from(*value) * w);
            }
            parts.text.push(text);
            parts.image.push(image);
            parts.labels.push(*class);
        }
        parts
    }

    /// Number of examples whose arg-max of `text + weight · image` is their label.
    fn correct(&self, weight: f64) -> usize {
        self.text
            .iter()
            .zip(&self.image)
            .zip(&self.labels)
            .filter(|((text, image), label)| {
                let logits = text.iter().zip(image.iter()).map(|(t, i)| t + weight * i);
                let best = logits
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (k, logit)| if logit > best.1 { (k, logit) } else { best });
                best.0 == **label
            })
            .count()
    }
}

/// Channel means of an NCHW image on a `grid`×`grid` grid: what the graph's AveragePool computes.
fn grid_means(tensor: &[f32], height: usize, width: usize, grid: usize) -> Vec<f32> {
    let (cell_h, cell_w) = (height / grid, width / grid);
    let mut features = Vec::with_capacity(3 * grid * grid);
    for plane in tensor.chunks_exact(height * width) {
        for gy in 0..grid {
            for gx in 0..grid {
                let mut sum = 0.0;
                for y in gy * cell_h..(gy + 1) * cell_h {
                    sum += plane[y * width + gx * cell_w..y * width + (gx + 1) * cell_w].iter().sum::<f32>();
                }
                features.push(sum / (cell_h * cell_w) as f32);
            }
        }
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
    use std::io::Cursor;

    fn solid(colour: [u8; 3]) -> Vec<u8> {
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(ImageBuffer::from_pixel(40, 40, Rgb(colour)))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn label(path: &str) -> Vec<String> {
        lakecat_core::taxonomy::split_path(path)
    }

    #[test]
    fn separates_classes_by_text_and_colour() {
        let (red, blue) = (solid([220, 20, 20]), solid([20, 20, 220]));
        let mut examples = Vec::new();
        for i in 0..20 {
            examples.push(Example {
                id: None,
                image: Some(&red),
                title: Some(if i % 2 == 0 { "red shirt" } else { "cotton shirt" }),
                description: None,
                label: label("Apparel > Shirts"),
            });
            examples.push(Example {
                id: None,
                image: Some(&blue),
                title: Some(if i % 2 == 0 { "blue shoe" } else { "leather shoe" }),
                description: None,
                label: label("Footwear > Shoes"),
            });
        }
        examples.push(Example {
            id: None,
            image: Some(b"junk"),
            title: Some("shirt"),
            description: None,
            label: label("Apparel > Shirts"),
        });
        examples.push(Example { id: None, image: None, title: Some("x"), description: None, label: Vec::new() });
        let dir = tempfile::tempdir().unwrap();
        let report = BaselineTrainer::new("unit").fit(&examples, dir.path()).unwrap();
        assert_eq!(report.training_accuracy, 1.0);
        assert_eq!(report.examples_used, 41);
        assert_eq!(report.skipped.get("no label"), Some(&1));
        assert_eq!(report.image_failures.values().sum::<usize>(), 1);
        assert_eq!(report.bundle.classes().len(), 2);
        assert_eq!(
            report.bundle.text().unwrap().spec().vocabulary,
            ["blue", "cotton", "leather", "red", "shirt", "shoe"]
        );
    }

    #[test]
    fn refuses_data_without_labels() {
        let examples = [Example { id: None, image: None, title: Some("x"), description: None, label: Vec::new() }];
        let error = BaselineTrainer::default().fit(&examples, tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(error.to_string().contains("no training examples"), "{error}");
    }

    #[test]
    fn grid_means_average_cells() {
        let tensor: Vec<f32> = (0..3 * 4 * 4).map(|i| (i % 16) as f32).collect();
        let features = grid_means(&tensor, 4, 4, 2);
        assert_eq!(&features[..4], &[2.5, 4.5, 10.5, 12.5]);
    }
}
