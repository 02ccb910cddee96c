//! lakecat's jobs: long-running work behind the CLI, written as builders so other programs can
//! run them too.

pub mod audit;
pub mod baseline;
pub mod consensus;
pub mod import;
pub mod refresh;
pub mod taxonomy;

pub use audit::{AuditReport, ImageAuditJob};
pub use baseline::BaselineJob;
pub use consensus::{ConsensusJob, ConsensusReport};
pub use import::{ImageStorage, ImportJob, ImportReport, Labels};
pub use refresh::{RefreshJob, RefreshReport};
pub use taxonomy::{PruneJob, PruneOutcome, TaxonomyStore};
