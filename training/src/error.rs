#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lakecat_core::Error),
    #[error("no training examples: {0}")]
    NoExamples(String),
    #[error(
        "the training loss became {value} in epoch {epoch}, batch {batch}: training diverged. \
         Lower the learning rate (now {learning_rate}) or check the inputs for extreme values"
    )]
    NonFiniteLoss { epoch: usize, batch: usize, value: f32, learning_rate: f64 },
    #[error("exporting the trained network to ONNX failed: {0}")]
    Export(String),
    #[error("computing image features: {0}")]
    Features(String),
    #[error("backbone weights: {0}")]
    Weights(String),
    #[error("cannot draw the picture: {0}")]
    Plot(String),
    #[error("invalid training setting: {0}")]
    Setting(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
