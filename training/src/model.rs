//! The burn network: the original pipeline's two-branch classifier (DESIGN.md §4).
//!
//! ```text
//! image [N,3,S,S] → backbone (no top) → Dense(image_dense) → ReLU ─┐
//!                                                                   ├→ concat → Dropout → Dense(classes) = logits
//! text  [N,V]     → Dense(text_dense) → ReLU → Dense(text_dense) → ReLU ─┘
//!                 └→ Dense(classes) (the wide path, when `wide`) ──────────→ + logits
//! ```
//!
//! The backbone is a small CNN trained from scratch ([`TinyCnn`]), or MobileNetV2 or ResNet-50
//! with ImageNet weights, frozen ([`crate::backbones`]). The graph ends in logits: softmax and temperature are
//! applied by the scoring side, which is also what the ONNX exporter can lower. Every operation
//! here is one the burn-onnx 0.22 exporter lowers (Conv, BatchNormalization, Relu, Sub,
//! GlobalAveragePool, Reshape, MatMul, Add, Concat).

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backbones::LayeredBackbone;
use crate::backbones::mobilenet::{self, MobileNetV2};
use crate::backbones::resnet::{self, ResNet50};
use crate::backbones::tiny::TinyCnn;
use crate::linear::LinearSvm;
use crate::{Error, Result};

/// The image branch's backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// A small CNN trained from scratch (seconds per epoch on a laptop; tests and the demo).
    Tiny,
    /// MobileNetV2 with ImageNet weights, frozen: its features are computed once per run.
    #[serde(rename = "mobilenet-v2")]
    #[cfg_attr(feature = "clap", value(name = "mobilenet-v2"))]
    MobileNetV2,
    /// ResNet-50 (the original pipeline's) with user-supplied torchvision weights (torchvision's
    /// resnet50 checkpoint), frozen; heavy on a CPU.
    #[serde(rename = "resnet-50")]
    #[cfg_attr(feature = "clap", value(name = "resnet-50"))]
    ResNet50,
}

impl Backbone {
    /// Pretrained backbones are loaded from weights and frozen; their features can be cached.
    pub fn is_pretrained(self) -> bool {
        self != Self::Tiny
    }

    /// Width of the features it hands to the image branch's dense layer.
    /// Layers a pretrained backbone has (that `trainable_layers` counts from the end); 0 for the
    /// tiny CNN, which trains whole.
    pub fn layers(self) -> usize {
        match self {
            Self::Tiny => 0,
            Self::MobileNetV2 => mobilenet::LAYERS,
            Self::ResNet50 => resnet::LAYERS,
        }
    }

    /// The side of the images it reads unless told otherwise: what the pretrained ones were
    /// trained on, and a size the tiny CNN trains on quickly.
    pub fn default_image_size(self) -> u32 {
        if self.is_pretrained() { 224 } else { 64 }
    }

    pub fn feature_dim(self, tiny_channels: &[usize]) -> usize {
        match self {
            Self::Tiny => tiny_channels.last().copied().unwrap_or(3),
            Self::MobileNetV2 => mobilenet::FEATURES,
            Self::ResNet50 => resnet::FEATURES,
        }
    }
}

/// Shape and regularisation of [`FusionModel`]; the number of classes and the width of the text
/// vector come from the data ([`FusionModelConfig::init`]).
#[derive(Config, Debug)]
pub struct FusionModelConfig {
    #[config(default = "Backbone::MobileNetV2")]
    pub backbone: Backbone,
    /// Pretrained backbone weights in torchvision's format. `lakecat train` fills in the
    /// MobileNetV2 weights that `scripts/setup.sh` installs.
    pub weights: Option<PathBuf>,
    /// Side of the square image the network reads; `None`: [`Backbone::default_image_size`].
    pub image_size: Option<u32>,
    /// Whether the model has an image branch.
    #[config(default = true)]
    pub use_images: bool,
    /// Whether the model has a text branch.
    #[config(default = true)]
    pub use_text: bool,
    /// Output channels of the tiny CNN backbone's stride-2 3×3 convolutions.
    #[config(default = "vec![16, 32, 64]")]
    pub backbone_channels: Vec<usize>,
    /// The last layers of a pretrained backbone that train; the others stay frozen (their output
    /// is computed once per image and cached). 0: the whole backbone is frozen.
    #[config(default = 0)]
    pub trainable_layers: usize,
    /// Width of the dense layer on top of the backbone.
    #[config(default = 1024)]
    pub image_dense: usize,
    /// Width of the text branch's two dense layers.
    #[config(default = 256)]
    pub text_dense: usize,
    /// A linear path from the text terms straight to the logits, added to the fused head's
    /// ("wide & deep"): what a linear text classifier learns, with the deep branches adding to it.
    #[config(default = true)]
    pub wide: bool,
    /// Dropout on the concatenated branches, before the output layer (training only); 0.5 beat
    /// 0.3 by 0.2 points on the fashion data.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Chance that a training sample's image branch, and separately its text (both text paths),
    /// is silenced, so that each modality learns to classify alone instead of the model leaning
    /// on whichever one memorises the training rows first (training only; both branches only).
    #[config(default = 0.0)]
    pub modality_dropout: f64,
}

#[derive(Module, Debug)]
pub struct ImageBranch {
    /// Exactly one of the backbones is present.
    tiny: Option<TinyCnn>,
    mobilenet: Option<MobileNetV2>,
    resnet: Option<ResNet50>,
    /// The last backbone layers that train (pretrained backbones only).
    trainable_layers: usize,
    dense: Linear,
}

#[derive(Module, Debug)]
pub struct TextBranch {
    first: Linear,
    second: Linear,
}

#[derive(Module, Debug)]
pub struct FusionModel {
    image: Option<ImageBranch>,
    text: Option<TextBranch>,
    dropout: Dropout,
    /// Per-sample masks of whole modalities (`FusionModelConfig::modality_dropout`).
    modality_dropout: Dropout,
    head: Linear,
    /// Text terms → logits (`FusionModelConfig::wide`).
    wide: Option<Linear>,
}

impl FusionModelConfig {
    /// The side of the images the network reads.
    pub fn image_size(&self) -> u32 {
        self.image_size.unwrap_or(self.backbone.default_image_size())
    }

    /// Whether images go through a pretrained backbone whose frozen layers run once per image
    /// (their output cached) instead of once per epoch.
    pub fn uses_frozen_backbone(&self) -> bool {
        self.use_images && self.backbone.is_pretrained()
    }

    /// A network with one output per class, reading text vectors of `text_dim` terms (no text
    /// branch when 0 or when the text is not used).
    pub fn init(&self, classes: usize, text_dim: usize, device: &Device) -> FusionModel {
        let image = self.use_images.then(|| {
            let (tiny, mobilenet, resnet) = match self.backbone {
                Backbone::Tiny => (Some(TinyCnn::new(&self.backbone_channels, device)), None, None),
                Backbone::MobileNetV2 => (None, Some(MobileNetV2::new(device)), None),
                Backbone::ResNet50 => (None, None, Some(ResNet50::new(device))),
            };
            let features = self.backbone.feature_dim(&self.backbone_channels);
            ImageBranch {
                tiny,
                mobilenet,
                resnet,
                trainable_layers: self.trainable_layers.min(self.backbone.layers()),
                dense: LinearConfig::new(features, self.image_dense).init(device),
            }
        });
        let has_text = self.use_text && text_dim > 0;
        let text = has_text.then(|| TextBranch {
            first: LinearConfig::new(text_dim, self.text_dense).init(device),
            second: LinearConfig::new(self.text_dense, self.text_dense).init(device),
        });
        let fused =
            if self.use_images { self.image_dense } else { 0 } + if text.is_some() { self.text_dense } else { 0 };
        FusionModel {
            image,
            text,
            dropout: DropoutConfig::new(self.dropout).init(),
            modality_dropout: DropoutConfig::new(self.modality_dropout).init(),
            head: LinearConfig::new(fused.max(1), classes).init(device),
            wide: (has_text && self.wide).then(|| LinearConfig::new(text_dim, classes).init(device)),
        }
    }
}

impl ImageBranch {
    /// The whole backbone: images → pooled features.
    fn backbone(&self, images: Tensor<4>) -> Tensor<2> {
        match (&self.tiny, &self.mobilenet, &self.resnet) {
            (Some(tiny), _, _) => tiny.forward(images),
            (None, Some(mobilenet), _) => mobilenet.forward(images),
            (None, None, Some(resnet)) => resnet.forward(images),
            (None, None, None) => unreachable!("an image branch is built with one backbone"),
        }
    }

    /// The frozen part: images → pooled features when the whole backbone is frozen, else the
    /// output of its frozen layers flattened to `[N, C·H·W]`.
    fn frozen_part(&self, images: Tensor<4>) -> Tensor<2> {
        fn part<B: LayeredBackbone>(backbone: &B, images: Tensor<4>, trainable: usize) -> Tensor<2> {
            let layers = B::layer_channels().len();
            if trainable == 0 {
                return backbone.pool(backbone.layers(images, 0..layers));
            }
            backbone.layers(images, 0..layers - trainable).flatten(1, 3)
        }
        match (&self.mobilenet, &self.resnet) {
            (Some(mobilenet), _) => part(mobilenet, images, self.trainable_layers),
            (None, Some(resnet)) => part(resnet, images, self.trainable_layers),
            (None, None) => self.backbone(images),
        }
    }

    /// The trained part of a pretrained backbone: [`Self::frozen_part`]'s output → pooled features.
    fn trained_part(&self, frozen: Tensor<2>) -> Tensor<2> {
        fn part<B: LayeredBackbone>(backbone: &B, frozen: Tensor<2>, trainable: usize) -> Tensor<2> {
            let channels = B::layer_channels();
            let first = channels.len() - trainable;
            let [batch, width] = frozen.dims();
            let input_channels = first.checked_sub(1).map_or(3, |previous| channels[previous]);
            // Square images give square maps.
            let side = ((width / input_channels) as f64).sqrt().round() as usize;
            let map = frozen.reshape([batch, input_channels, side, side]);
            backbone.pool(backbone.layers(map, first..channels.len()))
        }
        match (self.trainable_layers, &self.mobilenet, &self.resnet) {
            (0, _, _) => frozen,
            (trainable, Some(mobilenet), _) => part(mobilenet, frozen, trainable),
            (trainable, None, Some(resnet)) => part(resnet, frozen, trainable),
            _ => frozen,
        }
    }
}

impl FusionModel {
    /// Logits `[N, classes]`. Each input must be given exactly when the model has that branch.
    pub fn forward(&self, images: Option<Tensor<4>>, text: Option<Tensor<2>>) -> Tensor<2> {
        let features = match (&self.image, images) {
            (Some(branch), Some(images)) => Some(branch.backbone(images)),
            _ => None,
        };
        self.fuse(features, text)
    }

    /// Output `[N, F]` of the backbone's frozen layers (pooled when all are frozen), e.g. to
    /// cache it: [`Self::forward_features`] takes it instead of the images.
    pub fn image_features(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        self.image.as_ref().map(|branch| branch.frozen_part(images))
    }

    /// Logits from [`Self::image_features`] instead of images (the rest of the network as in
    /// `forward`).
    pub fn forward_features(&self, image_features: Option<Tensor<2>>, text: Option<Tensor<2>>) -> Tensor<2> {
        let features = match (&self.image, image_features) {
            (Some(branch), Some(frozen)) => Some(branch.trained_part(frozen)),
            _ => None,
        };
        self.fuse(features, text)
    }

    /// The image branch's dense layer on pooled backbone features, the text branch, the head
    /// plus the wide path.
    fn fuse(&self, image_features: Option<Tensor<2>>, text: Option<Tensor<2>>) -> Tensor<2> {
        let image = match (&self.image, image_features) {
            (Some(branch), Some(features)) => Some(relu(branch.dense.forward(features))),
            _ => None,
        };
        let wide = match (&self.wide, &text) {
            (Some(wide), Some(text)) => Some(wide.forward(text.clone())),
            _ => None,
        };
        let text = match (&self.text, text) {
            (Some(branch), Some(text)) => Some(relu(branch.second.forward(relu(branch.first.forward(text))))),
            _ => None,
        };
        // Dropout would pass these through outside training, but the multiplications by its
        // masks would still be traced into the exported graph (with the traced batch size).
        let (image, text, wide) = match (image, text) {
            (Some(image), Some(text)) if self.modality_dropout.prob > 0.0 && image.is_autodiff() => {
                let mask = || self.modality_dropout.forward(Tensor::ones([image.dims()[0], 1], &image.device()));
                let (image_mask, text_mask) = (mask(), mask());
                let wide = wide.map(|wide| wide * text_mask.clone());
                (Some(image * image_mask), Some(text * text_mask), wide)
            }
            (image, text) => (image, text, wide),
        };
        let mut parts: Vec<Tensor<2>> = image.into_iter().chain(text).collect();
        let logits = match parts.len() {
            // A stacked text-only model: the wide path is the whole network.
            0 => None,
            1 => Some(self.head.forward(self.dropout.forward(parts.remove(0)))),
            _ => Some(self.head.forward(self.dropout.forward(Tensor::cat(parts, 1)))),
        };
        match (logits, wide) {
            (Some(logits), Some(wide)) => logits + wide,
            (Some(logits), None) => logits,
            (None, Some(wide)) => wide,
            (None, None) => unreachable!("a network is built with a branch or the wide path"),
        }
    }

    /// The stacked network ([`crate::stack`]): `text_linear` as the wide path (no deep text
    /// branch), plus `image`'s image branch and head with its logits times `image_weight`;
    /// text only when the weight is 0.
    pub fn stacked(image: Option<FusionModel>, image_weight: f32, text_linear: &LinearSvm, device: &Device) -> Self {
        let wide = Linear {
            weight: Param::from_data(
                TensorData::new(text_linear.weights.clone(), [text_linear.dim, text_linear.classes]),
                device,
            ),
            bias: Some(Param::from_data(TensorData::new(text_linear.bias.clone(), [text_linear.classes]), device)),
        };
        let (image, head, dropout, modality_dropout) =
            match image.filter(|model| image_weight > 0.0 && model.image.is_some()) {
                Some(model) => {
                    let head = Linear {
                        weight: model.head.weight.map(|weight| weight.mul_scalar(image_weight)),
                        bias: model.head.bias.map(|bias| bias.map(|bias| bias.mul_scalar(image_weight))),
                    };
                    (model.image, head, model.dropout, model.modality_dropout)
                }
                None => (
                    None,
                    LinearConfig::new(1, text_linear.classes).init(device),
                    DropoutConfig::new(0.0).init(),
                    DropoutConfig::new(0.0).init(),
                ),
            };
        Self { image, text: None, dropout, modality_dropout, head, wide: Some(wide) }
    }

    /// The parameters of the text layers (the text branch's two layers and
    /// the wide path), which train at their own learning rate
    /// ([`crate::OptimizerConfig::text_learning_rate`]).
    pub fn text_parameters(&self) -> Vec<ParamId> {
        let layers = self.text.iter().flat_map(|branch| [&branch.first, &branch.second]).chain(&self.wide);
        layers
            .flat_map(|layer| std::iter::once(layer.weight.id).chain(layer.bias.as_ref().map(|bias| bias.id)))
            .collect()
    }

    pub fn has_images(&self) -> bool {
        self.image.is_some()
    }

    /// Whether the network reads text: a text branch, or the wide path alone (stacked).
    pub fn has_text(&self) -> bool {
        self.text.is_some() || self.wide.is_some()
    }

    /// Loads torchvision weights into the pretrained backbone and freezes (no gradients) all
    /// but its last `trainable_layers`.
    pub fn load_backbone_weights(&mut self, path: &Path) -> Result<()> {
        let branch = self.image.as_mut().ok_or_else(|| Error::Weights("the model has no image branch".into()))?;
        let trainable = branch.trainable_layers;
        if let Some(mobilenet) = &mut branch.mobilenet {
            mobilenet.load_torchvision(path)?;
            *mobilenet = mobilenet.clone().freeze_first(mobilenet::LAYERS - trainable);
        } else if let Some(resnet) = &mut branch.resnet {
            resnet.load_torchvision(path)?;
            *resnet = resnet.clone().freeze_first(resnet::LAYERS - trainable);
        } else {
            return Err(Error::Weights("the tiny CNN is trained from scratch and takes no weights".into()));
        }
        Ok(())
    }
}

/// A tensor's values as `E`, whatever element type the backend computed them in.
pub(crate) fn values<const D: usize, K: burn::tensor::kind::Basic, E: burn::tensor::Element>(
    tensor: Tensor<D, K>,
) -> Vec<E> {
    tensor.into_data().convert::<E>().try_into_vec::<E>().expect("converted to the requested element type")
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Cached frozen output + trained layers = the whole backbone, wherever the split is.
    #[test]
    fn the_frozen_and_trained_parts_compose_to_the_whole_network() {
        let device = Device::default();
        let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        let text = Tensor::<2>::random([2, 5], Distribution::Default, &device);
        for (backbone, trainable) in
            [(Backbone::MobileNetV2, 0), (Backbone::MobileNetV2, 1), (Backbone::MobileNetV2, 4)]
        {
            let model = FusionModelConfig::new()
                .with_backbone(backbone)
                .with_trainable_layers(trainable)
                .init(3, 5, &device.clone().autodiff())
                .valid();
            let whole = model.forward(Some(images.clone()), Some(text.clone()));
            let frozen = model.image_features(images.clone()).expect("an image branch");
            let expected_width = if trainable == 0 { mobilenet::FEATURES } else { frozen.dims()[1] };
            assert_eq!(frozen.dims(), [2, expected_width]);
            let split = model.forward_features(Some(frozen), Some(text.clone()));
            let diff = (whole - split).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{backbone:?} with {trainable} trainable layers: max diff {diff}");
        }
    }

    #[test]
    fn layer_lists_match_torchvision() {
        assert_eq!(<MobileNetV2 as LayeredBackbone>::layer_channels().len(), mobilenet::LAYERS);
        assert_eq!(<ResNet50 as LayeredBackbone>::layer_channels().len(), resnet::LAYERS);
        assert_eq!(<MobileNetV2 as LayeredBackbone>::layer_channels()[17], 320);
        assert_eq!(<ResNet50 as LayeredBackbone>::layer_channels()[16], resnet::FEATURES);
    }
}
