//! Writes small ONNX networks directly (the protobuf messages below are the subset of
//! `onnx.proto` that a feed-forward graph needs). lakecat uses it for networks whose weights are
//! computed rather than trained by burn: the closed-form baseline and the random-weight models of
//! tests and benchmarks. The image → conv stack → pool, text, concat → dense shape is the same
//! one the burn model exports.

use prost::Message;

use crate::{Error, Result};

pub const IMAGE_INPUT: &str = "image";
pub const TEXT_INPUT: &str = "text";
pub const LOGITS_OUTPUT: &str = "logits";
const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
const FLOAT: i32 = 1;

mod proto {
    //! Field numbers as in onnx.proto (ONNX IR version 8).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        #[prost(string, tag = "8")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "DimensionValue", tags = "1, 2")]
        pub value: Option<DimensionValue>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum DimensionValue {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

/// A 3×3, stride-2, padding-1 convolution followed by ReLU.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv3x3 {
    pub in_channels: usize,
    pub out_channels: usize,
    /// `[out, in, 3, 3]`, row-major.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A fully connected layer `y = x · W + b` with `W` stored `[inputs, outputs]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The image side: NCHW RGB input of `height`×`width`, the conv stack, then average pooling to a
/// `pool_grid`×`pool_grid` grid per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBranch {
    pub height: usize,
    pub width: usize,
    pub convs: Vec<Conv3x3>,
    pub pool_grid: usize,
}

impl ImageBranch {
    /// Spatial size after the conv stack (each conv halves it, rounding up).
    pub fn feature_map_size(&self) -> (usize, usize) {
        self.convs.iter().fold((self.height, self.width), |(h, w), _| (h.div_ceil(2), w.div_ceil(2)))
    }

    pub fn channels(&self) -> usize {
        self.convs.last().map_or(3, |conv| conv.out_channels)
    }

    /// Length of the pooled image feature vector.
    pub fn feature_dim(&self) -> usize {
        self.channels() * self.pool_grid * self.pool_grid
    }
}

/// image branch and/or multi-hot text, concatenated, then one dense layer to the class logits.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionNet {
    pub image: Option<ImageBranch>,
    /// Length of the text input; 0 for an image-only network.
    pub text_dim: usize,
    pub head: Dense,
}

impl FusionNet {
    /// A network with seeded random (He-initialised) weights, for tests and benchmarks.
    pub fn random(image: Option<(usize, usize, &[usize], usize)>, text_dim: usize, classes: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let image = image.map(|(height, width, channels, pool_grid)| {
            let mut in_channels = 3;
            let convs = channels
                .iter()
                .map(|&out_channels| {
                    let fan_in = in_channels * 9;
                    let conv = Conv3x3 {
                        in_channels,
                        out_channels,
                        weights: rng.normal_vec(out_channels * fan_in, (2.0 / fan_in as f32).sqrt()),
                        bias: vec![0.0; out_channels],
                    };
                    in_channels = out_channels;
                    conv
                })
                .collect();
            ImageBranch { height, width, convs, pool_grid }
        });
        let inputs = image.as_ref().map_or(0, ImageBranch::feature_dim) + text_dim;
        let head = Dense {
            inputs,
            outputs: classes,
            weights: rng.normal_vec(inputs * classes, (1.0 / inputs.max(1) as f32).sqrt()),
            bias: rng.normal_vec(classes, 0.1),
        };
        Self { image, text_dim, head }
    }

    /// Serializes the network as an ONNX model with a dynamic batch axis. Inputs are
    /// [`IMAGE_INPUT`] `[batch, 3, H, W]` and [`TEXT_INPUT`] `[batch, text_dim]` (each only when
    /// present); the output [`LOGITS_OUTPUT`] is `[batch, classes]`.
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut graph = GraphWriter::default();
        let mut features = Vec::new();
        if let Some(branch) = &self.image {
            graph.input(IMAGE_INPUT, &[3, branch.height, branch.width]);
            let mut current = IMAGE_INPUT.to_string();
            for (index, conv) in branch.convs.iter().enumerate() {
                let w = graph.constant(
                    &format!("conv{index}.weight"),
                    &[conv.out_channels, conv.in_channels, 3, 3],
                    &conv.weights,
                );
                let b = graph.constant(&format!("conv{index}.bias"), &[conv.out_channels], &conv.bias);
                let conv_out = graph.node(
                    "Conv",
                    &[&current, &w, &b],
                    vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])],
                );
                current = graph.node("Relu", &[&conv_out], vec![]);
            }
            let (h, w) = branch.feature_map_size();
            let pooled = if branch.pool_grid == 1 {
                graph.node("GlobalAveragePool", &[&current], vec![])
            } else {
                let kernel = [(h / branch.pool_grid) as i64, (w / branch.pool_grid) as i64];
                graph.node("AveragePool", &[&current], vec![ints("kernel_shape", &kernel), ints("strides", &kernel)])
            };
            features.push(graph.node("Flatten", &[&pooled], vec![int("axis", 1)]));
        }
        if self.text_dim > 0 {
            graph.input(TEXT_INPUT, &[self.text_dim]);
            features.push(TEXT_INPUT.to_string());
        }
        let joined = if features.len() == 2 {
            graph.node("Concat", &[&features[0], &features[1]], vec![int("axis", 1)])
        } else {
            features.remove(0)
        };
        let w = graph.constant("head.weight", &[self.head.inputs, self.head.outputs], &self.head.weights);
        let b = graph.constant("head.bias", &[self.head.outputs], &self.head.bias);
        let product = graph.node("MatMul", &[&joined, &w], vec![]);
        graph.named_node("Add", &[&product, &b], LOGITS_OUTPUT);
        graph.output(LOGITS_OUTPUT, self.head.outputs);
        Ok(graph.finish())
    }

    fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::Network(message));
        let image_dim = self.image.as_ref().map_or(0, ImageBranch::feature_dim);
        if image_dim + self.text_dim == 0 {
            return fail("the network has neither an image nor a text input".into());
        }
        if let Some(branch) = &self.image {
            let (h, w) = branch.feature_map_size();
            if branch.pool_grid == 0 || h % branch.pool_grid != 0 || w % branch.pool_grid != 0 {
                return fail(format!("a {h}x{w} feature map cannot be pooled to a {0}x{0} grid", branch.pool_grid));
            }
            let mut in_channels = 3;
            for conv in &branch.convs {
                if conv.in_channels != in_channels
                    || conv.weights.len() != conv.out_channels * in_channels * 9
                    || conv.bias.len() != conv.out_channels
                {
                    return fail(format!(
                        "a conv layer's weights do not match {in_channels} → {} channels",
                        conv.out_channels
                    ));
                }
                in_channels = conv.out_channels;
            }
        }
        let head = &self.head;
        if head.inputs != image_dim + self.text_dim
            || head.weights.len() != head.inputs * head.outputs
            || head.bias.len() != head.outputs
        {
            return fail(format!(
                "the head has {} inputs and {} weights; the features need {} inputs",
                head.inputs,
                head.weights.len(),
                image_dim + self.text_dim
            ));
        }
        Ok(())
    }
}

/// The runtime input names (weights excluded) and output names of an ONNX model, in graph
/// order: exporters that generate names (burn-onnx does) are read back with this.
pub fn graph_io_names(model: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    let model = proto::ModelProto::decode(model)
        .map_err(|error| Error::Network(format!("the exported model is not a readable ONNX file: {error}")))?;
    let graph = model.graph.ok_or_else(|| Error::Network("the ONNX model has no graph".into()))?;
    let weights: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph.input.iter().map(|v| v.name.clone()).filter(|name| !weights.contains(name.as_str())).collect();
    Ok((inputs, graph.output.iter().map(|v| v.name.clone()).collect()))
}

fn ints(name: &str, values: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto { name: name.into(), ints: values.to_vec(), r#type: 7, ..Default::default() }
}

fn int(name: &str, value: i64) -> proto::AttributeProto {
    proto::AttributeProto { name: name.into(), i: value, r#type: 2, ..Default::default() }
}

#[derive(Default)]
struct GraphWriter {
    graph: proto::GraphProto,
}

impl GraphWriter {
    fn input(&mut self, name: &str, dims_after_batch: &[usize]) {
        self.graph.input.push(value_info(name, dims_after_batch));
    }

    fn output(&mut self, name: &str, width: usize) {
        self.graph.output.push(value_info(name, &[width]));
    }

    fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.graph.initializer.push(proto::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: values.to_vec(),
            name: name.into(),
        });
        name.into()
    }

    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<proto::AttributeProto>) -> String {
        let output = format!("{}_{}", op.to_lowercase(), self.graph.node.len());
        self.push(op, inputs, &output, attributes);
        output
    }

    fn named_node(&mut self, op: &str, inputs: &[&str], output: &str) {
        self.push(op, inputs, output, vec![]);
    }

    fn push(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<proto::AttributeProto>) {
        self.graph.node.push(proto::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: output.into(),
            op_type: op.into(),
            attribute,
        });
    }

    fn finish(mut self) -> Vec<u8> {
        self.graph.name = "lakecat".into();
        proto::ModelProto {
            ir_version: IR_VERSION,
            producer_name: "lakecat".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        }
        .encode_to_vec()
    }
}

fn value_info(name: &str, dims_after_batch: &[usize]) -> proto::ValueInfoProto {
    let mut dim = vec![proto::Dimension { value: Some(proto::DimensionValue::DimParam("batch".into())) }];
    dim.extend(
        dims_after_batch.iter().map(|&d| proto::Dimension { value: Some(proto::DimensionValue::DimValue(d as i64)) }),
    );
    proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(proto::TensorShapeProto { dim }),
            }),
        }),
    }
}

/// A small seeded generator so weights are reproducible without another dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Normal(0, std) by Box–Muller.
    fn normal_vec(&mut self, len: usize, std: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_network_is_reproducible_and_serializes() {
        let a = FusionNet::random(Some((16, 16, &[4, 8], 2)), 10, 5, 7);
        let b = FusionNet::random(Some((16, 16, &[4, 8], 2)), 10, 5, 7);
        assert_eq!(a, b);
        assert_eq!(a.image.as_ref().unwrap().feature_dim(), 8 * 2 * 2);
        assert_eq!(a.head.inputs, 32 + 10);
        let bytes = a.to_onnx().unwrap();
        assert!(bytes.len() > 4 * (4 * 27 + 8 * 36 + 42 * 5));
    }

    #[test]
    fn refuses_inconsistent_shapes() {
        let mut net = FusionNet::random(None, 4, 3, 1);
        net.head.inputs = 5;
        assert!(net.to_onnx().unwrap_err().to_string().contains("the features need 4 inputs"));
        let odd = FusionNet::random(Some((10, 10, &[], 3)), 0, 2, 1);
        assert!(odd.to_onnx().unwrap_err().to_string().contains("cannot be pooled"));
    }
}
