//! Image backbones without their top. The pretrained ones ([`mobilenet`], [`resnet`]) are
//! sequences of layers in torchvision's order ([`LayeredBackbone`]), so that the first layers can
//! stay frozen while the last ones train; [`tiny`] is a small CNN trained from scratch.

use burn::tensor::Tensor;

pub mod mobilenet;
pub mod resnet;
pub mod tiny;

/// A pretrained backbone as a sequence of layers in torchvision's order, so that the first
/// ones can stay frozen (their output computed once and cached) while the last ones train.
pub trait LayeredBackbone: Sized {
    /// Output channels of each layer.
    fn layer_channels() -> Vec<usize>;
    fn layer(&self, index: usize, x: Tensor<4>) -> Tensor<4>;
    /// Global average pooling to `[N, channels]`.
    fn pool(&self, x: Tensor<4>) -> Tensor<2>;
    /// Stops gradients in the first `count` layers.
    fn freeze_first(self, count: usize) -> Self;

    fn layers(&self, x: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        range.fold(x, |x, index| self.layer(index, x))
    }
}
