//! lakecat: categorize product catalogs in a lakehouse.
//!
//! This crate holds the session set-up ([`session`]), the jobs ([`jobs`]) and the CLI; the SQL
//! functions live in `lakecat-udfs`, the trainers in `lakecat-training`, and what both share in
//! `lakecat-core`.

pub mod bundles;
pub mod cluster;
pub mod delta;
pub mod error;
pub mod jobs;
pub mod serve;
pub mod session;
pub mod storage;

pub use error::{Error, Result};
pub use session::{LakecatSession, SessionBuilder};
pub use storage::StorageOptions;
