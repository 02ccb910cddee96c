#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lakecat_core::Error),
    #[error("no training examples: {0}")]
    NoExamples(String),
    #[error("label {label:?} of row {row}: {reason}")]
    Label { row: usize, label: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
