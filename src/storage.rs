//! Where tables and bundles live: a local path, `file://`, `s3://`, `gs://`, `az://` or
//! `abfss://`, reached through deltalake's own storage backends (its `s3`, `gcs` and `azure`
//! features), so tables and bundles read the same credentials and endpoints: the usual
//! environment (`AWS_*` including `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP`, `GOOGLE_*`,
//! `AZURE_*`) and [`StorageOptions`] (delta-rs's `storage_options`, which win over the
//! environment).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, Once, OnceLock};

use deltalake::logstore::object_store::path::Path as ObjectPath;
use deltalake::logstore::object_store::{self, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::{Error, Result};

/// What a location may be, for messages.
pub const LOCATIONS: &str = "a local path, file://, s3://, gs://, az:// or abfss://";

/// URL schemes lakecat reads and writes through deltalake's backends.
const SCHEMES: [&str; 9] = ["file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"];

/// Key/value settings for the object store behind a location, as delta-rs's
/// `storage_options` (e.g. `aws_endpoint`, `aws_region`, `azure_storage_account_name`,
/// `google_service_account`). Values are never printed: `Debug` shows the keys only, and
/// [`redact`] removes every secret value from a message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(Arc<BTreeMap<String, String>>);

impl StorageOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key = value` (a later value for the same key wins).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let value = value.into();
        let key = key.into();
        if is_secret_key(&key) {
            remember_secret(&value);
        }
        Arc::make_mut(&mut self.0).insert(key, value);
        self
    }

    /// Parses `KEY=VALUE`, as `--storage-option` takes it.
    pub fn parse_pair(pair: &str) -> std::result::Result<(String, String), String> {
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
            _ => Err(format!(
                "expected KEY=VALUE (e.g. aws_region=eu-west-1), got {:?}",
                pair.split_once('=').map_or(pair, |(key, _)| key)
            )),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The options as delta-rs and object_store take them.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.0.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys().map(|key| format!("{key}=…"))).finish()
    }
}

/// Whether a storage option or environment variable holds a credential.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "key", "sas", "credential", "signature"].iter().any(|word| key.contains(word))
        && !key.ends_with("key_id")
        && !key.contains("account_name")
}

fn secrets() -> &'static Mutex<HashSet<String>> {
    static SECRETS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let from_environment = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, value)| {
                ["AWS_", "AZURE_", "GOOGLE_", "GCS_", "AZURITE_"].iter().any(|prefix| name.starts_with(prefix))
                    && is_secret_key(name)
                    && value.len() >= MIN_SECRET_LENGTH
            })
            .map(|(_, value)| value)
            .collect();
        Mutex::new(from_environment)
    })
}

/// Shorter values (a flag, a region) would blank out ordinary words of a message.
const MIN_SECRET_LENGTH: usize = 4;

fn remember_secret(value: &str) {
    if value.len() >= MIN_SECRET_LENGTH {
        secrets().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(value.to_string());
    }
}

/// `text` with every credential lakecat knows of (from the environment or a storage option)
/// replaced by `***`: what every message that may quote a store's answer passes through.
pub fn redact(text: &str) -> String {
    let secrets = secrets().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Longest first, so a secret containing another is removed whole.
    let mut ordered: Vec<&String> = secrets.iter().collect();
    ordered.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    ordered.into_iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "***"))
}

/// Registers deltalake's S3, GCS and Azure backends (once per process).
pub fn register_backends() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
        // Read the environment's credentials now, before any message could quote them.
        secrets();
    });
}

/// `location` as a URL: a supported URL as it is, a local path made absolute (not created).
pub fn location_url(location: &str) -> Result<Url> {
    if location.contains("://") {
        let url = Url::parse(location)
            .map_err(|error| Error::Input(format!("{location:?} is not a valid location URL: {error}")))?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(Error::Input(format!(
                "{location}: the scheme {}:// is not supported; a location is {LOCATIONS}",
                url.scheme()
            )));
        }
        if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Input(format!(
                "{location} names no bucket or container (expected e.g. {}://bucket/path)",
                url.scheme()
            )));
        }
        return Ok(url);
    }
    let path = Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|source| Error::io(location, source))?.join(path)
    };
    Url::from_directory_path(&absolute).map_err(|()| Error::Input(format!("{location:?} cannot be used as a location")))
}

/// Whether `url` is in object storage (not the local file system).
pub fn is_remote(url: &Url) -> bool {
    url.scheme() != "file"
}

/// Whether `location` names object storage; refuses a URL lakecat cannot use.
pub fn is_remote_location(location: &str) -> Result<bool> {
    Ok(is_remote(&location_url(location)?))
}

/// The object store rooted at `url` (paths are relative to it), built by deltalake's backend
/// for its scheme from the environment and `options`.
pub fn store_for(url: &Url, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
    register_backends();
    deltalake::logstore::store_for(url, options.to_map())
        .map_err(|error| Error::Storage { location: url.to_string(), message: explain(url, &error.to_string()) })
}

/// The bytes of the file at `location`: a local path, `file://…`, or an object's URL.
pub async fn read_file(location: &str, options: &StorageOptions) -> Result<bytes::Bytes> {
    let url = if location.contains("://") { Some(location_url(location)?) } else { None };
    let Some(url) = url.filter(is_remote) else {
        let path = match location.strip_prefix("file://") {
            Some(path) => std::path::PathBuf::from(path),
            None => std::path::PathBuf::from(location),
        };
        return std::fs::read(&path).map(bytes::Bytes::from).map_err(|source| Error::io(location, source));
    };
    let mut root = url.clone();
    root.set_path("/");
    let store = store_for(&root, options)?;
    let path = ObjectPath::from_url_path(url.path())
        .map_err(|error| Error::Input(format!("{location} is not a valid object path: {error}")))?;
    let fail = |error: object_store::Error| Error::Storage {
        location: location.to_string(),
        message: explain(&url, &error.to_string()),
    };
    match store.get(&path).await {
        Ok(result) => result.bytes().await.map_err(fail),
        Err(object_store::Error::NotFound { .. }) => Err(Error::Input(format!("{location}: no such object"))),
        Err(error) => Err(fail(error)),
    }
}

/// Uploads every regular file of `dir` to the prefix `location`, in name order but with
/// `last` (when present) after all others, so a reader that waits for `last` sees the rest.
/// With `create_only`, an existing object is never replaced (put-if-absent).
pub async fn upload_dir(
    dir: &Path,
    location: &str,
    last: &str,
    create_only: bool,
    options: &StorageOptions,
) -> Result<()> {
    let url = location_url(location)?;
    let store = store_for(&url, options)?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| Error::io(dir.display(), source))?
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort_by_key(|name| (name == last, name.clone()));
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|source| Error::io(path.display(), source))?;
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        match store
            .put_opts(
                &ObjectPath::from(name.as_str()),
                PutPayload::from(bytes),
                PutOptions { mode, ..Default::default() },
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Input(format!(
                    "{}/{name} already exists, and lakecat does not replace it",
                    location.trim_end_matches('/')
                )));
            }
            Err(error) => {
                return Err(Error::Storage {
                    location: location.to_string(),
                    message: explain(&url, &error.to_string()),
                });
            }
        }
    }
    Ok(())
}

/// `prefix-<process id>-<nanoseconds>`: a name no other process or call picks at once.
fn unique_name(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A local directory for files on their way to or from object storage, removed when dropped.
pub struct StagingDir(std::path::PathBuf);

impl StagingDir {
    /// A new directory in the system's temporary directory.
    pub fn new() -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), "lakecat-staging")
    }

    /// A new directory in `parent`, named after `prefix`.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        let path = parent.join(unique_name(prefix));
        std::fs::create_dir_all(&path).map_err(|source| Error::io(path.display(), source))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store's error about `url`, with what to set to fix it (credentials, the endpoint, the
/// bucket name), secrets removed.
pub fn explain(url: &Url, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| lower.contains(&word.to_ascii_lowercase()));
    let scheme = url.scheme();
    let (credentials, endpoint) = match scheme {
        "s3" | "s3a" => (
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or `storage_option` aws_access_key_id=… aws_secret_access_key=…",
            "AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for http://) or `storage_option` aws_endpoint=…",
        ),
        "gs" => (
            "GOOGLE_APPLICATION_CREDENTIALS / GOOGLE_SERVICE_ACCOUNT, or `storage_option` google_service_account=PATH",
            "`storage_option` google_base_url=…",
        ),
        "file" => ("", ""),
        _ => (
            "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or a SAS token / service principal), or `storage_option` azure_storage_account_key=…",
            "AZURE_STORAGE_USE_EMULATOR=true for Azurite, or `storage_option` azure_storage_endpoint=…",
        ),
    };
    let bucket = url.host_str().unwrap_or_default();
    let hint = if has(&[
        "NoSuchBucket",
        "bucket does not exist",
        "ContainerNotFound",
        "The specified container does not exist",
    ]) {
        format!("the bucket or container {bucket:?} does not exist: check the name (and the endpoint: {endpoint})")
    } else if has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "Forbidden",
        "403",
        "401",
        "AuthenticationFailed",
        "Unauthenticated",
        "PermissionDenied",
        "InvalidAuthenticationInfo",
    ]) {
        format!("the store refused the credentials: set {credentials}")
    } else if has(&[
        "credential",
        "service account",
        "Unable to open",
        "Missing region",
        "account name",
        "MissingAccount",
        "missing bucket",
    ]) {
        format!("the store cannot be reached without configuration: set {credentials}")
    } else if has(&["connection refused", "error sending request", "dns error", "timed out", "tcp connect"]) {
        format!("the store did not answer: check the endpoint ({endpoint}) and the network")
    } else {
        String::new()
    };
    let error = redact(error);
    if hint.is_empty() { error } else { format!("{error}; {hint}") }
}

/// Refuses to write where a commit could silently overwrite another writer's: Delta on object
/// storage is only safe with an atomic put-if-absent (S3 conditional writes, `If-None-Match: *`,
/// which AWS S3, GCS and Azure give). Checked once per bucket and process by putting one small
/// object twice with put-if-absent: the second put must be refused.
pub async fn check_atomic_commits(url: &Url, options: &StorageOptions) -> Result<()> {
    if !is_remote(url) {
        return Ok(());
    }
    let location = url.to_string();
    let refuse = |message: String| Error::Storage { location: location.clone(), message };
    let setting = |name: &str| {
        options
            .get(name)
            .or(options.get(&name.to_ascii_lowercase()))
            .map(str::to_string)
            .or_else(|| std::env::var(name).ok())
    };
    if setting("AWS_S3_ALLOW_UNSAFE_RENAME").is_some_and(|value| value.eq_ignore_ascii_case("true") || value == "1") {
        return Err(refuse(
            "AWS_S3_ALLOW_UNSAFE_RENAME is set: lakecat never commits unsafely (two writers could overwrite each \
             other's commit). Unset it: lakecat commits with S3 conditional writes (If-None-Match), which AWS S3 \
             and most S3-compatible stores support"
                .into(),
        ));
    }
    if setting("AWS_S3_LOCKING_PROVIDER").is_some() {
        return Err(refuse(
            "AWS_S3_LOCKING_PROVIDER is set, but this delta-rs no longer has a DynamoDB lock; unset it: lakecat \
             commits with S3 conditional writes (If-None-Match), which AWS S3 supports"
                .into(),
        ));
    }
    let bucket = format!("{}://{}", url.scheme(), url.authority());
    static CHECKED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let checked = CHECKED.get_or_init(Default::default);
    if checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&bucket) {
        return Ok(());
    }
    let store = store_for(url, options)?;
    let probe = ObjectPath::from(unique_name(".lakecat-commit-check"));
    let create = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    let unsupported = |detail: String| {
        refuse(format!(
            "this store cannot create an object only if it is absent ({detail}), so concurrent Delta commits could \
             overwrite each other and lakecat does not write here. Enable conditional writes: for S3-compatible \
             stores, a server that honours If-None-Match (AWS S3, MinIO, Ceph RGW, R2) and no \
             aws_conditional_put=disabled"
        ))
    };
    match store.put_opts(&probe, PutPayload::from_static(b"lakecat"), create()).await {
        Ok(_) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(unsupported("put-if-absent is switched off".into()));
        }
        Err(error) => return Err(refuse(explain(url, &error.to_string()))),
    }
    let second = store.put_opts(&probe, PutPayload::from_static(b"lakecat"), create()).await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => {
            checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(bucket);
            Ok(())
        }
        Ok(_) => Err(unsupported("it overwrote an existing object".into())),
        Err(object_store::Error::NotImplemented { .. }) => Err(unsupported("put-if-absent is switched off".into())),
        Err(error) => Err(refuse(explain(url, &error.to_string()))),
    }
}
