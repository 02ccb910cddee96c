//! The scoring engine: one model bundle, one ONNX Runtime session. Rows go in as image bytes and
//! text; probabilities come out, one model batch at a time (the batch size is the engine's own
//! setting, independent of DataFusion's batch size).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lakecat_core::{Bundle, ImagePreprocessor};
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};

use crate::error::{RowError, Stage};
pub use crate::runtime::Device;
use crate::runtime::{OpenedSession, open_session};
use crate::{Error, Result};

/// Builds an [`Engine`] from a bundle directory.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    bundle_dir: PathBuf,
    batch_size: usize,
    device: Device,
    intra_threads: Option<usize>,
}

impl EngineBuilder {
    pub fn new(bundle_dir: impl AsRef<Path>) -> Self {
        Self {
            bundle_dir: bundle_dir.as_ref().to_path_buf(),
            batch_size: 64,
            device: Device::Auto,
            intra_threads: None,
        }
    }

    /// Rows per ONNX Runtime call (default 64).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Threads ONNX Runtime uses inside one operator (default: its own choice, all cores).
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = Some(threads);
        self
    }

    /// Loads and validates the bundle, opens the session and checks the graph's inputs and
    /// outputs against the bundle, so a mismatched bundle fails here, before any row is scored.
    pub fn build(self) -> Result<Engine> {
        let bundle = Bundle::load(&self.bundle_dir)?;
        let OpenedSession { session, provider, provider_note } =
            open_session(bundle.model_bytes(), self.device, self.intra_threads).map_err(|error| match error {
                Error::Runtime(message) => Error::Runtime(format!("{}: {message}", bundle.model_path().display())),
                other => other,
            })?;
        let images = bundle.image().cloned().map(ImagePreprocessor::new).transpose()?;
        let engine = Engine {
            images,
            session: Mutex::new(session),
            provider,
            provider_note,
            batch_size: self.batch_size,
            bundle,
        };
        engine.check_graph()?;
        Ok(engine)
    }
}

/// A loaded model, ready to score.
#[derive(Debug)]
pub struct Engine {
    bundle: Bundle,
    images: Option<ImagePreprocessor>,
    // ort's `Session::run` takes `&mut self`: ONNX Runtime parallelises inside each call, so
    // partitions take turns at the session rather than each holding a copy of the weights.
    session: Mutex<Session>,
    provider: &'static str,
    provider_note: Option<String>,
    batch_size: usize,
}

/// One row to score. Text fields are already decoded; the image is already fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowInput<'a> {
    pub image: Option<&'a [u8]>,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
}

impl Engine {
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The execution provider that runs the model (`CUDAExecutionProvider` or `CPUExecutionProvider`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Why CUDA is not in use when it was asked for with [`Device::Auto`].
    pub fn provider_note(&self) -> Option<&str> {
        self.provider_note.as_deref()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn classes(&self) -> usize {
        self.bundle.classes().len()
    }

    /// Scores rows in model batches. Each row gets its class probabilities (softmax of the
    /// logits divided by the bundle's temperature) or the reason it has none.
    pub fn score(&self, rows: &[RowInput<'_>]) -> Vec<Result<Vec<f32>, RowError>> {
        let mut results = Vec::with_capacity(rows.len());
        let mut tensors = BatchTensors::default();
        for chunk in rows.chunks(self.batch_size) {
            results.extend(self.score_batch(chunk, &mut tensors));
        }
        results
    }

    fn score_batch(&self, rows: &[RowInput<'_>], tensors: &mut BatchTensors) -> Vec<Result<Vec<f32>, RowError>> {
        let mut row_errors: Vec<Option<RowError>> = vec![None; rows.len()];
        if let Some(vectorizer) = self.bundle.text() {
            let dim = vectorizer.dim();
            // Not zeroed here: each row's slice is overwritten by `encode_into`.
            tensors.text.resize(rows.len() * dim, 0.0);
            for ((row, slot), error) in rows.iter().zip(tensors.text.chunks_mut(dim.max(1))).zip(&mut row_errors) {
                if let Err(text_error) = vectorizer.encode_into(row.title, row.description, &mut slot[..dim]) {
                    *error = Some(RowError::new(Stage::Text, text_error));
                }
            }
        }
        if let Some(preprocessor) = &self.images {
            tensors.image.clear();
            tensors.image.resize(rows.len() * preprocessor.spec().values_per_image(), 0.0);
            let inputs: Vec<Option<&[u8]>> = rows.iter().map(|row| row.image).collect();
            let decoded = preprocessor.preprocess_batch(&inputs, &mut tensors.image);
            for (result, error) in decoded.into_iter().zip(&mut row_errors) {
                if let Err(image_error) = result {
                    error.get_or_insert(RowError::new(Stage::Decode, image_error));
                }
            }
        }
        let probabilities = self.infer(rows.len(), tensors);
        let classes = self.classes();
        row_errors
            .into_iter()
            .enumerate()
            .map(|(row, error)| match (error, &probabilities) {
                (Some(error), _) => Err(error),
                (None, Ok(all)) => Ok(all[row * classes..(row + 1) * classes].to_vec()),
                (None, Err(inference)) => Err(inference.clone()),
            })
            .collect()
    }

    /// One ONNX Runtime call on prepared tensors; returns `rows × classes` probabilities.
    fn infer(&self, rows: usize, tensors: &BatchTensors) -> Result<Vec<f32>, RowError> {
        let inference = |message: String| RowError::new(Stage::Inference, message);
        let manifest = self.bundle.manifest();
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(2);
        if let (Some(name), Some(preprocessor)) = (&manifest.inputs.image, &self.images) {
            let shape = preprocessor.spec().tensor_shape(rows);
            let tensor =
                TensorRef::from_array_view((shape, tensors.image.as_slice())).map_err(|e| inference(e.to_string()))?;
            inputs.push((Cow::Borrowed(name.as_str()), tensor.into()));
        }
        if let (Some(name), Some(vectorizer)) = (&manifest.inputs.text, self.bundle.text()) {
            let tensor = TensorRef::from_array_view(([rows, vectorizer.dim()], tensors.text.as_slice()))
                .map_err(|e| inference(e.to_string()))?;
            inputs.push((Cow::Borrowed(name.as_str()), tensor.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session.run(inputs).map_err(|e| inference(e.to_string()))?;
        let logits = outputs
            .get(&manifest.output)
            .ok_or_else(|| inference(format!("the model produced no output named {:?}", manifest.output)))?;
        let (_, values) = logits.try_extract_tensor::<f32>().map_err(|e| inference(e.to_string()))?;
        let classes = self.classes();
        if values.len() != rows * classes {
            return Err(inference(format!(
                "the model returned {} values for {rows} rows × {classes} classes",
                values.len()
            )));
        }
        let temperature = manifest.temperature.unwrap_or(1.0);
        let mut probabilities = values.to_vec();
        for row in probabilities.chunks_mut(classes) {
            softmax_in_place(row, temperature);
        }
        Ok(probabilities)
    }

    /// Refuses a bundle whose graph does not take the inputs the bundle prepares, or does not
    /// return one logit per class.
    fn check_graph(&self) -> Result<()> {
        let session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let manifest = self.bundle.manifest();
        let refuse = |reason: String| Error::Core(self.bundle.refuse(reason));
        let dims_of = |outlets: &[ort::value::Outlet], name: &str, role: &str| -> Result<Vec<i64>> {
            let names: Vec<&str> = outlets.iter().map(|outlet| outlet.name()).collect();
            let outlet = outlets
                .iter()
                .find(|outlet| outlet.name() == name)
                .ok_or_else(|| refuse(format!("model.onnx has no {role} named {name:?} (it has {names:?})")))?;
            match outlet.dtype() {
                ValueType::Tensor { shape, .. } => Ok(shape.iter().copied().collect()),
                other => Err(refuse(format!("model.onnx {role} {name:?} is not a tensor but {other:?}"))),
            }
        };
        let check = |what: &str, actual: &[i64], expected: &[usize]| -> Result<()> {
            let fits = actual.len() == expected.len() + 1
                && actual[1..].iter().zip(expected).all(|(&a, &e)| a < 0 || a as usize == e);
            if fits {
                Ok(())
            } else {
                Err(refuse(format!("{what}: model.onnx has shape {actual:?}, the bundle needs [batch, {expected:?}]")))
            }
        };
        if let (Some(name), Some(preprocessor)) = (&manifest.inputs.image, &self.images) {
            let dims = dims_of(session.inputs(), name, "input")?;
            check("image input", &dims, &preprocessor.spec().tensor_shape(1)[1..])?;
        }
        if let (Some(name), Some(vectorizer)) = (&manifest.inputs.text, self.bundle.text()) {
            let dims = dims_of(session.inputs(), name, "input")?;
            if dims.len() == 2 && dims[1] >= 0 && dims[1] as usize != vectorizer.dim() {
                return Err(refuse(format!(
                    "text.json describes {} text inputs (terms and n-gram buckets) but model.onnx's takes {}",
                    vectorizer.dim(),
                    dims[1]
                )));
            }
            check("text input", &dims, &[vectorizer.dim()])?;
        }
        let dims = dims_of(session.outputs(), &manifest.output, "output")?;
        if dims.len() == 2 && dims[1] >= 0 && dims[1] as usize != self.classes() {
            return Err(refuse(format!(
                "model.onnx returns {} logits but the bundle lists {} classes",
                dims[1],
                self.classes()
            )));
        }
        check("output", &dims, &[self.classes()])
    }
}

/// Reusable input buffers, so a long scan does not allocate a tensor per batch.
#[derive(Default)]
struct BatchTensors {
    image: Vec<f32>,
    text: Vec<f32>,
}

fn softmax_in_place(logits: &mut [f32], temperature: f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for value in logits.iter_mut() {
        *value = ((*value - max) / temperature).exp();
        sum += *value;
    }
    for value in logits.iter_mut() {
        *value /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::softmax_in_place;

    #[test]
    fn softmax_with_temperature() {
        let mut row = [1.0, 2.0, 3.0];
        softmax_in_place(&mut row, 1.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[2] - 0.665_240_9).abs() < 1e-6);
        let mut flat = [1.0, 2.0, 3.0];
        softmax_in_place(&mut flat, 1000.0);
        assert!((flat[2] - flat[0]).abs() < 1e-3, "a high temperature flattens the distribution");
    }
}
