//! Fetching images named by URI: local paths and `file://` from the filesystem, `s3://`,
//! `gs://` and `az://` through `object_store` with credentials from the usual environment
//! variables, `http(s)://` only when the session allows it, and nothing outside the allow-list.
//! Fetches of one batch run concurrently (bounded) on a dedicated I/O runtime; each request has
//! a timeout and transient failures (5xx, 429, timeouts, dropped connections) are retried with
//! exponential backoff by `object_store`. A failed fetch is that row's error.
//!
//! The image column is data written by others, so every fetch is a trust boundary (see
//! SECURITY.md): local paths are checked after symlinks are resolved and only regular files
//! are opened; http(s) connections are checked at the address they connect to, for every
//! redirect too; at most `lakecat.max_image_bytes` are read; and an error names the status
//! of a response, never its body.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};
use url::Url;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;

use crate::allow_list::{AllowList, canonical_root, refused_address};
use crate::arrays::{byte_values, is_bytes, is_text, string_values};
use crate::config::LakecatOptions;
use crate::error::{RowError, Stage};

/// How one batch of fetches behaves; read from the session's `lakecat.*` settings.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub concurrency: usize,
    /// Per request (per attempt for remote stores).
    pub timeout: Duration,
    /// Retries of a transient remote failure.
    pub retries: usize,
    pub allow_http: bool,
    /// Relative paths are resolved against this directory; canonical (symlinks resolved).
    pub base_dir: PathBuf,
    pub allowed: AllowList,
    /// The most bytes one image may have.
    pub max_bytes: usize,
}

/// The longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Redirects followed per request; each hop is checked like the first URL.
const MAX_REDIRECTS: usize = 5;

impl FetchSettings {
    /// The settings of a session; `Err` when the image root or `lakecat.allowed_locations` is
    /// not usable.
    pub fn from_options(options: &LakecatOptions) -> Result<Self, String> {
        let base_dir = if options.image_root.is_empty() {
            // Without a root, the current directory is the root; if that is `/`, no local file
            // is allowed (the allow-list says so on each row).
            let cwd = std::env::current_dir().map_err(|error| format!("the current directory: {error}"))?;
            std::fs::canonicalize(&cwd).unwrap_or(cwd)
        } else {
            canonical_root(Path::new(&options.image_root))
                .map_err(|message| format!("lakecat.image_root: {message}"))?
        };
        Ok(Self {
            concurrency: options.fetch_concurrency.max(1),
            timeout: Duration::try_from_secs_f64(options.fetch_timeout_secs.max(0.001))
                .unwrap_or(Duration::from_secs(3600)),
            retries: options.fetch_retries.min(10),
            allow_http: options.allow_http,
            allowed: AllowList::parse(&options.allowed_locations, &base_dir)?,
            max_bytes: options.max_image_bytes.max(1),
            base_dir,
        })
    }

    /// Settings for locations the user named on the command line (an import's image folder):
    /// only under `allowed`, relative paths from `base_dir`.
    pub fn for_import(base_dir: PathBuf, allowed: AllowList) -> Self {
        let defaults = LakecatOptions::default();
        Self {
            concurrency: 32,
            timeout: Duration::from_secs(30),
            retries: 3,
            allow_http: false,
            base_dir,
            allowed,
            max_bytes: defaults.max_image_bytes,
        }
    }

    /// The most one fetch may take: every attempt plus the pauses between them.
    fn deadline(&self) -> Duration {
        let attempts = self.retries as u32 + 1;
        self.timeout.saturating_mul(attempts).saturating_add(MAX_BACKOFF.saturating_mul(self.retries as u32))
    }
}
/// Object stores by `scheme://authority`, built once and reused across batches.
#[derive(Debug, Default)]
pub struct ImageFetcher {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// A fetcher is only a cache of connections: any two fetch the same bytes.
impl PartialEq for ImageFetcher {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for ImageFetcher {}

impl std::hash::Hash for ImageFetcher {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

enum Location {
    /// A canonical path that the allow-list accepted.
    Local(PathBuf),
    /// An allowed local path naming nothing.
    Missing(PathBuf),
    Remote(Arc<dyn ObjectStore>, ObjectPath),
}

/// An image borrowed from the input column or fetched for this batch.
#[derive(Debug, Clone)]
pub enum ImageBytes<'a> {
    Borrowed(&'a [u8]),
    Fetched(Bytes),
}

impl std::ops::Deref for ImageBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Fetched(bytes) => bytes,
        }
    }
}

impl ImageFetcher {
    /// Image bytes per row of an image column: borrowed from a binary column, or fetched for
    /// location strings (a failed fetch is that row's error). NULL stays `None`. Bytes over
    /// `lakecat.max_image_bytes` are refused either way.
    pub fn images<'a>(
        &self,
        column: &'a ArrayRef,
        settings: &FetchSettings,
    ) -> datafusion::error::Result<Vec<Result<Option<ImageBytes<'a>>, RowError>>> {
        Ok(match column.data_type() {
            data_type if is_bytes(data_type) => byte_values(column)?
                .into_iter()
                .map(|value| match value {
                    Some(bytes) if bytes.len() > settings.max_bytes => Err(RowError::new(
                        Stage::Refused,
                        over_limit("the image", bytes.len() as u64, settings.max_bytes),
                    )),
                    value => Ok(value.map(ImageBytes::Borrowed)),
                })
                .collect(),
            DataType::Null => vec![Ok(None); column.len()],
            data_type if is_text(data_type) => self
                .fetch_all(&string_values(column)?, settings)
                .into_iter()
                .map(|fetched| fetched.transpose().map(|bytes| bytes.map(ImageBytes::Fetched)))
                .collect(),
            other => {
                return datafusion::common::exec_err!(
                    "an image column holds bytes (BINARY) or locations (strings), not {other}"
                );
            }
        })
    }

    /// Fetches every URI; `None` stays `None` (a NULL image).
    pub fn fetch_all(&self, uris: &[Option<&str>], settings: &FetchSettings) -> Vec<Option<Result<Bytes, RowError>>> {
        let locations: Vec<Option<Result<(String, Location), RowError>>> = uris
            .iter()
            .map(|uri| uri.map(|uri| self.resolve(uri, settings).map(|location| (uri.to_string(), location))))
            .collect();
        let (timeout, deadline, max_bytes) = (settings.timeout, settings.deadline(), settings.max_bytes);
        let concurrency = settings.concurrency;
        let work = async move {
            futures::stream::iter(locations.into_iter().map(|location| async move {
                match location {
                    None => None,
                    Some(Err(error)) => Some(Err(error)),
                    Some(Ok((uri, location))) => Some(fetch_one(&uri, location, timeout, deadline, max_bytes).await),
                }
            }))
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
        };
        // The caller is a DataFusion operator on a runtime thread: run the I/O on lakecat's own
        // runtime and wait for it, so CPU work and network waits do not share one pool.
        let handle = io_runtime().spawn(work);
        futures::executor::block_on(handle).unwrap_or_else(|join_error| {
            let error = RowError::new(Stage::Fetch, format!("the fetch task failed: {join_error}"));
            uris.iter().map(|uri| uri.map(|_| Err(error.clone()))).collect()
        })
    }

    /// The version of every URI's object, without reading it: the ETag (or object version, or
    /// size and modification time) from one HEAD, a local file's size and modification time.
    /// `None` for NULL, a refused location or a failed HEAD (such a row's fetch fails anyway).
    pub fn versions_all(&self, uris: &[Option<&str>], settings: &FetchSettings) -> Vec<Option<String>> {
        let locations: Vec<Option<Location>> =
            uris.iter().map(|uri| uri.and_then(|uri| self.resolve(uri, settings).ok())).collect();
        let (deadline, concurrency) = (settings.deadline(), settings.concurrency);
        let work = async move {
            futures::stream::iter(locations.into_iter().map(|location| async move {
                let head = async {
                    match location? {
                        Location::Local(path) => {
                            let meta = tokio::fs::metadata(&path).await.ok()?;
                            let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
                            Some(format!("{} bytes, modified {}", meta.len(), modified.as_nanos()))
                        }
                        Location::Missing(_) => None,
                        Location::Remote(store, path) => Some(object_version(&store.head(&path).await.ok()?)),
                    }
                };
                tokio::time::timeout(deadline, head).await.ok().flatten()
            }))
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
        };
        let rows = uris.len();
        futures::executor::block_on(io_runtime().spawn(work)).unwrap_or_else(|_| vec![None; rows])
    }

    fn resolve(&self, uri: &str, settings: &FetchSettings) -> Result<Location, RowError> {
        let refuse = |message: String| RowError::new(Stage::Refused, message);
        let local = |path: PathBuf| {
            let path = if path.is_absolute() { path } else { settings.base_dir.join(path) };
            match settings.allowed.check_local(&path, &settings.base_dir) {
                Ok(Some(real)) => Ok(Location::Local(real)),
                Ok(None) => Ok(Location::Missing(path)),
                Err(message) => Err(refuse(format!("{uri}: {message}"))),
            }
        };
        if !uri.contains("://") {
            return local(PathBuf::from(uri));
        }
        let url = Url::parse(uri)
            .map_err(|error| RowError::new(Stage::Fetch, format!("{uri:?} is not a valid URI: {error}")))?;
        let scheme = url.scheme();
        if scheme == "file" {
            return local(url.to_file_path().map_err(|()| refuse(format!("{uri} is not a local file path")))?);
        }
        if !matches!(scheme, "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" | "http" | "https") {
            return Err(refuse(format!(
                "{uri}: the URI scheme {scheme}:// is not supported (use a path, file://, s3://, gs://, az:// or http(s)://)"
            )));
        }
        if matches!(scheme, "http" | "https") && !settings.allow_http {
            return Err(refuse(format!(
                "{uri}: http(s) image URIs are off; enable them with `SET lakecat.allow_http = true`"
            )));
        }
        settings.allowed.check_remote(&url).map_err(|message| refuse(format!("{uri}: {message}")))?;
        let root = format!("{scheme}://{}", url.authority());
        let store = {
            // Stores carry the timeout, retry and address settings, so those are part of the key.
            let key = format!("{root} {:?} {} {:?}", settings.timeout, settings.retries, settings.allowed);
            let mut stores = self.stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match stores.get(&key) {
                Some(store) => store.clone(),
                None => {
                    let store = build_store(scheme, &root, settings)
                        .map_err(|message| RowError::new(Stage::Fetch, format!("{uri}: {message}")))?;
                    stores.insert(key, store.clone());
                    store
                }
            }
        };
        let path = ObjectPath::from_url_path(url.path())
            .map_err(|error| RowError::new(Stage::Fetch, format!("{uri}: {error}")))?;
        Ok(Location::Remote(store, path))
    }
}

/// An object's version as its store reports it: the ETag, else the object version, else size
/// and modification time. What `image_version` returns and the bundle cache compares.
pub fn object_version(meta: &object_store::ObjectMeta) -> String {
    match (&meta.e_tag, &meta.version) {
        (Some(e_tag), _) => format!("etag {e_tag}"),
        (None, Some(version)) => format!("version {version}"),
        (None, None) => format!("{} bytes, modified {}", meta.size, meta.last_modified.to_rfc3339()),
    }
}

fn build_store(scheme: &str, root: &str, settings: &FetchSettings) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
    let retry = RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: MAX_BACKOFF, base: 2.0 },
        max_retries: settings.retries,
        retry_timeout: settings.deadline(),
    };
    // Set as configuration keys so that the builders keep what they read from the environment
    // (e.g. AWS_ALLOW_HTTP for a local endpoint). Their endpoints are the operator's
    // configuration, not table data: they are not address-checked.
    let timeout = (ClientConfigKey::Timeout, format!("{}ms", settings.timeout.as_millis().max(1)));
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(root)
                .with_config(object_store::aws::AmazonS3ConfigKey::Client(timeout.0), timeout.1)
                .with_retry(retry)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(root)
                .with_config(object_store::gcp::GoogleConfigKey::Client(timeout.0), timeout.1)
                .with_retry(retry)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(root)
                .with_config(object_store::azure::AzureConfigKey::Client(timeout.0), timeout.1)
                .with_retry(retry)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(root)
                .with_client_options(ClientOptions::new().with_allow_http(true).with_timeout(settings.timeout))
                .with_http_connector(GuardedConnector { allowed: settings.allowed.clone(), timeout: settings.timeout })
                .with_retry(retry)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("the URI scheme {other}:// is not supported")),
    };
    Ok(store)
}

/// Why a connection was not made: an address or redirect the allow-list refuses. Found in an
/// error's causes, it makes the row's error a `refused` one (not retried by a refresh).
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The HTTP client of `http(s)` image stores: names resolve through [`GuardedResolver`],
/// every redirect is checked like the first URL, no proxy hides where the connection goes,
/// and error responses reach `object_store` without their bodies.
#[derive(Debug)]
struct GuardedConnector {
    allowed: AllowList,
    timeout: Duration,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allowed = self.allowed.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                let error = Refusal(format!("more than {MAX_REDIRECTS} redirects"));
                return attempt.error(error);
            }
            let checked = match attempt.url().scheme() {
                "http" | "https" => allowed.check_remote(attempt.url()),
                other => Err(format!("{other}:// is not an image location")),
            };
            match checked {
                Ok(()) => attempt.follow(),
                Err(reason) => {
                    let error = Refusal(format!("redirected to {}: {reason}", attempt.url()));
                    attempt.error(error)
                }
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allowed: self.allowed.clone() }))
            .redirect(redirects)
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|error| object_store::Error::Generic { store: "HTTP", source: Box::new(error) })?;
        Ok(HttpClient::new(WithoutErrorBodies(client)))
    }
}

/// Resolves a host name and refuses it when any of its addresses is not public (loopback,
/// private, link-local, metadata…) unless `lakecat.allowed_locations` names the host itself.
/// Checking every answer, not just the first, keeps a name from mixing in an internal one.
struct GuardedResolver {
    allowed: AllowList,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed.names_host(&host) {
                for address in &addresses {
                    if let Some(reason) = refused_address(address.ip()) {
                        let message = format!(
                            "{host} resolves to {}, {reason}; name the host in lakecat.allowed_locations to fetch from it",
                            address.ip()
                        );
                        return Err(Box::new(Refusal(message)) as Box<dyn std::error::Error + Send + Sync>);
                    }
                }
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Passes responses through, dropping the body of every unsuccessful one: an internal
/// service's error page must not end up in a row's `error` (and so in a predictions table).
#[derive(Debug)]
struct WithoutErrorBodies(reqwest::Client);

#[async_trait::async_trait]
impl HttpService for WithoutErrorBodies {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = HttpService::call(&self.0, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let (parts, _body) = response.into_parts();
        Ok(HttpResponse::from_parts(parts, Bytes::new().into()))
    }
}

fn over_limit(what: &str, size: u64, limit: usize) -> String {
    format!("{what} is over lakecat.max_image_bytes ({size} bytes > {limit}); raise the setting to read it")
}

/// One fetch: `timeout` bounds a local read, `deadline` a remote fetch with all its retries.
/// At most `max_bytes` are read: a larger object is refused from its size, else while it
/// streams.
async fn fetch_one(
    uri: &str,
    location: Location,
    timeout: Duration,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Bytes, RowError> {
    let limit = if matches!(location, Location::Remote(..)) { deadline } else { timeout };
    let fetch = async {
        match location {
            Location::Missing(path) => {
                Err(RowError::new(Stage::Fetch, format!("{uri}: no such file ({})", path.display())))
            }
            Location::Local(path) => {
                let read = tokio::task::spawn_blocking(move || read_local(&path, max_bytes)).await;
                read.unwrap_or_else(|error| Err(RowError::new(Stage::Fetch, format!("the read failed: {error}"))))
                    .map_err(|error| RowError::new(error.stage, format!("{uri}: {}", error.message)))
            }
            Location::Remote(store, path) => fetch_remote(uri, &store, &path, max_bytes).await,
        }
    };
    match tokio::time::timeout(limit, fetch).await {
        Ok(result) => result,
        Err(_) => Err(RowError::new(Stage::Fetch, format!("{uri}: timed out after {limit:?}"))),
    }
}

/// Reads a regular file of at most `max_bytes`. It is opened without following a symlink
/// (the path is already canonical) and without blocking, so a FIFO or device swapped in is
/// refused by its type instead of hanging the thread.
fn read_local(path: &Path, max_bytes: usize) -> Result<Bytes, RowError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fetch_error = |message: String| RowError::new(Stage::Fetch, message);
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path).map_err(
            |error| match error.kind() {
                std::io::ErrorKind::NotFound => fetch_error(format!("no such file ({})", path.display())),
                _ => fetch_error(error.to_string()),
            },
        )?;
    let meta = file.metadata().map_err(|error| fetch_error(error.to_string()))?;
    if !meta.is_file() {
        return Err(RowError::new(Stage::Refused, format!("{} is not a regular file", path.display())));
    }
    if meta.len() > max_bytes as u64 {
        return Err(RowError::new(Stage::Refused, over_limit("the file", meta.len(), max_bytes)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read still stops at the limit.
    file.take(max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(|error| fetch_error(error.to_string()))?;
    if bytes.len() > max_bytes {
        return Err(RowError::new(Stage::Refused, over_limit("the file", bytes.len() as u64, max_bytes)));
    }
    Ok(Bytes::from(bytes))
}

async fn fetch_remote(
    uri: &str,
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    max_bytes: usize,
) -> Result<Bytes, RowError> {
    let failed = |error: &object_store::Error| {
        let stage = if has_cause::<Refusal>(error) { Stage::Refused } else { Stage::Fetch };
        RowError::new(stage, format!("{uri}: {}", with_causes(error)))
    };
    let result = match store.get_opts(path, object_store::GetOptions::default()).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(RowError::new(Stage::Fetch, format!("{uri}: no such object")));
        }
        Err(error) => return Err(failed(&error)),
    };
    // The size the store announced (Content-Length) is checked before any byte is read.
    if result.meta.size > max_bytes as u64 {
        return Err(RowError::new(
            Stage::Refused,
            format!("{uri}: {}", over_limit("the object", result.meta.size, max_bytes)),
        ));
    }
    let mut bytes = BytesMut::with_capacity(result.meta.size as usize);
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| failed(&error))?;
        if bytes.len() + chunk.len() > max_bytes {
            let read = (bytes.len() + chunk.len()) as u64;
            return Err(RowError::new(Stage::Refused, format!("{uri}: {}", over_limit("the object", read, max_bytes))));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// Whether an error of type `E` is among the error's causes.
fn has_cause<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.is::<E>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes: object_store's own message says "error sending request", the
/// cause says why (a timeout, a refused connection).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// lakecat's own I/O runtime; never dropped, so it is safe to use from any thread.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lakecat-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base_dir: &Path) -> FetchSettings {
        let base_dir = canonical_root(base_dir).unwrap();
        FetchSettings { concurrency: 4, ..FetchSettings::for_import(base_dir, AllowList::Default) }
    }

    fn error_of(result: &Option<Result<Bytes, RowError>>) -> String {
        result.as_ref().unwrap().as_ref().unwrap_err().to_string()
    }

    #[test]
    fn local_paths_relative_absolute_and_file_uris() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"abc").unwrap();
        let absolute = dir.path().join("a.bin").display().to_string();
        let file_uri = format!("file://{absolute}");
        let uris = [Some("a.bin"), Some(absolute.as_str()), Some(file_uri.as_str()), None, Some("missing.jpg")];
        let results = ImageFetcher::default().fetch_all(&uris, &settings(dir.path()));
        for result in &results[..3] {
            assert_eq!(result.as_ref().unwrap().as_ref().unwrap().as_ref(), b"abc");
        }
        assert!(results[3].is_none());
        let missing = error_of(&results[4]);
        assert!(missing.starts_with("fetch: missing.jpg: no such file"), "{missing}");
    }

    #[test]
    fn refuses_http_unless_enabled_and_unknown_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = ImageFetcher::default();
        let results =
            fetcher.fetch_all(&[Some("http://169.254.169.254/latest"), Some("ftp://x/y")], &settings(dir.path()));
        let http = error_of(&results[0]);
        assert!(http.starts_with("refused: ") && http.contains("SET lakecat.allow_http = true"), "{http}");
        let ftp = error_of(&results[1]);
        assert!(ftp.contains("ftp:// is not supported"), "{ftp}");
    }

    #[test]
    fn fifos_devices_and_oversized_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jpg");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        std::fs::write(dir.path().join("big.jpg"), vec![0u8; 2048]).unwrap();
        std::fs::write(dir.path().join("small.jpg"), vec![7u8; 1024]).unwrap();
        let settings = FetchSettings { max_bytes: 1024, ..settings(dir.path()) };
        let started = std::time::Instant::now();
        let results =
            ImageFetcher::default().fetch_all(&[Some("pipe.jpg"), Some("big.jpg"), Some("small.jpg")], &settings);
        assert!(started.elapsed() < Duration::from_secs(5), "a FIFO must not block the fetch");
        let fifo = error_of(&results[0]);
        assert!(fifo.starts_with("refused: pipe.jpg:") && fifo.ends_with("is not a regular file"), "{fifo}");
        let big = error_of(&results[1]);
        assert!(big.contains("over lakecat.max_image_bytes (2048 bytes > 1024)"), "{big}");
        assert_eq!(results[2].as_ref().unwrap().as_ref().unwrap().len(), 1024);
    }

    #[test]
    fn binary_images_over_the_limit_are_refused() {
        let column: ArrayRef =
            Arc::new(arrow::array::BinaryArray::from(vec![Some(&[1u8; 10][..]), Some(&[1u8; 11][..]), None]));
        let dir = tempfile::tempdir().unwrap();
        let settings = FetchSettings { max_bytes: 10, ..settings(dir.path()) };
        let images = ImageFetcher::default().images(&column, &settings).unwrap();
        assert_eq!(images[0].as_ref().unwrap().as_deref().map(<[u8]>::len), Some(10));
        let error = images[1].as_ref().unwrap_err().to_string();
        assert!(error.starts_with("refused: the image is over lakecat.max_image_bytes (11 bytes > 10)"), "{error}");
        assert!(images[2].as_ref().unwrap().is_none());
    }
}
