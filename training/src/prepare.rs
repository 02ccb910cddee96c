//! The first two stages of a training run ([`crate::trainer`]):
//!
//! - [`prepare`]: labels → taxonomy → pruned trainable leaves, and the train/validation split by
//!   hashed product id; every row left out is counted with its reason;
//! - [`encode`]: the text vocabulary fitted on the training split, then images and text of every
//!   row encoded with the scoring code (a frozen pretrained backbone's features computed once).

use std::collections::BTreeMap;
use std::time::Instant;

use lakecat_core::{ImageSpec, Progress, Taxonomy, TextVectorizer};

use crate::config::{DataConfig, TrainingConfig};
use crate::data::{self, Encoded, Example, label_examples};
use crate::features::{FeatureExtractor, FrozenBackbone};
use crate::{Error, Result};

/// Rows mapped to trainable classes and split.
#[derive(Debug)]
pub struct Prepared {
    /// The pruned taxonomy; its leaves are the classes, in this order.
    pub taxonomy: Taxonomy,
    pub classes: Vec<u32>,
    /// Example index and class index of every row that trains or validates.
    pub rows: Vec<(usize, usize)>,
    /// Indices into `rows`.
    pub train_rows: Vec<usize>,
    pub validation_rows: Vec<usize>,
    /// Reason → rows left out.
    pub skipped: BTreeMap<String, usize>,
}

/// Labels `examples` with `taxonomy` (else the labels' own tree), prunes small categories and
/// splits the rows as `data` says.
pub fn prepare(examples: &[Example<'_>], taxonomy: Option<&Taxonomy>, data: &DataConfig) -> Result<Prepared> {
    if examples.is_empty() {
        return Err(Error::NoExamples("the training table is empty".into()));
    }
    let labelled = label_examples(examples, taxonomy, &data.pruner())?;
    let mut skipped = labelled.skipped;
    let (mut train_rows, mut validation_rows) = (Vec::new(), Vec::new());
    let mut rows = Vec::with_capacity(labelled.rows.len());
    for (index, class) in labelled.rows {
        let Some(id) = examples[index].id else {
            *skipped.entry("no product id (the split needs one)".into()).or_default() += 1;
            continue;
        };
        let side = if data.split.is_validation(id) { &mut validation_rows } else { &mut train_rows };
        side.push(rows.len());
        rows.push((index, class));
    }
    if train_rows.is_empty() {
        return Err(Error::NoExamples(format!("no rows left for the training split of {} rows", rows.len())));
    }
    Ok(Prepared { taxonomy: labelled.taxonomy, classes: labelled.classes, rows, train_rows, validation_rows, skipped })
}

/// The model's inputs for every prepared row, and what scoring needs to encode them alike.
#[derive(Debug)]
pub struct Inputs {
    pub data: Encoded,
    /// Fitted on the training split; `None` without a text branch.
    pub vectorizer: Option<TextVectorizer>,
    /// `None` without an image branch.
    pub image_spec: Option<ImageSpec>,
    pub seconds: f64,
}

/// Encodes the prepared rows; a frozen pretrained backbone runs through `features`, once per
/// image. Reports the rows done to `progress`.
pub fn encode(
    examples: &[Example<'_>],
    prepared: &Prepared,
    config: &TrainingConfig,
    features: &dyn FeatureExtractor,
    progress: &dyn Progress,
) -> Result<Inputs> {
    let started = Instant::now();
    let model = &config.model;
    let vectorizer = if model.use_text {
        let texts: Vec<String> = prepared
            .train_rows
            .iter()
            .map(|&row| {
                let example = &examples[prepared.rows[row].0];
                format!("{} {}", example.title.unwrap_or(""), example.description.unwrap_or(""))
            })
            .collect();
        let text = &config.text;
        let vectorizer = TextVectorizer::fit(
            text.spec(),
            texts.iter().map(String::as_str),
            text.min_document_count,
            text.max_terms,
        )?;
        if vectorizer.dim() == 0 {
            return Err(Error::NoExamples(
                "the training text has no term in at least `min_document_count` products; lower it or train on \
                 images only"
                    .into(),
            ));
        }
        Some(vectorizer)
    } else {
        None
    };
    let image_spec = model.use_images.then(|| ImageSpec::imagenet(model.image_size()));
    let frozen = model.uses_frozen_backbone().then(|| FrozenBackbone::load(model)).transpose()?;
    progress.start("encoding images and text", Some(prepared.rows.len() as u64));
    progress.log(&format!(
        "encoding {} rows ({})",
        prepared.rows.len(),
        match &frozen {
            Some(backbone) => format!(
                "images through the frozen {:?} backbone once, with {}",
                backbone.backbone(),
                features.describe(backbone)
            ),
            None => "images and text".into(),
        }
    ));
    let extractor = frozen.as_ref().map(|backbone| (features, backbone));
    let data = data::encode(examples, &prepared.rows, image_spec.as_ref(), vectorizer.as_ref(), extractor, &|rows| {
        progress.advance(rows as u64)
    })?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    progress.log(&format!(
        "encoded in {seconds:.0} s{}",
        if frozen.is_some() {
            format!(
                " ({} image features reused, {} computed)",
                data.features_reused,
                prepared.rows.len() - data.features_reused
            )
        } else {
            String::new()
        }
    ));
    Ok(Inputs { data, vectorizer, image_spec, seconds })
}
