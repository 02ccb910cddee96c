//! The model bundle: a directory holding everything scoring needs, so that training and scoring
//! can never disagree.
//!
//! ```text
//! my-model/
//!   manifest.json   format version, name, training data, hyperparameters, metrics, temperature,
//!                   input/output names, output class order, SHA-256 of every other file
//!   model.onnx      the network (logits out; softmax and temperature are applied by scoring)
//!   taxonomy.json   the category tree; the classes are its leaves
//!   text.json       tokenizer settings and vocabulary            (when the model reads text)
//!   image.json      image preprocessing spec                     (when the model reads images)
//! ```
//!
//! Loading verifies the checksums and that the parts fit together; shape checks against the
//! ONNX graph itself happen where the graph is opened (the scoring engine).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, ImageSpec, Result, Taxonomy, TextSpec, TextVectorizer};

pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.onnx";
pub const TAXONOMY_FILE: &str = "taxonomy.json";
pub const TEXT_FILE: &str = "text.json";
pub const IMAGE_FILE: &str = "image.json";

/// Names of the ONNX graph's inputs. A model may read images, text or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInputs {
    pub image: Option<String>,
    pub text: Option<String>,
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingSource {
    pub table_uri: String,
    pub delta_version: Option<u64>,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub created_at: String,
    pub training: Option<TrainingSource>,
    #[serde(default)]
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Logits are divided by this before the softmax (calibration); `None` means 1.
    pub temperature: Option<f32>,
    pub inputs: ModelInputs,
    pub output: String,
    /// The taxonomy id of each model output, in output order.
    pub classes: Vec<u32>,
    /// SHA-256 (hex) of every other file in the bundle.
    pub files: BTreeMap<String, String>,
}

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    taxonomy: Taxonomy,
    text: Option<TextVectorizer>,
    image: Option<ImageSpec>,
    model: Arc<Vec<u8>>,
    fingerprint: String,
}

impl Bundle {
    /// Loads `dir`, refusing a bundle whose files were changed after it was written, or whose
    /// parts do not fit together (classes vs taxonomy leaves, inputs vs specs).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let refuse = |reason: String| Error::bundle(&dir, reason);
        if !dir.is_dir() {
            return Err(refuse(format!(
                "{} is not a directory (a bundle is a directory with {MANIFEST_FILE} and {MODEL_FILE})",
                dir.display()
            )));
        }
        // Every file is read once; what is parsed (and given to ONNX Runtime) is the bytes
        // that were checked.
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes = fs::read(&manifest_path).map_err(|source| Error::io(&manifest_path, source))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|source| Error::Json {
            path: manifest_path.clone(),
            what: "a bundle manifest",
            source,
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(refuse(format!(
                "format version {} is not supported (this lakecat reads version {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        check_manifest(&manifest).map_err(refuse)?;
        let mut files = BTreeMap::new();
        for (file, expected) in &manifest.files {
            let path = dir.join(file);
            let bytes = fs::read(&path).map_err(|source| Error::io(&path, source))?;
            let actual = sha256_hex(&bytes);
            if &actual != expected {
                return Err(refuse(format!(
                    "{file} was modified after the bundle was written (SHA-256 {actual}, manifest says {expected})"
                )));
            }
            files.insert(file.as_str(), bytes);
        }
        let json = |file: &str| -> &[u8] { files.get(file).map_or(&[], Vec::as_slice) };
        let taxonomy_json = std::str::from_utf8(json(TAXONOMY_FILE))
            .map_err(|_| refuse(format!("{TAXONOMY_FILE} is not UTF-8 text")))?;
        let taxonomy = Taxonomy::from_json(taxonomy_json).map_err(|source| Error::Json {
            path: dir.join(TAXONOMY_FILE),
            what: "a taxonomy",
            source,
        })??;
        let text = match &manifest.inputs.text {
            Some(_) => {
                let spec: TextSpec = parse_listed(&dir, &files, TEXT_FILE, "a text vectorizer")?;
                Some(TextVectorizer::new(spec)?)
            }
            None => None,
        };
        let image = match &manifest.inputs.image {
            Some(_) => {
                let spec: ImageSpec = parse_listed(&dir, &files, IMAGE_FILE, "an image spec")?;
                spec.validate()?;
                Some(spec)
            }
            None => None,
        };
        if text.is_none() && image.is_none() {
            return Err(refuse("the manifest names neither an image nor a text input".into()));
        }
        check_classes(&manifest.classes, &taxonomy).map_err(refuse)?;
        let model = Arc::new(files.remove(MODEL_FILE).unwrap_or_default());
        let fingerprint = fingerprint(&manifest.name, &manifest_bytes);
        Ok(Self { dir, manifest, taxonomy, text, image, model, fingerprint })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// The ONNX graph as it was read and checked: hand these bytes to ONNX Runtime rather than
    /// opening `model.onnx` again, which may have changed since.
    pub fn model_bytes(&self) -> &[u8] {
        &self.model
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    pub fn text(&self) -> Option<&TextVectorizer> {
        self.text.as_ref()
    }

    pub fn image(&self) -> Option<&ImageSpec> {
        self.image.as_ref()
    }

    /// Taxonomy id of each output, in output order.
    pub fn classes(&self) -> &[u32] {
        &self.manifest.classes
    }

    /// `name@` + the first 12 hex digits of a hash over every file's checksum: changes whenever
    /// any part of the model changes, so predictions can say exactly which model made them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The refusal error for this bundle, for checks made outside this module (graph shapes).
    pub fn refuse(&self, reason: impl Into<String>) -> Error {
        Error::bundle(&self.dir, reason)
    }
}

/// Writes a bundle directory. The manifest's checksums are computed here, never by hand.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    name: String,
    taxonomy: Taxonomy,
    classes: Vec<u32>,
    model: Vec<u8>,
    inputs: ModelInputs,
    output: String,
    text: Option<TextSpec>,
    image: Option<ImageSpec>,
    training: Option<TrainingSource>,
    hyperparameters: serde_json::Map<String, serde_json::Value>,
    metrics: serde_json::Map<String, serde_json::Value>,
    temperature: Option<f32>,
}

impl BundleBuilder {
    /// `model` is the ONNX file's bytes; `classes` the taxonomy id of each output.
    pub fn new(
        name: impl Into<String>,
        taxonomy: Taxonomy,
        classes: Vec<u32>,
        model: Vec<u8>,
        output: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            taxonomy,
            classes,
            model,
            inputs: ModelInputs { image: None, text: None },
            output: output.into(),
            text: None,
            image: None,
            training: None,
            hyperparameters: Default::default(),
            metrics: Default::default(),
            temperature: None,
        }
    }

    pub fn with_text_input(mut self, input_name: impl Into<String>, spec: TextSpec) -> Self {
        self.inputs.text = Some(input_name.into());
        self.text = Some(spec);
        self
    }

    pub fn with_image_input(mut self, input_name: impl Into<String>, spec: ImageSpec) -> Self {
        self.inputs.image = Some(input_name.into());
        self.image = Some(spec);
        self
    }

    pub fn with_training(mut self, training: TrainingSource) -> Self {
        self.training = Some(training);
        self
    }

    pub fn with_hyperparameter(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.hyperparameters.insert(key.into(), value.into());
        self
    }

    pub fn with_metric(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metrics.insert(key.into(), value.into());
        self
    }

    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Writes the files into `dir` (created if needed) and loads the result back, so a bundle
    /// that would not load is never reported as written.
    pub fn write(self, dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        let mut files = BTreeMap::new();
        let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            fs::write(&path, bytes).map_err(|source| Error::io(&path, source))?;
            files.insert(name.to_string(), sha256_hex(bytes));
            Ok(())
        };
        put(MODEL_FILE, &self.model)?;
        put(TAXONOMY_FILE, self.taxonomy.to_json().as_bytes())?;
        if let Some(text) = &self.text {
            put(TEXT_FILE, &to_json_bytes(text))?;
        }
        if let Some(image) = &self.image {
            put(IMAGE_FILE, &to_json_bytes(image))?;
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: self.name,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            training: self.training,
            hyperparameters: self.hyperparameters,
            metrics: self.metrics,
            temperature: self.temperature,
            inputs: self.inputs,
            output: self.output,
            classes: self.classes,
            files,
        };
        let path = dir.join(MANIFEST_FILE);
        fs::write(&path, to_json_bytes(&manifest)).map_err(|source| Error::io(&path, source))?;
        Bundle::load(dir)
    }
}

/// A JSON part of the bundle from its checked bytes; `Err` when the manifest does not list it.
fn parse_listed<T: serde::de::DeserializeOwned>(
    dir: &Path,
    files: &BTreeMap<&str, Vec<u8>>,
    file: &str,
    what: &'static str,
) -> Result<T> {
    let Some(bytes) = files.get(file) else {
        return Err(Error::bundle(dir, format!("the manifest lists no checksum for {file}")));
    };
    serde_json::from_slice(bytes).map_err(|source| Error::Json { path: dir.join(file), what, source })
}

/// Whether `name` (from data: a manifest, a product id) can name a file inside one folder:
/// not empty, no separator, no `..` or hidden name, no control character.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']) && !name.chars().any(char::is_control)
}

/// The manifest's own values: plain file names inside the bundle (no `..`, no absolute path),
/// and a temperature ONNX Runtime's logits can be divided by.
fn check_manifest(manifest: &Manifest) -> std::result::Result<(), String> {
    for required in [MODEL_FILE, TAXONOMY_FILE] {
        if !manifest.files.contains_key(required) {
            return Err(format!("the manifest lists no checksum for {required}"));
        }
    }
    for file in manifest.files.keys() {
        if !is_plain_file_name(file) || file == MANIFEST_FILE {
            return Err(format!("the manifest lists {file:?}, which is not a plain file name inside the bundle"));
        }
    }
    if let Some(temperature) = manifest.temperature
        && !(temperature.is_finite() && temperature > 0.0)
    {
        return Err(format!("temperature {temperature} must be a finite number above 0"));
    }
    Ok(())
}

fn check_classes(classes: &[u32], taxonomy: &Taxonomy) -> std::result::Result<(), String> {
    if classes.is_empty() {
        return Err("the model has no output classes".into());
    }
    let mut seen = std::collections::HashSet::new();
    for &class in classes {
        if !taxonomy.contains(class) {
            return Err(format!("output class {class} is not in the taxonomy"));
        }
        if !taxonomy.is_leaf(class) {
            return Err(format!(
                "output class {class} ({}) is not a leaf of the taxonomy; every class must be a leaf",
                taxonomy.path(class).join(" > ")
            ));
        }
        if !seen.insert(class) {
            return Err(format!("output class {class} appears twice"));
        }
    }
    let missing: Vec<String> = taxonomy
        .leaves()
        .into_iter()
        .filter(|leaf| !seen.contains(leaf))
        .map(|leaf| taxonomy.path(leaf).join(" > "))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} taxonomy leaves have no model output (e.g. {}); classes and leaves must match",
            missing.len(),
            missing[0]
        ));
    }
    Ok(())
}

/// `name@` and the first 12 hex digits of the manifest's SHA-256. The manifest holds the
/// checksum of every other file, so this covers the whole bundle: any change to the classes,
/// the temperature or a file is another model, and a refresh rescores its rows.
fn fingerprint(name: &str, manifest_bytes: &[u8]) -> String {
    format!("{name}@{}", &sha256_hex(manifest_bytes)[..12])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("bundle parts always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::split_path;

    fn builder() -> BundleBuilder {
        let taxonomy = Taxonomy::from_paths("t1", ["A > B", "A > C", "D"].map(split_path)).unwrap();
        let classes = taxonomy.leaves();
        let text = TextSpec { vocabulary: vec!["red".into(), "shirt".into()], ..TextSpec::with_defaults() };
        BundleBuilder::new("unit", taxonomy, classes, b"not really onnx".to_vec(), "logits")
            .with_text_input("text", text)
            .with_image_input("image", ImageSpec::imagenet(8))
            .with_temperature(1.5)
    }

    #[test]
    fn round_trip_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = builder().write(dir.path()).unwrap();
        assert_eq!(bundle.classes().len(), 3);
        assert_eq!(bundle.text().unwrap().dim(), 2);
        assert_eq!(bundle.manifest().temperature, Some(1.5));
        assert!(bundle.fingerprint().starts_with("unit@"));
        let again = Bundle::load(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), bundle.fingerprint());
    }

    #[test]
    fn refuses_a_tampered_file() {
        let dir = tempfile::tempdir().unwrap();
        builder().write(dir.path()).unwrap();
        fs::write(dir.path().join(TEXT_FILE), b"{}").unwrap();
        let error = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("text.json was modified after the bundle was written"), "{error}");
    }

    /// Rewrites the manifest through `change`, as someone with write access to a shared bucket.
    fn tamper(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.join(MANIFEST_FILE);
        let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        change(&mut manifest);
        fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    }

    #[test]
    fn the_fingerprint_covers_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let original = builder().write(dir.path()).unwrap().fingerprint().to_string();
        tamper(dir.path(), |manifest| {
            manifest["classes"].as_array_mut().unwrap().reverse();
        });
        let reversed = Bundle::load(dir.path()).unwrap();
        assert_ne!(reversed.fingerprint(), original, "permuted labels are another model");
        tamper(dir.path(), |manifest| manifest["temperature"] = serde_json::json!(2.0));
        assert_ne!(Bundle::load(dir.path()).unwrap().fingerprint(), reversed.fingerprint());
    }

    #[test]
    fn refuses_bad_manifest_values() {
        let dir = tempfile::tempdir().unwrap();
        builder().write(dir.path()).unwrap();
        let cases: [(&str, serde_json::Value, &str); 5] = [
            ("temperature", serde_json::json!(-1.0), "temperature -1 must be a finite number above 0"),
            ("temperature", serde_json::json!(0.0), "temperature 0 must be a finite number above 0"),
            (
                "files",
                serde_json::json!({"model.onnx": "00", "taxonomy.json": "00", "../x": "00"}),
                "\"../x\", which is not a plain file name",
            ),
            (
                "files",
                serde_json::json!({"model.onnx": "00", "taxonomy.json": "00", "/etc/passwd": "00"}),
                "\"/etc/passwd\", which is not a plain file name",
            ),
            ("files", serde_json::json!({"taxonomy.json": "00"}), "lists no checksum for model.onnx"),
        ];
        for (key, value, expected) in cases {
            let copy = tempfile::tempdir().unwrap();
            for entry in fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
            }
            tamper(copy.path(), |manifest| manifest[key] = value.clone());
            let error = Bundle::load(copy.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
    }

    #[test]
    fn the_model_bytes_are_the_checked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = builder().write(dir.path()).unwrap();
        fs::write(dir.path().join(MODEL_FILE), b"swapped after loading").unwrap();
        assert_eq!(bundle.model_bytes(), b"not really onnx");
    }

    #[test]
    fn refuses_classes_that_are_not_the_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder();
        b.classes.pop();
        let error = b.write(dir.path()).unwrap_err().to_string();
        assert!(error.contains("1 taxonomy leaves have no model output (e.g. D)"), "{error}");
        let mut b = builder();
        b.classes[0] = b.taxonomy.find_path(&["A"]).unwrap();
        let error = b.write(dir.path()).unwrap_err().to_string();
        assert!(error.contains("(A) is not a leaf"), "{error}");
    }

    #[test]
    fn refuses_a_missing_directory_with_a_hint() {
        let error = Bundle::load("/nonexistent/bundle").unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
    }
}
