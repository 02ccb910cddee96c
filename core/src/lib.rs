//! What lakecat's training and scoring share, in exactly one place: the taxonomy, the text
//! vectorizer, the image preprocessing and the model bundle that carries all of them next to the
//! ONNX network. Training writes a bundle with these types; scoring reads it back with the same
//! code, so the two cannot drift apart.

pub mod bundle;
pub mod error;
pub mod metrics;
pub mod migration;
pub mod onnx;
pub mod plots;
pub mod preprocess;
pub mod progress;
pub mod prune;
pub mod split;
pub mod taxonomy;
pub mod taxonomy_formats;
pub mod text;

pub use bundle::{Bundle, BundleBuilder, Manifest, ModelInputs, TrainingSource};
pub use error::{Error, Result};
pub use migration::{Migrated, Migration};
pub use preprocess::{ImageError, ImagePreprocessor, ImageSpec};
pub use progress::{Progress, Quiet};
pub use prune::{PruneAction, PruneRow, Pruned, Pruner, SmallCategories};
pub use taxonomy::{Node, Taxonomy};
pub use taxonomy_formats::TaxonomyFormat;
pub use text::{
    CharNgrams, NgramBuckets, NgramHash, NgramSource, RowNorm, TextEncoding, TextError, TextSpec, TextVectorizer,
};
