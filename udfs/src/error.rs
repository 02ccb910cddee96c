use datafusion::error::DataFusionError;

/// Errors of lakecat's DataFusion functions and scoring engine that stop a query or a model load.
/// Problems with one row never become this type: they go into that row's `error` field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lakecat_core::Error),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("no model named {name:?} is loaded (loaded: {loaded}); load it with `--model {name}=PATH`")]
    UnknownModel { name: String, loaded: String },
    #[error(
        "no model is loaded: start the session with `--model PATH` (a bundle directory written by `lakecat train`)"
    )]
    NoModel,
    #[error(
        "no taxonomy version {version:?} is loaded (loaded: {known}); start the session with `--taxonomies STORE` (a `lakecat taxonomy` store)"
    )]
    UnknownTaxonomy { version: String, known: String },
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for DataFusionError {
    fn from(error: Error) -> Self {
        match error {
            Error::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// The stage at which a row failed; shown as the prefix of the row's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Input,
    /// Refused by policy (outside the allowed locations, over a size limit, not a regular
    /// file): the same input is refused again, so a refresh does not retry it.
    Refused,
    Fetch,
    Decode,
    Text,
    Inference,
}

/// Why one row has no prediction. Rendered as `stage: message` in the `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub stage: Stage,
    pub message: String,
}

impl RowError {
    pub fn new(stage: Stage, message: impl ToString) -> Self {
        Self { stage, message: message.to_string() }
    }
}

impl Stage {
    /// The stage as `error_stage` holds it and `error` starts with it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Refused => "refused",
            Stage::Fetch => "fetch",
            Stage::Decode => "decode",
            Stage::Text => "text",
            Stage::Inference => "inference",
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage.name(), self.message)
    }
}
