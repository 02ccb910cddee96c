//! Training lakecat models. Every trainer ends in a [`lakecat_core::Bundle`] that
//! `categorize` loads unchanged.
//!
//! - [`trainer`]: the burn [`model::FusionModel`] (image backbone + text branch), trained with
//!   cross-entropy then a hierarchical loss, calibrated, exported to ONNX with burn-onnx.
//! - [`baseline`]: a closed-form model (Bernoulli naive Bayes on the text, linear discriminant
//!   analysis on pooled image colours) fitted in one pass: seconds on a laptop.
//! - [`metrics`]: top-1, hierarchy win, fallback, per-level accuracy, confusion matrix, shared
//!   by training and `lakecat eval`.
//! - [`search`]: grid or random hyperparameter search within a budget; the best bundle is kept.

pub mod augment;
pub mod baseline;
pub mod calibration;
pub mod data;
pub mod error;
pub mod features;
pub mod loss;
pub use lakecat_core::metrics;
pub mod mobilenet;
pub mod model;
pub mod plots;
pub mod resnet;
pub mod search;
pub mod trainer;
pub mod weights;

pub use augment::Augmentation;
pub use baseline::{BaselineReport, BaselineTrainer};
pub use data::{Example, Split};
pub use error::{Error, Result};
pub use features::{BurnFeatures, FeatureExtractor, FrozenBackbone, ImageFeatures};
pub use metrics::{Confusion, Metrics, Scored};
pub use search::{HyperparameterSearch, SearchReport, SearchSpace, SearchStrategy};
pub use trainer::{EpochRecord, FusionTrainer, LearningRateSchedule, TrainingReport, TrainingSettings};
