//! ResNet-50 (He et al., 2016), the original pipeline's backbone, without its classifier, laid out
//! as torchvision builds it so that user-supplied torchvision weights load into it (no wheel on
//! PyPI ships them; pass `--weights resnet50-….pth`). Much heavier than MobileNetV2 (4 GMAC per
//! 224² image): meant for a GPU, or for patient CPUs with its features cached.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::LayeredBackbone;
use crate::Result;

/// Width of the backbone's output features.
pub const FEATURES: usize = 2048;

/// (bottleneck width, blocks) of the four stages.
const STAGES: [(usize, usize); 4] = [(64, 3), (128, 4), (256, 6), (512, 3)];

fn conv(input: usize, output: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([input, output], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

#[derive(Module, Debug)]
struct Downsample {
    conv: Conv2d,
    norm: BatchNorm,
}

#[derive(Module, Debug)]
struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let out = self.bn3.forward(self.conv3.forward(out));
        let identity = match &self.downsample {
            Some(down) => down.norm.forward(down.conv.forward(x)),
            None => x,
        };
        relu(out + identity)
    }
}

#[derive(Module, Debug)]
pub struct ResNet50 {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<Bottleneck>,
    layer2: Vec<Bottleneck>,
    layer3: Vec<Bottleneck>,
    layer4: Vec<Bottleneck>,
    pool: AdaptiveAvgPool2d,
}

impl ResNet50 {
    pub fn new(device: &Device) -> Self {
        let mut input = 64;
        let mut stages = STAGES.iter().enumerate().map(|(stage, &(width, blocks))| {
            (0..blocks)
                .map(|block| {
                    // torchvision (v1.5) strides in the 3×3 convolution of a stage's first block.
                    let stride = if block == 0 && stage > 0 { 2 } else { 1 };
                    let output = width * 4;
                    let bottleneck = Bottleneck {
                        conv1: conv(input, width, 1, 1, device),
                        bn1: BatchNormConfig::new(width).init(device),
                        conv2: conv(width, width, 3, stride, device),
                        bn2: BatchNormConfig::new(width).init(device),
                        conv3: conv(width, output, 1, 1, device),
                        bn3: BatchNormConfig::new(output).init(device),
                        downsample: (block == 0).then(|| Downsample {
                            conv: conv(input, output, 1, stride, device),
                            norm: BatchNormConfig::new(output).init(device),
                        }),
                    };
                    input = output;
                    bottleneck
                })
                .collect::<Vec<_>>()
        });
        let (layer1, layer2, layer3, layer4) = (
            stages.next().unwrap_or_default(),
            stages.next().unwrap_or_default(),
            stages.next().unwrap_or_default(),
            stages.next().unwrap_or_default(),
        );
        Self {
            conv1: conv(3, 64, 7, 2, device),
            bn1: BatchNormConfig::new(64).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// `[N, 3, H, W]` ImageNet-normalised images → `[N, 2048]` features.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.pool(self.layers(images, 0..LAYERS))
    }

    fn bottlenecks(&self) -> impl Iterator<Item = &Bottleneck> {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4].into_iter().flatten()
    }

    /// Loads torchvision's `resnet50` weights (its `fc` is ignored).
    pub fn load_torchvision(&mut self, path: &Path) -> Result<()> {
        let rules = [(r"\.downsample\.0\.", ".downsample.conv."), (r"\.downsample\.1\.", ".downsample.norm.")]
            .map(|(from, to)| (from.to_string(), to.to_string()));
        crate::weights::load_torchvision(self, path, "ResNet-50", &rules)
    }
}

/// Layers: the stem (conv, norm, ReLU, max pool), then the 16 bottlenecks in order.
pub const LAYERS: usize = 17;

impl LayeredBackbone for ResNet50 {
    fn layer_channels() -> Vec<usize> {
        let blocks = STAGES.iter().flat_map(|&(width, blocks)| std::iter::repeat_n(width * 4, blocks));
        std::iter::once(64).chain(blocks).collect()
    }

    fn layer(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match index {
            0 => self.maxpool.forward(relu(self.bn1.forward(self.conv1.forward(x)))),
            block => self.bottlenecks().nth(block - 1).expect("a bottleneck index").forward(x),
        }
    }

    fn pool(&self, x: Tensor<4>) -> Tensor<2> {
        let [batch, channels, _, _] = x.dims();
        self.pool.forward(x).reshape([batch, channels])
    }

    fn freeze_first(mut self, count: usize) -> Self {
        if count > 0 {
            self.conv1 = self.conv1.no_grad();
            self.bn1 = self.bn1.no_grad();
        }
        let mut index = 1;
        for stage in [&mut self.layer1, &mut self.layer2, &mut self.layer3, &mut self.layer4] {
            for block in stage.iter_mut() {
                if index < count {
                    *block = block.clone().no_grad();
                }
                index += 1;
            }
        }
        self
    }
}
