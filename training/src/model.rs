//! The burn network: the original pipeline's two-branch classifier (DESIGN.md §4).
//!
//! ```text
//! image [N,3,S,S] → backbone (no top) → Dense(image_dense) → ReLU ─┐
//!                                                                   ├→ concat → Dropout → Dense(classes) = logits
//! text  [N,V]     → Dense(text_dense) → ReLU → Dense(text_dense) → ReLU ─┘
//! ```
//!
//! The backbone is a small CNN trained from scratch ([`TinyCnn`]) or MobileNetV2 with ImageNet
//! weights, frozen ([`crate::mobilenet`]). The graph ends in logits: softmax and temperature are
//! applied by the scoring side, which is also what the ONNX exporter can lower. Every operation
//! here is one the burn-onnx 0.22 exporter lowers (Conv, BatchNormalization, Relu, Sub,
//! GlobalAveragePool, Reshape, MatMul, Add, Concat).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::mobilenet::{self, MobileNetV2};
use crate::resnet::{self, ResNet50};
use crate::{Error, Result};
use std::path::Path;

/// The image branch's backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// A small CNN trained from scratch (seconds per epoch on a laptop; tests and the demo).
    Tiny,
    /// MobileNetV2 with ImageNet weights, frozen: its features are computed once per run.
    #[serde(rename = "mobilenet-v2")]
    MobileNetV2,
    /// ResNet-50 (the original pipeline's) with user-supplied torchvision weights, frozen.
    #[serde(rename = "resnet-50")]
    ResNet50,
}

impl Backbone {
    /// Pretrained backbones are loaded from weights and frozen; their features can be cached.
    pub fn is_pretrained(self) -> bool {
        self != Self::Tiny
    }

    /// Width of the features it hands to the image branch's dense layer.
    pub fn feature_dim(self, tiny_channels: &[usize]) -> usize {
        match self {
            Self::Tiny => tiny_channels.last().copied().unwrap_or(3),
            Self::MobileNetV2 => mobilenet::FEATURES,
            Self::ResNet50 => resnet::FEATURES,
        }
    }
}

/// Shape and regularisation of [`FusionModel`].
#[derive(Config, Debug)]
pub struct FusionModelConfig {
    /// One output per trainable leaf.
    pub classes: usize,
    /// Length of the text vector; 0 for a model without a text branch.
    pub text_dim: usize,
    /// Whether the model has an image branch.
    #[config(default = true)]
    pub use_images: bool,
    #[config(default = "Backbone::Tiny")]
    pub backbone: Backbone,
    /// Output channels of the tiny CNN backbone's stride-2 3×3 convolutions.
    #[config(default = "vec![16, 32, 64]")]
    pub backbone_channels: Vec<usize>,
    /// Width of the dense layer on top of the backbone.
    #[config(default = 1024)]
    pub image_dense: usize,
    /// Width of the text branch's two dense layers.
    #[config(default = 256)]
    pub text_dense: usize,
    /// Dropout before the output layer (training only).
    #[config(default = 0.3)]
    pub dropout: f64,
}

/// A small convolutional backbone without its top: stride-2 3×3 Conv → BatchNorm → ReLU blocks,
/// then global average pooling. Quick enough to train from scratch on a laptop CPU.
#[derive(Module, Debug)]
pub struct TinyCnn {
    blocks: Vec<ConvBlock>,
    pool: AdaptiveAvgPool2d,
}

#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
}

#[derive(Module, Debug)]
pub struct ImageBranch {
    /// Exactly one of the backbones is present.
    tiny: Option<TinyCnn>,
    mobilenet: Option<MobileNetV2>,
    resnet: Option<ResNet50>,
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
    head: Linear,
}

impl FusionModelConfig {
    pub fn init(&self, device: &Device) -> FusionModel {
        let image = self.use_images.then(|| {
            let (tiny, mobilenet, resnet) = match self.backbone {
                Backbone::Tiny => (Some(TinyCnn::new(&self.backbone_channels, device)), None, None),
                Backbone::MobileNetV2 => (None, Some(MobileNetV2::new(device)), None),
                Backbone::ResNet50 => (None, None, Some(ResNet50::new(device))),
            };
            let features = self.backbone.feature_dim(&self.backbone_channels);
            ImageBranch { tiny, mobilenet, resnet, dense: LinearConfig::new(features, self.image_dense).init(device) }
        });
        let text = (self.text_dim > 0).then(|| TextBranch {
            first: LinearConfig::new(self.text_dim, self.text_dense).init(device),
            second: LinearConfig::new(self.text_dense, self.text_dense).init(device),
        });
        let fused =
            if self.use_images { self.image_dense } else { 0 } + if text.is_some() { self.text_dense } else { 0 };
        FusionModel {
            image,
            text,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(fused.max(1), self.classes).init(device),
        }
    }
}

impl TinyCnn {
    fn new(channels: &[usize], device: &Device) -> Self {
        let mut input = 3;
        let blocks = channels
            .iter()
            .map(|&channels| {
                let block = ConvBlock {
                    conv: Conv2dConfig::new([input, channels], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .with_bias(false)
                        .init(device),
                    norm: BatchNormConfig::new(channels).init(device),
                };
                input = channels;
                block
            })
            .collect();
        Self { blocks, pool: AdaptiveAvgPool2dConfig::new([1, 1]).init() }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.blocks.iter().fold(images, |x, block| relu(block.norm.forward(block.conv.forward(x))));
        let [batch, channels, _, _] = features.dims();
        self.pool.forward(features).reshape([batch, channels])
    }
}

impl ImageBranch {
    fn backbone(&self, images: Tensor<4>) -> Tensor<2> {
        match (&self.tiny, &self.mobilenet, &self.resnet) {
            (Some(tiny), _, _) => tiny.forward(images),
            (None, Some(mobilenet), _) => mobilenet.forward(images),
            (None, None, Some(resnet)) => resnet.forward(images),
            (None, None, None) => unreachable!("an image branch is built with one backbone"),
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
        self.forward_features(features, text)
    }

    /// Backbone features `[N, F]` of the images, e.g. to cache those of a frozen backbone.
    pub fn image_features(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        self.image.as_ref().map(|branch| branch.backbone(images))
    }

    /// Logits from backbone features instead of images (the rest of the network as in `forward`).
    pub fn forward_features(&self, image_features: Option<Tensor<2>>, text: Option<Tensor<2>>) -> Tensor<2> {
        let mut parts = Vec::with_capacity(2);
        if let (Some(branch), Some(features)) = (&self.image, image_features) {
            parts.push(relu(branch.dense.forward(features)));
        }
        if let (Some(branch), Some(text)) = (&self.text, text) {
            parts.push(relu(branch.second.forward(relu(branch.first.forward(text)))));
        }
        let fused = if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(parts, 1) };
        self.head.forward(self.dropout.forward(fused))
    }

    pub fn has_images(&self) -> bool {
        self.image.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// Loads torchvision weights into the pretrained backbone and freezes it (no gradients).
    pub fn load_backbone_weights(&mut self, path: &Path) -> Result<()> {
        let branch = self.image.as_mut().ok_or_else(|| Error::Weights("the model has no image branch".into()))?;
        if let Some(mobilenet) = &mut branch.mobilenet {
            mobilenet.load_torchvision(path)?;
            *mobilenet = mobilenet.clone().no_grad();
        } else if let Some(resnet) = &mut branch.resnet {
            resnet.load_torchvision(path)?;
            *resnet = resnet.clone().no_grad();
        } else {
            return Err(Error::Weights("the tiny CNN is trained from scratch and takes no weights".into()));
        }
        Ok(())
    }
}
