//! Model bundles by location: a local directory, or a prefix in object storage that holds one
//! bundle (`…/fashion/manifest.json`) or several versions of one (`…/fashion/<version>/`).
//!
//! `s3://models/fashion` takes the latest version (version names compared as numbers where
//! they are numbers: 2 < 10, `2026-12-01` < `2026-12-02`), `s3://models/fashion@3` pins one.
//! A remote bundle is downloaded once into a local cache keyed by the BLAKE3 of its manifest
//! (which holds every file's SHA-256, so the key changes whenever any file does). Files are
//! fetched into a partial directory, verified against the manifest, and only then renamed into
//! place: a partial download is never used. A cached bundle is checked against the server on
//! every use (the manifest fetched, each file's ETag compared); a file replaced on the server
//! is fetched and verified again, and refused when it no longer matches the manifest.
//!
//! Publishing (`train --output s3://…`) uploads every file with put-if-absent and the manifest
//! last: readers only look for manifests, so they never see half a bundle, and a published
//! version is never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::logstore::object_store::path::Path as ObjectPath;
use deltalake::logstore::object_store::{self, ObjectStore, ObjectStoreExt};
use lakecat_core::bundle::{MANIFEST_FILE, Manifest, is_plain_file_name, sha256_hex};
use lakecat_udfs::fetch::object_version;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::storage::{self, StagingDir, StorageOptions};
use crate::{Error, Result};

/// Where remote bundles are cached: `$LAKECAT_BUNDLE_CACHE`, else
/// `$XDG_CACHE_HOME/lakecat/bundles`, else `~/.cache/lakecat/bundles`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAKECAT_BUNDLE_CACHE") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("lakecat/bundles")
}

/// What the cache records of a downloaded bundle, to notice files replaced on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Downloaded {
    location: String,
    /// File name → the ETag (or, without one, size and modification time) it was fetched at.
    versions: BTreeMap<String, String>,
}

const DOWNLOADED_FILE: &str = ".lakecat-download.json";

/// A bundle location resolved to one bundle: its local directory and, when it came from object
/// storage, the exact version's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBundle {
    pub dir: PathBuf,
    pub location: String,
}

/// Resolves bundle locations, downloading remote ones into a cache.
#[derive(Debug, Clone)]
pub struct BundleStore {
    cache: PathBuf,
    storage: StorageOptions,
}

impl Default for BundleStore {
    fn default() -> Self {
        Self::new()
    }
}

impl BundleStore {
    pub fn new() -> Self {
        Self { cache: default_cache_dir(), storage: StorageOptions::default() }
    }

    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// The bundle at `location` (`PATH`, `URI`, or either with `@VERSION`), as a local
    /// directory whose files match its manifest.
    pub async fn resolve(&self, location: &str) -> Result<ResolvedBundle> {
        // A local directory whose name holds an `@` is that directory, not a version of another.
        let (base, version) = if !location.contains("://") && Path::new(location).exists() {
            (location, None)
        } else {
            split_version(location)
        };
        let url = storage::location_url(base)?;
        if !storage::is_remote(&url) {
            let dir = if base.contains("://") {
                url.to_file_path().map_err(|()| Error::Input(format!("{location} is not a local path")))?
            } else {
                PathBuf::from(base)
            };
            let dir = match version {
                Some(version) => dir.join(version),
                None if dir.join(MANIFEST_FILE).is_file() || !dir.is_dir() => dir,
                None => latest_local(&dir)?.unwrap_or(dir),
            };
            return Ok(ResolvedBundle { location: dir.display().to_string(), dir });
        }
        let store = storage::store_for(&url, &self.storage)?;
        let prefix = match version {
            Some(version) => version.to_string(),
            None if exists(&store, &ObjectPath::from(MANIFEST_FILE), &url).await? => String::new(),
            None => latest_remote(&store, &url).await?.ok_or_else(|| {
                Error::Input(format!(
                    "{location} holds no bundle: neither {MANIFEST_FILE} nor <version>/{MANIFEST_FILE}; publish one with \
                     `lakecat train --output {}/<version>`",
                    base.trim_end_matches('/')
                ))
            })?,
        };
        let exact = if prefix.is_empty() {
            base.trim_end_matches('/').to_string()
        } else {
            format!("{}/{prefix}", base.trim_end_matches('/'))
        };
        let dir = self.download(&store, &url, &prefix, &exact).await?;
        Ok(ResolvedBundle { dir, location: exact })
    }

    async fn download(&self, store: &Arc<dyn ObjectStore>, url: &Url, prefix: &str, location: &str) -> Result<PathBuf> {
        let remote = |name: &str| {
            if prefix.is_empty() { ObjectPath::from(name) } else { ObjectPath::from(format!("{prefix}/{name}")) }
        };
        let fail = |error: &dyn std::fmt::Display| Error::Storage {
            location: location.to_string(),
            message: storage::explain(url, &error.to_string()),
        };
        let manifest_bytes = match store.get(&remote(MANIFEST_FILE)).await {
            Ok(result) => result.bytes().await.map_err(|error| fail(&error))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Input(format!("{location} holds no bundle ({MANIFEST_FILE} not found)")));
            }
            Err(error) => return Err(fail(&error)),
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|error| Error::Input(format!("{location}/{MANIFEST_FILE} is not a bundle manifest: {error}")))?;
        for name in manifest.files.keys() {
            check_file_name(location, name)?;
        }
        let key = format!("{}-{}", plain_name(&manifest.name), &blake3::hash(&manifest_bytes).to_hex()[..16]);
        let dir = self.cache.join(&key);
        if let Some(downloaded) = read_downloaded(&dir) {
            check_unchanged(store, url, &remote, &dir, &manifest, downloaded, location).await?;
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.cache).map_err(|source| Error::io(self.cache.display(), source))?;
        // Removed when dropped unless renamed into place: a failed or interrupted download
        // leaves nothing that could be mistaken for a bundle.
        let partial = StagingDir::new_in(&self.cache, &format!(".partial-{key}"))?;
        let mut versions = BTreeMap::new();
        for name in manifest.files.keys() {
            let result = store.get(&remote(name)).await.map_err(|error| fail(&error))?;
            versions.insert(name.clone(), object_version(&result.meta));
            let bytes = result.bytes().await.map_err(|error| fail(&error))?;
            let path = partial.path().join(name);
            std::fs::write(&path, &bytes).map_err(|source| Error::io(path.display(), source))?;
        }
        let path = partial.path().join(MANIFEST_FILE);
        std::fs::write(&path, &manifest_bytes).map_err(|source| Error::io(path.display(), source))?;
        // Verifies every checksum; a bundle that fails is refused and never moved into place.
        lakecat_core::Bundle::load(partial.path())?;
        let record = Downloaded { location: location.to_string(), versions };
        let path = partial.path().join(DOWNLOADED_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(|source| Error::io(path.display(), source))?;
        if let Err(error) = std::fs::rename(partial.path(), &dir) {
            // Another process cached the same bundle first: use theirs.
            if read_downloaded(&dir).is_none() {
                return Err(Error::io(dir.display(), error));
            }
        }
        Ok(dir)
    }

    /// Refuses, before any work, a location a bundle cannot be published to: one that already
    /// holds a bundle, or a store without put-if-absent.
    pub async fn check_publishable(&self, location: &str) -> Result<()> {
        let url = storage::location_url(location)?;
        if !storage::is_remote(&url) {
            return Ok(());
        }
        storage::check_atomic_commits(&url, &self.storage).await?;
        let store = storage::store_for(&url, &self.storage)?;
        if exists(&store, &ObjectPath::from(MANIFEST_FILE), &url).await? {
            return Err(Error::Input(format!(
                "{location} already holds a bundle, and published bundles never change: publish under a new version, \
                 e.g. {}/<version>",
                location.trim_end_matches('/')
            )));
        }
        Ok(())
    }

    /// Publishes the bundle in `dir` (and every other file there, e.g. the training report) at
    /// the remote `location`: every file with put-if-absent, the manifest last, so readers
    /// (who look for the manifest) never see half a bundle.
    pub async fn publish(&self, dir: &Path, location: &str) -> Result<()> {
        self.check_publishable(location).await?;
        lakecat_core::Bundle::load(dir)?;
        storage::upload_dir(dir, location, MANIFEST_FILE, true, &self.storage).await
    }
}

/// Compares each file's version on the server with the one cached; a replaced file is
/// fetched and must still match the manifest's checksum.
async fn check_unchanged(
    store: &Arc<dyn ObjectStore>,
    url: &Url,
    remote: &dyn Fn(&str) -> ObjectPath,
    dir: &Path,
    manifest: &Manifest,
    mut downloaded: Downloaded,
    location: &str,
) -> Result<()> {
    let mut changed = false;
    for (name, checksum) in &manifest.files {
        let fail = |error: object_store::Error| Error::Storage {
            location: location.to_string(),
            message: format!(
                "{name} of the cached bundle cannot be checked on the server: {}",
                storage::explain(url, &error.to_string())
            ),
        };
        let meta = store.head(&remote(name)).await.map_err(fail)?;
        let version = object_version(&meta);
        if downloaded.versions.get(name) == Some(&version) {
            continue;
        }
        let bytes = store.get(&remote(name)).await.map_err(fail)?.bytes().await.map_err(fail)?;
        if &sha256_hex(&bytes) != checksum {
            return Err(Error::Input(format!(
                "{location}/{name} was replaced on the server after lakecat cached this bundle, and it no longer \
                 matches the manifest's checksum: the bundle there is broken, so it is not used. Publish the model \
                 again under a new version"
            )));
        }
        downloaded.versions.insert(name.clone(), version);
        changed = true;
    }
    if changed {
        let path = dir.join(DOWNLOADED_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&downloaded).unwrap_or_default())
            .map_err(|source| Error::io(path.display(), source))?;
    }
    Ok(())
}

/// Splits `LOCATION@VERSION`; an `@` inside a path component before the last `/` (or in a
/// URL's authority, `abfss://container@account…`) is not a version.
pub fn split_version(location: &str) -> (&str, Option<&str>) {
    match location.rsplit_once('@') {
        Some((base, version))
            if !version.is_empty() && !version.contains('/') && !base.ends_with(':') && !base.ends_with("//") =>
        {
            if base.contains("://") && !base.split_once("://").is_some_and(|(_, rest)| rest.contains('/')) {
                return (location, None);
            }
            (base, Some(version))
        }
        _ => (location, None),
    }
}

/// The manifest names its files; each must be a plain name inside the bundle.
fn check_file_name(location: &str, name: &str) -> Result<()> {
    if is_plain_file_name(name) && name != MANIFEST_FILE {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "{location}: the manifest names the file {name:?}, which is not a plain file name in the bundle"
        )))
    }
}

fn plain_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(64)
        .collect()
}

fn read_downloaded(dir: &Path) -> Option<Downloaded> {
    serde_json::from_slice(&std::fs::read(dir.join(DOWNLOADED_FILE)).ok()?).ok()
}

async fn exists(store: &Arc<dyn ObjectStore>, path: &ObjectPath, url: &Url) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => {
            Err(Error::Storage { location: url.to_string(), message: storage::explain(url, &error.to_string()) })
        }
    }
}

/// A version name's sort key: runs of digits as numbers, the rest as text.
type VersionKey = Vec<(u8, u128, String)>;

/// Orders version names as a person would: runs of digits as numbers, the rest as text.
fn version_key(name: &str) -> VersionKey {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((0, rest[..digits].parse().unwrap_or(u128::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((1, 0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// The greatest version under a local directory that holds a manifest.
fn latest_local(dir: &Path) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::io(dir.display(), source))?;
    let mut versions: Vec<(VersionKey, PathBuf)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join(MANIFEST_FILE).is_file())
        .filter_map(|path| Some((version_key(path.file_name()?.to_str()?), path)))
        .collect();
    versions.sort();
    Ok(versions.pop().map(|(_, path)| path))
}

/// The greatest version under a remote prefix whose manifest exists (a version still being
/// published has none yet).
async fn latest_remote(store: &Arc<dyn ObjectStore>, url: &Url) -> Result<Option<String>> {
    let listing = store.list_with_delimiter(None).await.map_err(|error| Error::Storage {
        location: url.to_string(),
        message: storage::explain(url, &error.to_string()),
    })?;
    let mut versions: Vec<(VersionKey, String)> = listing
        .common_prefixes
        .iter()
        .filter_map(|prefix| prefix.filename().map(str::to_string))
        .map(|name| (version_key(&name), name))
        .collect();
    versions.sort();
    while let Some((_, version)) = versions.pop() {
        if exists(store, &ObjectPath::from(format!("{version}/{MANIFEST_FILE}")), url).await? {
            return Ok(Some(version));
        }
    }
    Ok(None)
}
