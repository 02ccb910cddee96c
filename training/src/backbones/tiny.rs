//! A small CNN backbone trained from scratch (tests, the demo, machines without weights).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

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

impl TinyCnn {
    pub fn new(channels: &[usize], device: &Device) -> Self {
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

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.blocks.iter().fold(images, |x, block| relu(block.norm.forward(block.conv.forward(x))));
        let [batch, channels, _, _] = features.dims();
        self.pool.forward(features).reshape([batch, channels])
    }
}
