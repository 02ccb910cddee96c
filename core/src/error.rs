use std::path::PathBuf;

/// Errors of the shared core: loading and validating taxonomies, vectorizers and bundles.
///
/// Per-row problems (an image that does not decode, a description that is too long) are not
/// errors of this type: they are [`crate::ImageError`] / [`crate::TextError`] values that scoring
/// turns into the `error` field of that row.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid JSON for {what}: {source}", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid taxonomy: {0}")]
    Taxonomy(String),
    #[error("invalid text vectorizer: {0}")]
    Vectorizer(String),
    #[error("invalid image preprocessing spec: {0}")]
    ImageSpec(String),
    #[error("model bundle {} is refused: {reason}", bundle.display())]
    Bundle { bundle: PathBuf, reason: String },
    #[error("cannot build the ONNX network: {0}")]
    Network(String),
    #[error("cannot draw the picture: {0}")]
    Plot(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn bundle(bundle: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Bundle { bundle: bundle.into(), reason: reason.into() }
    }
}
