//! Training lakecat models. Every trainer ends in a [`lakecat_core::Bundle`] that
//! `categorize` loads unchanged.
//!
//! - [`config`]: [`TrainingConfig`], the one place a training default is written.
//! - [`trainer`]: the burn [`model::FusionModel`] (image backbone + text branch) trained in
//!   stages ([`prepare()`](prepare::prepare) → [`encode`](prepare::encode) → [`fit()`](fit::fit) →
//!   [`calibrate`](fit::calibrate) → [`export_bundle`](export::export_bundle)), exported to ONNX
//!   with burn-onnx.
//! - [`backbones`]: the tiny CNN, MobileNetV2 and ResNet-50, and the layered-backbone trait the
//!   pretrained ones share.
//! - [`baseline`]: a closed-form model (Bernoulli naive Bayes on the text, linear discriminant
//!   analysis on pooled image colours) fitted in one pass: seconds on a laptop.
//! - [`metrics`]: top-1, hierarchy win, fallback, per-level accuracy, confusion matrix, shared
//!   by training and `lakecat eval`.
//! - [`stack`]: the default fit with text: a linear text SVM ([`linear`]) and the image model
//!   fitted apart, their scores added with a weight picked on held-out training rows, joined
//!   into one network.
//! - [`search`]: grid or random hyperparameter search within a budget; the best bundle is kept.

pub mod augment;
pub mod backbones;
pub mod baseline;
pub mod calibration;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod features;
pub mod fit;
pub mod linear;
pub mod loss;
pub use lakecat_core::metrics;
pub mod model;
pub mod onnx;
pub mod plots;
pub mod prepare;
pub mod search;
pub mod stack;
pub mod trainer;
pub mod weights;

pub use augment::Augmentation;
pub use baseline::{BaselineReport, BaselineTrainer};
pub use config::{DataConfig, LearningRateSchedule, OptimizerConfig, StackingConfig, TextConfig, TrainingConfig};
pub use data::{Example, Split};
pub use error::{Error, Result};
pub use features::{BurnFeatures, FeatureExtractor, FrozenBackbone, ImageFeatures};
pub use fit::EpochRecord;
pub use metrics::{Confusion, Metrics, Scored};
pub use model::{Backbone, FusionModelConfig};
pub use search::{HyperparameterSearch, SearchReport, SearchSpace, SearchStrategy};
pub use stack::Stacking;
pub use trainer::{FusionTrainer, TrainingReport};
