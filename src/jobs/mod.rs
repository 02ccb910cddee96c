//! lakecat's jobs: long-running work behind the CLI, written as builders so other programs can
//! run them too.

pub mod audit;
#[cfg(feature = "train")]
pub mod baseline;
pub mod consensus;
pub mod eval;
#[cfg(feature = "train")]
pub mod features;
pub mod import;
pub mod refresh;
pub mod taxonomy;
#[cfg(feature = "train")]
pub mod train;

pub use audit::{AuditReport, ImageAuditJob};
#[cfg(feature = "train")]
pub use baseline::BaselineJob;
pub use consensus::{ConsensusJob, ConsensusReport};
pub use eval::{EvalJob, EvalReport, EvalRows, SnapshotAt, SnapshotColumns, TrainingSnapshot};
#[cfg(feature = "train")]
pub use features::{FeatureCache, OrtFeatures};
pub use import::{ImageStorage, ImportJob, ImportReport, Labels};
pub use refresh::{RefreshJob, RefreshReport};
pub use taxonomy::{PruneJob, PruneOutcome, TaxonomyStore};
#[cfg(feature = "train")]
pub use train::{TrainJob, installed_mobilenet_weights};

/// The image column of a products table: the one named, else `image`, else `image_uri`.
pub(crate) fn image_column(schema: &arrow::datatypes::Schema, named: Option<&str>) -> String {
    match named {
        Some(column) => column.to_string(),
        None => ["image", "image_uri"]
            .into_iter()
            .find(|name| schema.field_with_name(name).is_ok())
            .unwrap_or("image")
            .to_string(),
    }
}

/// Checks that `table` has each (role, column); the error lists the table's columns and says
/// which flag names the column.
pub(crate) fn require_columns(
    schema: &arrow::datatypes::Schema,
    table: &str,
    columns: &[(&str, &str, &str)],
) -> crate::Result<()> {
    for (role, name, setting) in columns {
        if schema.field_with_name(name).is_err() {
            let present: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
            return Err(crate::Error::Input(format!(
                "{table}: no {role} column {name:?} (columns: {}); name it with {setting}",
                present.join(", ")
            )));
        }
    }
    Ok(())
}

/// Quotes an identifier for SQL.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
