//! The last stage of a training run ([`crate::trainer`]): the calibrated network exported to ONNX
//! (burn-onnx, [`crate::onnx`]) with its vocabulary, taxonomy, preprocessing and a manifest that
//! records the whole [`TrainingConfig`]: a bundle that `categorize` loads unchanged.

use std::path::Path;

use burn::module::Module;
use lakecat_core::{Bundle, BundleBuilder, TrainingSource};

use crate::config::TrainingConfig;
use crate::fit::Calibrated;
use crate::model::Backbone;
use crate::onnx::export_onnx;
use crate::prepare::{Inputs, Prepared};
use crate::stack::Stacking;
use crate::{Error, Result};

/// Writes the bundle of `trained` to `dir`, named `name`, recording `config` and `source`.
pub fn export_bundle(
    name: &str,
    config: &TrainingConfig,
    source: Option<&TrainingSource>,
    prepared: &Prepared,
    inputs: &Inputs,
    trained: &Calibrated,
    dir: &Path,
) -> Result<Bundle> {
    // The exporter moves the module's parameters to its capture device; a copy of its own
    // keeps the trained model usable.
    let exported = export_onnx(&trained.fitted.model.valid(), inputs.image_spec.as_ref(), inputs.data.text_dim)?;
    let validation = trained.fitted.validation();
    let mut builder =
        BundleBuilder::new(name, prepared.taxonomy.clone(), prepared.classes.clone(), exported.model, exported.output)
            .with_temperature(trained.temperature as f32)
            .with_hyperparameter("trainer", describe_network(config, trained.fitted.stacking.as_ref()))
            .with_metric("validation_top1", validation.top1)
            .with_metric("validation_hierarchy_win", validation.hierarchy_win)
            .with_metric("validation_fallback", validation.fallback)
            .with_metric("validation_per_level", validation.per_level.clone())
            .with_metric("validation_rows", prepared.validation_rows.len() as u64)
            .with_metric("train_rows", prepared.train_rows.len() as u64);
    let serde_json::Value::Object(recorded) = serde_json::to_value(config)
        .map_err(|error| Error::Setting(format!("cannot record the training configuration: {error}")))?
    else {
        return Err(Error::Setting("the training configuration is not a JSON object".into()));
    };
    for (key, value) in recorded {
        builder = builder.with_hyperparameter(key, value);
    }
    if let Some(stacking) = &trained.fitted.stacking {
        let chosen = serde_json::to_value(stacking)
            .map_err(|error| Error::Setting(format!("cannot record the stacking choice: {error}")))?;
        builder = builder.with_hyperparameter("stacking_chosen", chosen);
    }
    if let (Some(input), Some(spec)) = (exported.image, &inputs.image_spec) {
        builder = builder.with_image_input(input, spec.clone());
    }
    if let (Some(input), Some(vectorizer)) = (exported.text, &inputs.vectorizer) {
        builder = builder.with_text_input(input, vectorizer.spec().clone());
    }
    if let Some(source) = source {
        builder = builder.with_training(source.clone());
    }
    Ok(builder.write(dir)?)
}

/// The network in words, for the manifest.
fn describe_network(config: &TrainingConfig, stacking: Option<&Stacking>) -> String {
    let model = &config.model;
    let with_images = model.use_images && stacking.is_none_or(|stacking| stacking.image_weight > 0.0);
    let image = match (with_images, model.backbone) {
        (false, _) => None,
        (true, Backbone::Tiny) => Some(format!("tiny CNN image branch ({} px)", model.image_size())),
        (true, backbone) => Some(format!("frozen {backbone:?} image branch ({} px)", model.image_size())),
    };
    let text = match stacking {
        Some(stacking) => Some(format!("linear text SVM (C = {})", stacking.svm_cost)),
        None => model.use_text.then(|| "two-layer text branch".to_string()),
    };
    let parts: Vec<String> = image.into_iter().chain(text).collect();
    match stacking.filter(|_| with_images) {
        Some(stacking) => {
            format!("burn FusionModel, stacked ({}; image logits × {})", parts.join(" + "), stacking.image_weight)
        }
        None => format!("burn FusionModel ({})", parts.join(" + ")),
    }
}
