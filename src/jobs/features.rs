//! Frozen-backbone image features for `lakecat train`, computed in ONNX Runtime and kept in a
//! Delta table, so that epochs, hyperparameter trials and later runs on the same images do not
//! run the backbone again.
//!
//! The cache table has one row per (backbone fingerprint, image): `backbone` (what the features
//! depend on: architecture, weights file, preprocessing — see
//! [`FrozenBackbone::fingerprint_of`]), `image_blake3` (hex BLAKE3 of the image bytes),
//! `features` (list of float) and `computed_at`. Appends only; images that fail to decode are
//! never cached (their reason is reported on every run).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{Array, AsArray, Float32Builder, ListBuilder, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float32Type, Schema, TimeUnit};
use deltalake::protocol::SaveMode;
use lakecat_training::features::extract_in_chunks;
use lakecat_training::{FeatureExtractor, FrozenBackbone, ImageFeatures};
use lakecat_udfs::runtime::{Device, OpenedSession, open_session};
use ort::value::TensorRef;

use crate::Result;
use crate::session::SessionBuilder;

/// BLAKE3 of an image's bytes.
type ImageKey = [u8; 32];

/// Image → features, for one backbone fingerprint.
pub type KnownFeatures = HashMap<ImageKey, Arc<[f32]>>;

/// Features to store, by backbone fingerprint.
pub type FeaturesByBackbone = BTreeMap<String, Vec<(ImageKey, Arc<[f32]>)>>;

/// The Delta table of cached features at `location`.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    location: String,
    storage: crate::StorageOptions,
}

impl FeatureCache {
    pub fn new(location: impl Into<String>) -> Self {
        Self { location: location.into(), storage: crate::StorageOptions::default() }
    }

    /// Options for the object store the cache table lives in (see [`crate::storage`]).
    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The features stored for `fingerprint` (none when the table does not exist yet).
    pub async fn load(&self, fingerprint: &str) -> Result<KnownFeatures> {
        let mut known = HashMap::new();
        if !crate::delta::table_exists(&self.location, &self.storage).await? {
            return Ok(known);
        }
        let table = crate::delta::open_table(&self.location, None, &self.storage).await?;
        let session = SessionBuilder::new().build().await?;
        session.register_table("feature_cache", &table).await?;
        let query = format!(
            "SELECT image_blake3, features FROM feature_cache WHERE backbone = '{}'",
            fingerprint.replace('\'', "''")
        );
        for batch in session.ctx.sql(&query).await?.collect().await? {
            let hashes = cast(batch.column(0), &DataType::Utf8)?;
            let features =
                cast(batch.column(1), &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))))?;
            let features = features.as_list::<i32>();
            for (row, hash) in hashes.as_string::<i32>().iter().enumerate() {
                let Some(key) = hash.and_then(parse_key) else { continue };
                if features.is_valid(row) {
                    let values = features.value(row);
                    known.insert(key, values.as_primitive::<Float32Type>().values().to_vec().into());
                }
            }
        }
        Ok(known)
    }

    /// Appends `features` computed by `fingerprint` in one commit.
    pub async fn append(&self, fingerprint: &str, features: &[(ImageKey, Arc<[f32]>)]) -> Result<()> {
        if features.is_empty() {
            return Ok(());
        }
        let mut vectors =
            ListBuilder::new(Float32Builder::new()).with_field(Field::new_list_field(DataType::Float32, false));
        for (_, values) in features {
            vectors.values().append_slice(values);
            vectors.append(true);
        }
        let vectors = vectors.finish();
        let now = chrono::Utc::now().timestamp_micros();
        let schema = Schema::new(vec![
            Field::new("backbone", DataType::Utf8, false),
            Field::new("image_blake3", DataType::Utf8, false),
            Field::new("features", vectors.data_type().clone(), false),
            Field::new("computed_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![fingerprint; features.len()])),
                Arc::new(StringArray::from_iter_values(features.iter().map(|(key, _)| hex::encode(key)))),
                Arc::new(vectors),
                Arc::new(TimestampMicrosecondArray::from(vec![now; features.len()]).with_timezone("UTC")),
            ],
        )?;
        crate::delta::write_table(&self.location, vec![batch], SaveMode::Append, &self.storage).await?;
        Ok(())
    }
}

fn parse_key(hex_digest: &str) -> Option<ImageKey> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// Runs a frozen backbone in ONNX Runtime (the backbone exported alone), reusing features it
/// already knows for that backbone's fingerprint (from a [`FeatureCache`] or an earlier call,
/// e.g. a previous search trial).
#[derive(Debug, Default)]
pub struct OrtFeatures {
    /// Fingerprint → image → features.
    known: RwLock<HashMap<String, KnownFeatures>>,
    /// (fingerprint, image) computed here, in order, for [`OrtFeatures::computed`].
    computed: Mutex<Vec<(String, ImageKey)>>,
    /// The session of the backbone with this fingerprint, and where it runs.
    session: Mutex<Option<(String, OpenedSession)>>,
}

impl OrtFeatures {
    /// Adds features known for the backbone with `fingerprint` (e.g. loaded from the cache).
    pub fn with_known(self, fingerprint: &str, features: KnownFeatures) -> Self {
        self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(fingerprint.to_string(), features);
        self
    }

    /// The features computed (not reused) so far, by fingerprint, to store.
    pub fn computed(&self) -> FeaturesByBackbone {
        let known = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let computed = self.computed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut grouped = FeaturesByBackbone::new();
        for (fingerprint, key) in computed.iter() {
            if let Some(values) = known.get(fingerprint).and_then(|features| features.get(key)) {
                grouped.entry(fingerprint.clone()).or_default().push((*key, values.clone()));
            }
        }
        grouped
    }

    /// The session of `backbone`, opened (and kept) on first use, like scoring's: CUDA when it
    /// can be registered, else the CPU.
    fn session<'a>(
        &self,
        slot: &'a mut Option<(String, OpenedSession)>,
        backbone: &FrozenBackbone,
    ) -> lakecat_training::Result<&'a mut OpenedSession> {
        if slot.as_ref().is_none_or(|(fingerprint, _)| fingerprint != backbone.fingerprint()) {
            let onnx = backbone.to_onnx()?;
            let opened = open_session(&onnx, Device::Auto, None).map_err(|error| {
                lakecat_training::Error::Features(format!(
                    "cannot open the exported {:?} backbone in ONNX Runtime: {error}",
                    backbone.backbone()
                ))
            })?;
            *slot = Some((backbone.fingerprint().to_string(), opened));
        }
        Ok(&mut slot.as_mut().expect("opened above").1)
    }

    /// Features of `count` preprocessed images, in this backbone's session.
    fn run(&self, backbone: &FrozenBackbone, pixels: &[f32], count: usize) -> lakecat_training::Result<Vec<f32>> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            lakecat_training::Error::Features(format!("{what} ({:?} in ONNX Runtime): {error}", backbone.backbone()))
        };
        let mut slot = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let session = &mut self.session(&mut slot, backbone)?.session;
        let input = session.inputs().first().map(|outlet| outlet.name().to_string()).unwrap_or_default();
        let tensor = TensorRef::from_array_view((backbone.spec().tensor_shape(count), pixels))
            .map_err(|e| fail("cannot pass the images", &e))?;
        let outputs = session.run(ort::inputs![input.as_str() => tensor]).map_err(|e| fail("inference failed", &e))?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(|e| fail("unexpected output", &e))?;
        Ok(values.to_vec())
    }
}

impl FeatureExtractor for OrtFeatures {
    fn extract(
        &self,
        backbone: &FrozenBackbone,
        images: &[Option<&[u8]>],
        progress: &dyn Fn(usize),
    ) -> lakecat_training::Result<ImageFeatures> {
        let dim = backbone.dim();
        let keys: Vec<Option<ImageKey>> =
            images.iter().map(|image| image.map(|bytes| *blake3::hash(bytes).as_bytes())).collect();
        let fingerprint = backbone.fingerprint();
        let misses: Vec<usize> = {
            let known = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let known = known.get(fingerprint);
            (0..images.len())
                .filter(|&row| keys[row].is_none_or(|key| known.is_none_or(|known| !known.contains_key(&key))))
                .collect()
        };
        progress(images.len() - misses.len());
        let missing: Vec<Option<&[u8]>> = misses.iter().map(|&row| images[row]).collect();
        let computed = extract_in_chunks(backbone.spec(), dim, &missing, progress, &mut |pixels, count| {
            self.run(backbone, pixels, count)
        })?;

        let mut all_known = self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = all_known.entry(fingerprint.to_string()).or_default();
        let mut new_keys = self.computed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (position, &row) in misses.iter().enumerate() {
            // Failed images are not cached: their reason is reported on every run.
            if let (Some(key), None) = (keys[row], &computed.failures[position]) {
                let values: Arc<[f32]> = computed.values[position * dim..(position + 1) * dim].into();
                if known.insert(key, values).is_none() {
                    new_keys.push((fingerprint.to_string(), key));
                }
            }
        }
        let mut features = ImageFeatures {
            values: Vec::with_capacity(images.len() * dim),
            failures: vec![None; images.len()],
            reused: images.len() - misses.len(),
        };
        let mut next_miss = misses.iter().enumerate().peekable();
        for row in 0..images.len() {
            match next_miss.next_if(|(_, miss)| **miss == row) {
                Some((position, _)) => {
                    features.values.extend_from_slice(&computed.values[position * dim..(position + 1) * dim]);
                    features.failures[row] = computed.failures[position].clone();
                }
                None => features.values.extend_from_slice(&known[&keys[row].expect("hits have a key")]),
            }
        }
        Ok(features)
    }

    /// Opens the backbone's session, so the log says where it runs (as `lakecat sql` does).
    fn describe(&self, backbone: &FrozenBackbone) -> String {
        let mut slot = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.session(&mut slot, backbone) {
            Ok(OpenedSession { provider, provider_note: Some(note), .. }) => {
                format!("ONNX Runtime on {provider}; {note}")
            }
            Ok(OpenedSession { provider, .. }) => format!("ONNX Runtime on {provider}"),
            // Extraction reports the same error.
            Err(_) => "ONNX Runtime".into(),
        }
    }
}
