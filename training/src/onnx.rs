//! ONNX export of burn networks with a dynamic batch axis, shared by the trained model's bundle
//! ([`crate::export`]) and the frozen backbone run in ONNX Runtime ([`crate::features`]).

use burn::tensor::{Device, Distribution, Tensor};
use burn_onnx::export::OnnxExporter;
use lakecat_core::ImageSpec;
use lakecat_core::onnx::graph_io_names;

use crate::model::FusionModel;
use crate::{Error, Result};

/// The exported network and the names its graph gave the inputs and output.
pub struct Exported {
    pub model: Vec<u8>,
    pub image: Option<String>,
    pub text: Option<String>,
    pub output: String,
}

/// Batch size of the export trace. The batch axis is made symbolic afterwards
/// ([`make_batch_dynamic`]); a prime no layer width uses keeps batch-derived dimensions recognisable.
pub(crate) const TRACE_BATCH: usize = 13;

/// Exports `model` to ONNX with a dynamic batch axis. burn-onnx names graph inputs itself; they
/// are read back from the file (in the order given: image, then text).
///
/// burn-onnx's `export_dynamic` refuses this network: with two inputs sharing the batch axis,
/// the reshape after global pooling "matches 2 dynamic source axes and is ambiguous". So the
/// graph is traced with a fixed batch and the batch axis made symbolic afterwards.
pub fn export_onnx(model: &FusionModel, image: Option<&ImageSpec>, text_dim: usize) -> Result<Exported> {
    let device = Device::default();
    let exporter = OnnxExporter::new();
    let images = |spec: &ImageSpec| Tensor::<4>::random(spec.tensor_shape(TRACE_BATCH), Distribution::Default, &device);
    let text = || Tensor::<2>::random([TRACE_BATCH, text_dim], Distribution::Default, &device);
    let onnx = match (image.filter(|_| model.has_images()), model.has_text()) {
        (Some(spec), true) => exporter.export(model, (images(spec), text()), |model: &FusionModel, (images, text)| {
            model.forward(Some(images), Some(text))
        }),
        (Some(spec), false) => {
            exporter.export(model, images(spec), |model: &FusionModel, images| model.forward(Some(images), None))
        }
        (None, true) => exporter.export(model, text(), |model: &FusionModel, text| model.forward(None, Some(text))),
        (None, false) => return Err(Error::Export("the model has neither an image nor a text branch".into())),
    }
    .map_err(|error| Error::Export(error.to_string()))?;
    let bytes = finish_graph(onnx.as_bytes())?;
    let (inputs, outputs) = graph_io_names(&bytes)?;
    let output = outputs.first().cloned().ok_or_else(|| Error::Export("the exported graph has no output".into()))?;
    let mut inputs = inputs.into_iter();
    let image_name = model.has_images().then(|| inputs.next()).flatten();
    let text_name = model.has_text().then(|| inputs.next()).flatten();
    Ok(Exported { model: bytes, image: image_name, text: text_name, output })
}

/// The traced graph as ONNX Runtime is given it, in one pass over the protobuf: a symbolic
/// batch axis ([`make_batch_dynamic`]) and no initializer that no node reads.
pub(crate) fn finish_graph(model: &[u8]) -> Result<Vec<u8>> {
    use onnx_ir::Message;
    let fail = |error: String| Error::Export(format!("finishing the exported graph: {error}"));
    let mut proto = onnx_ir::ModelProto::parse_from_bytes(model).map_err(|error| fail(error.to_string()))?;
    let graph = proto.graph.mut_or_insert_default();
    make_batch_dynamic(graph)?;
    drop_unused_initializers(graph);
    proto.write_to_bytes().map_err(|error| fail(error.to_string()))
}

/// Turns the traced batch size into a symbolic `batch` axis: axis 0 of every graph input and
/// output, and `-1` (inferred) in the first entry of each Reshape target that starts with it
/// (the reshapes of activations, which keep the batch first; those of weights start with 1). Intermediate shape annotations are dropped; ONNX Runtime
/// infers them.
fn make_batch_dynamic(graph: &mut onnx_ir::GraphProto) -> Result<()> {
    let fail = |what: String| Error::Export(format!("making the batch axis dynamic: {what}"));
    for value in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        let dims = &mut value.type_.mut_or_insert_default().mut_tensor_type().shape.mut_or_insert_default().dim;
        let first = dims.first_mut().ok_or_else(|| fail(format!("{} has no dimensions", value.name)))?;
        if first.dim_value() != TRACE_BATCH as i64 {
            return Err(fail(format!("{} does not start with the traced batch", value.name)));
        }
        first.set_dim_param("batch".into());
    }
    graph.value_info.clear();
    let shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "Reshape")
        .filter_map(|node| node.input.get(1).cloned())
        .collect();
    for shape in shapes {
        let tensor = graph
            .initializer
            .iter_mut()
            .find(|tensor| tensor.name == shape)
            .ok_or_else(|| fail(format!("the reshape target {shape} is not a constant")))?;
        let first = tensor.raw_data.get(..8).map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes")));
        // Reshapes of weights (e.g. a bias to [1, C]) do not involve the batch.
        if first != Some(TRACE_BATCH as i64) {
            continue;
        }
        let mut raw = tensor.raw_data.to_vec();
        raw[..8].copy_from_slice(&(-1i64).to_le_bytes());
        tensor.raw_data = raw.into();
    }
    Ok(())
}

/// Drops the initializers no node reads: burn-onnx writes every parameter of the module, and a
/// stacked text-only network ([`FusionModel::stacked`]) holds an image head it never calls,
/// which ONNX Runtime would warn of on every session it opens.
fn drop_unused_initializers(graph: &mut onnx_ir::GraphProto) {
    let read: std::collections::HashSet<String> = graph.node.iter().flat_map(|node| node.input.clone()).collect();
    graph.initializer.retain(|tensor| read.contains(&tensor.name));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use onnx_ir::Message;

    use super::*;
    use crate::linear::LinearSvm;

    #[test]
    fn a_text_only_stacked_export_holds_only_initializers_its_nodes_read() {
        let (dim, classes) = (6, 4);
        let text_linear = LinearSvm {
            weights: (0..dim * classes).map(|i| i as f32).collect(),
            bias: vec![0.5; classes],
            dim,
            classes,
        };
        let model = FusionModel::stacked(None, 0.0, &text_linear, &Device::default());
        let exported = export_onnx(&model, None, dim).unwrap();
        assert!(exported.image.is_none() && exported.text.is_some());
        let proto = onnx_ir::ModelProto::parse_from_bytes(&exported.model).unwrap();
        let graph = proto.graph.get_or_default();
        let read: HashSet<&str> = graph.node.iter().flat_map(|node| node.input.iter().map(String::as_str)).collect();
        let names: Vec<&str> = graph.initializer.iter().map(|tensor| tensor.name.as_str()).collect();
        assert!(!names.is_empty(), "the wide path's weights are kept");
        let unused: Vec<&&str> = names.iter().filter(|name| !read.contains(*name)).collect();
        assert!(unused.is_empty(), "initializers no node reads: {unused:?}");
    }
}
