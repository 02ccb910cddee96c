//! Delta table locations and the few operations lakecat's jobs need. A location is a local
//! path or a URL of any store in [`crate::storage`]; every operation takes the
//! [`StorageOptions`] of the command that runs it.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use url::Url;

use crate::storage::{self, StorageOptions};
use crate::{Error, Result};

/// A table location as a URL: a store URL as it is, a local path made absolute and created
/// when missing (so a new table can be written there).
pub fn table_url(location: &str) -> Result<Url> {
    let url = storage::location_url(location)?;
    if !storage::is_remote(&url) {
        let path = url.to_file_path().map_err(|()| Error::Input(format!("{location:?} is not a local path")))?;
        std::fs::create_dir_all(&path).map_err(|source| Error::io(location, source))?;
        let absolute = std::fs::canonicalize(&path).map_err(|source| Error::io(location, source))?;
        return Url::from_directory_path(&absolute)
            .map_err(|()| Error::Input(format!("{location:?} cannot be used as a table location")));
    }
    Ok(url)
}

fn not_a_table(location: &str) -> Error {
    Error::NotATable(location.to_string())
}

/// Whether `location` holds a Delta table (a missing bucket or refused credentials are errors).
pub async fn table_exists(location: &str, options: &StorageOptions) -> Result<bool> {
    match check_is_table(location, options).await {
        Ok(_) => Ok(true),
        Err(Error::NotATable(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Checks, with one listing and before any work, that `location` holds a Delta table: a missing
/// bucket, refused credentials or an empty prefix each get their own message.
async fn check_is_table(location: &str, options: &StorageOptions) -> Result<Url> {
    let url = storage::location_url(location)?;
    if !storage::is_remote(&url) {
        let path = url.to_file_path().map_err(|()| not_a_table(location))?;
        if !path.join("_delta_log").is_dir() {
            return Err(not_a_table(location));
        }
        return Ok(url);
    }
    let store = storage::store_for(&url, options)?;
    let log = deltalake::logstore::object_store::path::Path::from("_delta_log");
    let first = store.list(Some(&log)).try_next().await;
    match first {
        Ok(Some(_)) => Ok(url),
        Ok(None) | Err(deltalake::logstore::object_store::Error::NotFound { .. }) => {
            if bucket_missing(&store).await {
                Err(Error::Storage { location: location.to_string(), message: storage::explain(&url, "NoSuchBucket") })
            } else {
                Err(not_a_table(location))
            }
        }
        Err(error) => {
            Err(Error::Storage { location: location.to_string(), message: storage::explain(&url, &error.to_string()) })
        }
    }
}

/// Whether listing the store's root says that its bucket does not exist (an empty prefix of an
/// existing bucket lists fine).
async fn bucket_missing(store: &std::sync::Arc<dyn deltalake::logstore::object_store::ObjectStore>) -> bool {
    match store.list_with_delimiter(None).await {
        Ok(_) => false,
        Err(error) => {
            let text = error.to_string();
            matches!(error, deltalake::logstore::object_store::Error::NotFound { .. })
                || text.contains("NoSuchBucket")
                || text.contains("ContainerNotFound")
        }
    }
}

/// Opens an existing table, at its latest version or at `version`.
pub async fn open_table(location: &str, version: Option<u64>, options: &StorageOptions) -> Result<DeltaTable> {
    let url = check_is_table(location, options).await?;
    let mut builder = builder(location, url, options)?;
    if let Some(version) = version {
        builder = builder.with_version(version);
    }
    builder.load().await.map_err(|source| Error::delta(location, source))
}

fn builder(location: &str, url: Url, options: &StorageOptions) -> Result<DeltaTableBuilder> {
    storage::register_backends();
    Ok(DeltaTableBuilder::from_url(url)
        .map_err(|source| Error::delta(location, source))?
        .with_storage_options(options.to_map()))
}

/// The version of the table at `location` that was current at `timestamp` (RFC 3339, e.g.
/// `2026-11-28T12:00:00Z`).
pub async fn version_at(location: &str, timestamp: &str, options: &StorageOptions) -> Result<u64> {
    let url = check_is_table(location, options).await?;
    let table = builder(location, url, options)?
        .with_datestring(timestamp)
        .map_err(|source| Error::delta(location, source))?
        .load()
        .await
        .map_err(|source| Error::delta(location, source))?;
    table.version().ok_or_else(|| Error::Input(format!("{location} had no version at {timestamp}")))
}

/// The table at `location` for writing: loaded when it exists, else not yet created (its first
/// write creates it). Refuses a store that cannot commit safely.
pub async fn table_for_writing(location: &str, options: &StorageOptions) -> Result<DeltaTable> {
    let url = table_url(location)?;
    storage::check_atomic_commits(&url, options).await?;
    let mut table = builder(location, url, options)?.build().map_err(|source| Error::delta(location, source))?;
    match table.load().await {
        Ok(()) => Ok(table),
        Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
        Err(source) => Err(Error::delta(location, source)),
    }
}

/// Writes `batches` to the table at `location` in one commit (creating the table if needed).
/// Returns the new table version.
pub async fn write_table(
    location: &str,
    batches: Vec<RecordBatch>,
    mode: SaveMode,
    options: &StorageOptions,
) -> Result<u64> {
    let table = table_for_writing(location, options).await?;
    let table = table.write(batches).with_save_mode(mode).await.map_err(|source| Error::delta(location, source))?;
    table.version().ok_or_else(|| Error::Input(format!("{location}: the write returned no table version")))
}

/// `schema` with Utf8View and BinaryView (what Delta scans produce), at any depth, as Utf8 and
/// Binary: what tables written by lakecat store, and what `lakecat serve` sends (JDBC,
/// pyarrow's CSV writer and older ADBC builds cannot read view types). Values are unchanged.
pub fn without_view_types(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema.fields().iter().map(|field| plain_field(field)).collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn plain_field(field: &Field) -> Field {
    field.clone().with_data_type(plain_type(field.data_type()))
}

/// [`without_view_types`] of one type.
pub fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(item) => DataType::List(Arc::new(plain_field(item))),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(plain_field(item))),
        DataType::FixedSizeList(item, size) => DataType::FixedSizeList(Arc::new(plain_field(item)), *size),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|field| plain_field(field)).collect()),
        other => other.clone(),
    }
}
