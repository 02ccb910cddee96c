//! The one place a training default is written: [`TrainingConfig`] nests the model, text,
//! data and optimiser configurations (burn's `Config` pattern, as in burn's own examples). The
//! CLI derives its flags' defaults from it, the demo is a named preset of it, and the bundle's
//! manifest records it whole.

use burn::config::Config;
use burn::optim::AdamWConfig;
use lakecat_core::split::Split;
use lakecat_core::{CharNgrams, NgramBuckets, NgramSource, Pruner, RowNorm, SmallCategories, TextEncoding, TextSpec};
use serde::{Deserialize, Serialize};

use crate::augment::Augmentation;
use crate::model::{Backbone, FusionModelConfig};
use crate::{Error, Result};

/// Everything a training run is configured with.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    #[config(default = "FusionModelConfig::new()")]
    pub model: FusionModelConfig,
    #[config(default = "TextConfig::new()")]
    pub text: TextConfig,
    #[config(default = "DataConfig::new()")]
    pub data: DataConfig,
    #[config(default = "OptimizerConfig::new()")]
    pub optimizer: OptimizerConfig,
    /// Epochs of cross-entropy.
    #[config(default = 8)]
    pub epochs: usize,
    /// Epochs of the hierarchical loss after those.
    #[config(default = 2)]
    pub hierarchy_epochs: usize,
    /// Weight of the ancestor levels in the hierarchical loss.
    #[config(default = 1.0)]
    pub hierarchy_weight: f32,
    #[config(default = 64)]
    pub batch_size: usize,
    /// Seed of initialisation, shuffling, balancing and augmentation.
    #[config(default = 42)]
    pub seed: u64,
    /// Train on one thread, so that a run with the same seed and data gives the same weights bit
    /// for bit (with several threads, the order in which partial sums meet varies from run to
    /// run); about twice as slow on 2 cores. Image features from ONNX Runtime are not affected,
    /// and burn's random numbers come from one generator per process: one training at a time.
    #[config(default = false)]
    pub deterministic: bool,
    /// Stacked fusion ([`crate::stack`]), for a model of images and text: a linear text SVM
    /// and the image branch fitted apart, their scores added with a weight picked on held-out
    /// training rows. `None`: both branches and the wide path train together by gradient
    /// descent (`model`'s text layers and `wide` then apply).
    #[config(default = "Some(StackingConfig::new())")]
    pub stacking: Option<StackingConfig>,
}

/// How [`crate::stack`] fits and combines the text SVM and the image model.
#[derive(Config, Debug)]
pub struct StackingConfig {
    /// Costs (liblinear's C) tried for the text SVM; larger fits the training rows closer.
    #[config(default = "vec![0.3, 1.0, 3.0, 10.0]")]
    pub svm_costs: Vec<f64>,
    /// Weights tried for the image model's logits, added to the SVM's scores; 0 leaves the
    /// images out of the bundle. One weight: that weight.
    #[config(default = "vec![0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5]")]
    pub image_weights: Vec<f32>,
    /// Folds of the training split (drawn by `seed`) that cross-validate the SVM's cost; the
    /// first ones also pick the image weight. Both models are then refitted on the whole split.
    #[config(default = 5)]
    pub cv_folds: usize,
    /// The image weight is chosen on as many folds as hold this many rows (all folds of a
    /// smaller split), each scored by an image model fitted on the other folds: one fold of a
    /// ~600-row catalog is too few rows to weigh by (Flipkart: 117 rows, 2 points of level 2),
    /// and one of the fashion data's (1,315 rows) shows a gain of 3 rows, too few to tell from
    /// chance. Each fold costs one more fit of the image model.
    #[config(default = 10_000)]
    pub weighing_rows: usize,
    /// The images enter only if the held-out rows they fix outnumber those they break by more
    /// than chance: a one-sided sign test over the rows where the two differ must give at most
    /// this p-value (1: any net gain). Weights picked from several on a few hundred rows gain a
    /// few rows by luck alone. Not applied to a single candidate weight.
    #[config(default = 0.05)]
    pub image_significance: f64,
}

/// How title + description become the text branch's input.
#[derive(Config, Debug)]
pub struct TextConfig {
    /// Terms must occur in this many training products to enter the vocabulary (1: a word
    /// seen once still counts, as in scikit-learn's default; 1.4 points of level 2 on Flipkart).
    #[config(default = 1)]
    pub min_document_count: usize,
    /// At most this many terms in the vocabulary: words and pairs, and the character n-grams
    /// unless they are hashed into buckets.
    #[config(default = 20_000)]
    pub max_terms: usize,
    /// 1: words; 2: words and pairs of adjacent words ("casual shoes" vs "sports shoes").
    #[config(default = 1)]
    pub ngrams: usize,
    /// Character n-grams of each word as extra terms (unseen spellings and compounds share them
    /// with seen ones; about a point of leaf accuracy on the fashion data); `None`: words only.
    #[config(default = "Some(CharNgrams { min: 3, max: 5 })")]
    pub char_ngrams: Option<CharNgrams>,
    /// Character n-grams hashed into this many buckets (fastText's way: a hash per n-gram
    /// instead of a lookup, and n-grams unseen in training still land in a bucket), after the
    /// vocabulary's words; `None`: the frequent ones enter the vocabulary with the words, within
    /// `max_terms`. Same accuracy on both public data sets, a faster vectorizer
    /// (benches/TRAINING.md, benches/REPORT.md). Ignored without `char_ngrams`.
    #[config(default = "Some(16_384)")]
    pub ngram_buckets: Option<u32>,
    /// Character n-grams of whitespace-separated tokens, punctuation kept ("t-shirt" is not
    /// "shirt"), or of words.
    #[config(default = "NgramSource::Tokens")]
    pub ngram_source: NgramSource,
    /// TF-IDF rows: words and n-grams scaled to unit length apart, or the whole row at once.
    #[config(default = "RowNorm::EachPart")]
    pub row_norm: RowNorm,
    /// How terms weigh: 1 when present, occurrences, or sublinear TF-IDF scaled per row.
    #[config(default = "TextEncoding::TfIdf")]
    pub encoding: TextEncoding,
}

/// Which rows train, as which classes, split how, balanced how.
#[derive(Config, Debug)]
pub struct DataConfig {
    /// Categories with fewer labelled rows are merged into their parent (or dropped).
    #[config(default = 10)]
    pub min_count: u64,
    /// Drop categories under `min_count` instead of merging them into their parent.
    #[config(default = false)]
    pub drop_small_categories: bool,
    /// Train/validation split by hashed product id (recorded so `lakecat eval` can reuse it).
    #[config(default = "Split::default()")]
    pub split: Split,
    /// Classes are balanced to this many training samples each (larger ones sampled down,
    /// smaller ones topped up with augmented images and SMOTE text); `None` keeps the data as is.
    pub max_count: Option<usize>,
    /// Augmentation of the synthetic samples balancing adds.
    #[config(default = "Augmentation::new()")]
    pub augmentation: Augmentation,
    /// Nearest same-class neighbours SMOTE interpolates towards.
    #[config(default = 5)]
    pub smote_neighbours: usize,
}

/// AdamW and its learning-rate schedule.
#[derive(Config, Debug)]
pub struct OptimizerConfig {
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Learning rate of the text layers (the text branch's two layers and
    /// the wide path), on the same schedule. A TF-IDF row has unit length, so under Adam these
    /// weights move the logits about √terms times less per step than multi-hot ones would.
    #[config(default = 1e-2)]
    pub text_learning_rate: f64,
    #[config(default = "LearningRateSchedule::Cosine")]
    pub schedule: LearningRateSchedule,
    /// AdamW weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
}

/// How the learning rate changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

impl OptimizerConfig {
    /// The learning rate of step `step` (from 0) of `total`.
    pub fn learning_rate_at(&self, step: usize, total: usize) -> f64 {
        self.schedule.at(self.learning_rate, step, total)
    }

    /// [`Self::text_learning_rate`] at step `step` (from 0) of `total`.
    pub fn text_learning_rate_at(&self, step: usize, total: usize) -> f64 {
        self.schedule.at(self.text_learning_rate, step, total)
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig::new().with_weight_decay(self.weight_decay)
    }
}

impl TextConfig {
    /// The vectorizer's spec (the vocabulary is fitted on the training split).
    pub fn spec(&self) -> TextSpec {
        TextSpec {
            max_ngram: self.ngrams,
            char_ngrams: self.char_ngrams,
            ngram_buckets: self.ngram_buckets.filter(|_| self.char_ngrams.is_some()).map(NgramBuckets::new),
            ngram_source: self.ngram_source,
            row_norm: self.row_norm,
            encoding: self.encoding,
            ..TextSpec::with_defaults()
        }
    }
}

impl DataConfig {
    /// The pruning `lakecat taxonomy prune` does, with this run's minimum count.
    pub fn pruner(&self) -> Pruner {
        let small = if self.drop_small_categories { SmallCategories::Drop } else { SmallCategories::MergeIntoParent };
        Pruner::new(self.min_count.max(1)).with_small_categories(small)
    }
}

impl TrainingConfig {
    /// `lakecat demo`'s run on the 239-product sample: MobileNetV2 features with a smaller image
    /// head and text branch, categories of 5 rows kept, smaller batches and more epochs. Any
    /// held-out gain lets the images in: 163 training rows are too few for the sign test (6
    /// rows fixed, 2 broken: p 0.15), and the demo is there to show the image path.
    pub fn demo() -> Self {
        let mut config = Self::new()
            .with_batch_size(32)
            .with_epochs(12)
            .with_stacking(Some(StackingConfig::new().with_image_significance(1.0)));
        config.model.image_dense = 256;
        config.model.text_dense = 128;
        config.data.min_count = 5;
        config.optimizer.learning_rate = 2e-3;
        config
    }

    /// Total epochs of the schedule.
    pub fn total_epochs(&self) -> usize {
        self.epochs + self.hierarchy_epochs
    }

    /// Refuses a configuration that cannot train, naming the setting and its valid range.
    pub fn validate(&self) -> Result<()> {
        let refuse = |message: &str| Err(Error::Setting(message.into()));
        let model = &self.model;
        if !model.use_images && !model.use_text {
            return refuse("the model must read images, text or both (`use_images`, `use_text`)");
        }
        if self.batch_size == 0 {
            return refuse("`batch_size` must be at least 1");
        }
        if self.total_epochs() == 0 {
            return refuse("train for at least one epoch (`epochs` + `hierarchy_epochs`)");
        }
        for (rate, name) in
            [(self.optimizer.learning_rate, "learning_rate"), (self.optimizer.text_learning_rate, "text_learning_rate")]
        {
            if !(rate.is_finite() && rate > 0.0) {
                return refuse(&format!("`{name}` must be a positive number"));
            }
        }
        if !(0.0..1.0).contains(&model.dropout) {
            return refuse("`dropout` must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&model.modality_dropout) {
            return refuse("`modality_dropout` must be in [0, 1)");
        }
        if self.data.max_count == Some(0) {
            return refuse("`max_count` must be at least 1");
        }
        if !(0.0..1.0).contains(&self.data.split.validation_fraction) {
            return refuse("`validation_fraction` must be in [0, 1)");
        }
        if model.trainable_layers > model.backbone.layers() {
            return Err(Error::Setting(match model.backbone {
                Backbone::Tiny => {
                    "the tiny CNN always trains whole; `trainable_layers` applies to pretrained backbones".into()
                }
                backbone => format!(
                    "{backbone:?} has {} layers; train at most that many (`trainable_layers`)",
                    backbone.layers()
                ),
            }));
        }
        if !(1..=2).contains(&self.text.ngrams) {
            return refuse("`text_ngrams` must be 1 (words) or 2 (words and word pairs)");
        }
        if let Some(char_ngrams) = self.text.char_ngrams {
            char_ngrams.validate().map_err(|error| Error::Setting(error.to_string()))?;
        }
        if let Some(buckets) = self.text.ngram_buckets {
            NgramBuckets::new(buckets).validate().map_err(|error| Error::Setting(error.to_string()))?;
        }
        if let Some(stacking) = &self.stacking {
            if stacking.svm_costs.is_empty() || stacking.svm_costs.iter().any(|cost| !(cost.is_finite() && *cost > 0.0))
            {
                return refuse("`svm_costs` must list at least one positive number");
            }
            if stacking.image_weights.is_empty()
                || stacking.image_weights.iter().any(|weight| !(weight.is_finite() && *weight >= 0.0))
            {
                return refuse("`image_weights` must list at least one number ≥ 0");
            }
            if stacking.cv_folds < 2 {
                return refuse("`cv_folds` must be at least 2");
            }
            if !(stacking.image_significance > 0.0 && stacking.image_significance <= 1.0) {
                return refuse("`image_significance` must be a p-value above 0 and at most 1");
            }
        }
        if model.use_images && (model.image_size() < 8 || model.backbone_channels.is_empty()) {
            return refuse("images need an `image_size` of at least 8 and at least one of `backbone_channels`");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_schedule_falls_from_the_learning_rate_to_a_hundredth() {
        let at = |step| LearningRateSchedule::Cosine.at(0.01, step, 100);
        assert_eq!(at(0), 0.01);
        assert!((at(50) - 0.00505).abs() < 1e-12);
        assert!((at(100) - 0.0001).abs() < 1e-12);
        assert!((1..100).all(|step| at(step) < at(step - 1)));
        assert_eq!(LearningRateSchedule::Constant.at(0.01, 70, 100), 0.01);
    }

    /// The manifest's record of a run reads back as the same configuration.
    #[test]
    fn a_configuration_round_trips_through_json() {
        let mut config = TrainingConfig::demo();
        config.data.max_count = Some(12);
        config.text.char_ngrams = None;
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["model"]["backbone"], "mobilenet-v2");
        assert_eq!(json["data"]["split"]["validation_fraction"], 0.2);
        let back: TrainingConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }

    #[test]
    fn refuses_configurations_that_cannot_train_naming_the_setting() {
        let refused = |edit: &dyn Fn(&mut TrainingConfig)| {
            let mut config = TrainingConfig::new();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(refused(&|c| c.batch_size = 0).contains("`batch_size`"));
        assert!(refused(&|c| c.model.dropout = 1.0).contains("`dropout` must be in [0, 1)"));
        assert!(refused(&|c| c.model.trainable_layers = 20).contains("MobileNetV2 has 19 layers"));
        assert!(refused(&|c| c.text.char_ngrams = Some(CharNgrams { min: 5, max: 3 })).contains("5-3"));
        assert!(refused(&|c| c.text.ngram_buckets = Some(0)).contains("buckets must number 1 to"));
        assert!(
            refused(&|c| c.stacking = Some(StackingConfig::new().with_svm_costs(vec![0.0]))).contains("`svm_costs`")
        );
        assert!(TrainingConfig::new().validate().is_ok() && TrainingConfig::demo().validate().is_ok());
    }
}
