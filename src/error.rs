/// Errors of lakecat's jobs and session set-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lakecat_core::Error),
    #[error(transparent)]
    Scoring(#[from] lakecat_udfs::Error),
    #[error(transparent)]
    #[cfg(feature = "train")]
    Training(#[from] lakecat_training::Error),
    #[error("Delta table {location}: {}", crate::storage::redact(&source.to_string()))]
    Delta {
        location: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("{0} is not a Delta table (no _delta_log); create one with `lakecat import`")]
    NotATable(String),
    /// Object storage refused or could not be reached; the message says what to set.
    #[error("{location}: {message}")]
    Storage { location: String, message: String },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Input the user can fix: a missing column, a bad flag combination.
    #[error("{0}")]
    Input(String),
    /// A cluster that refused or could not be reached (the message says what to start).
    #[error("{0}")]
    Cluster(String),
    /// A refresh that could not commit (what it did commit is in the message).
    #[error("refresh failed: {0}")]
    Refresh(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn delta(location: &str, source: deltalake::DeltaTableError) -> Self {
        Self::Delta { location: location.to_string(), source }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io { path: path.to_string(), source }
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(error: Error) -> Self {
        match error {
            Error::DataFusion(inner) => inner,
            other => Self::External(Box::new(other)),
        }
    }
}
