//! Delta table locations and the few operations lakecat's jobs need.

use std::path::Path;

use arrow::array::RecordBatch;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use url::Url;

use crate::{Error, Result};

/// A table location as a URL: `s3://…`, `file://…`, or a local path (created when missing, so
/// a new table can be written there).
pub fn table_url(location: &str) -> Result<Url> {
    if location.contains("://") {
        return Url::parse(location)
            .map_err(|error| Error::Input(format!("{location:?} is not a valid table URL: {error}")));
    }
    let path = Path::new(location);
    std::fs::create_dir_all(path).map_err(|source| Error::io(location, source))?;
    let absolute = std::fs::canonicalize(path).map_err(|source| Error::io(location, source))?;
    Url::from_directory_path(&absolute)
        .map_err(|()| Error::Input(format!("{location:?} cannot be used as a table location")))
}

/// Opens an existing table, at its latest version or at `version`.
pub async fn open_table(location: &str, version: Option<u64>) -> Result<DeltaTable> {
    let url = if location.contains("://") {
        table_url(location)?
    } else {
        let path = Path::new(location);
        if !path.join("_delta_log").is_dir() {
            return Err(Error::Input(format!(
                "{location} is not a Delta table (no _delta_log directory); create one with `lakecat import`"
            )));
        }
        table_url(location)?
    };
    let table = match version {
        Some(version) => deltalake::open_table_with_version(url, version).await,
        None => deltalake::open_table(url).await,
    };
    table.map_err(|source| Error::delta(location, source))
}

/// The version of the table at `location` that was current at `timestamp` (RFC 3339, e.g.
/// `2026-11-28T12:00:00Z`).
pub async fn version_at(location: &str, timestamp: &str) -> Result<u64> {
    open_table(location, None).await?;
    let table = deltalake::open_table_with_ds(table_url(location)?, timestamp)
        .await
        .map_err(|source| Error::delta(location, source))?;
    table.version().ok_or_else(|| Error::Input(format!("{location} had no version at {timestamp}")))
}

/// Writes `batches` to the table at `location` in one commit (creating the table if needed).
/// Returns the new table version.
pub async fn write_table(location: &str, batches: Vec<RecordBatch>, mode: SaveMode) -> Result<u64> {
    let url = table_url(location)?;
    let table = DeltaTable::try_from_url(url).await.map_err(|source| Error::delta(location, source))?;
    let table = table.write(batches).with_save_mode(mode).await.map_err(|source| Error::delta(location, source))?;
    table.version().ok_or_else(|| Error::Input(format!("{location}: the write returned no table version")))
}
