//! Training lakecat models. Every trainer ends in a [`lakecat_core::Bundle`] that
//! `categorize` loads unchanged.
//!
//! - [`baseline`]: a closed-form model (Bernoulli naive Bayes on the text, linear discriminant
//!   analysis on pooled image colours) fitted in one pass: seconds on a laptop, used by the demo
//!   and the tests.

pub mod baseline;
pub mod error;

pub use baseline::{BaselineReport, BaselineTrainer, Example};
pub use error::{Error, Result};
