//! Fetching images named by URI: local paths and `file://` from the filesystem, `s3://`,
//! `gs://` and `az://` through `object_store` with credentials from the usual environment
//! variables, `http(s)://` only when the session allows it, and nothing outside the allow-list.
//! Fetches of one batch run concurrently (bounded) on a dedicated I/O runtime; each request has
//! a timeout and transient failures (5xx, 429, timeouts, dropped connections) are retried with
//! exponential backoff by `object_store`. A failed fetch is that row's error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;

use crate::allow_list::AllowList;
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
    /// Relative paths are resolved against this directory.
    pub base_dir: PathBuf,
    pub allowed: AllowList,
}

/// The longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl FetchSettings {
    /// The settings of a session; `Err` when `lakecat.allowed_locations` does not parse.
    pub fn from_options(options: &LakecatOptions) -> Result<Self, String> {
        let base_dir = if options.image_root.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&options.image_root)
        };
        Ok(Self {
            concurrency: options.fetch_concurrency,
            timeout: Duration::from_secs_f64(options.fetch_timeout_secs.max(0.001)),
            retries: options.fetch_retries,
            allow_http: options.allow_http,
            allowed: AllowList::parse(&options.allowed_locations, &base_dir)?,
            base_dir,
        })
    }

    /// Settings for locations the user named explicitly (an import's CSV and image folder):
    /// everything allowed, relative paths from `base_dir`.
    pub fn trusted(base_dir: PathBuf) -> Self {
        Self {
            concurrency: 32,
            timeout: Duration::from_secs(30),
            retries: 3,
            allow_http: false,
            base_dir,
            allowed: AllowList::Any,
        }
    }

    /// The most one fetch may take: every attempt plus the pauses between them.
    fn deadline(&self) -> Duration {
        self.timeout * (self.retries as u32 + 1) + MAX_BACKOFF * self.retries as u32
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
    Local(PathBuf),
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
    /// location strings (a failed fetch is that row's error). NULL stays `None`.
    pub fn images<'a>(
        &self,
        column: &'a ArrayRef,
        settings: &FetchSettings,
    ) -> datafusion::error::Result<Vec<Result<Option<ImageBytes<'a>>, RowError>>> {
        Ok(match column.data_type() {
            data_type if is_bytes(data_type) => {
                byte_values(column)?.into_iter().map(|value| Ok(value.map(ImageBytes::Borrowed))).collect()
            }
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
        let (timeout, deadline) = (settings.timeout, settings.deadline());
        let concurrency = settings.concurrency.max(1);
        let work = async move {
            futures::stream::iter(locations.into_iter().map(|location| async move {
                match location {
                    None => None,
                    Some(Err(error)) => Some(Err(error)),
                    Some(Ok((uri, location))) => Some(fetch_one(&uri, location, timeout, deadline).await),
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
        let deadline = settings.deadline();
        let concurrency = settings.concurrency.max(1);
        let work = async move {
            futures::stream::iter(locations.into_iter().map(|location| async move {
                let head = async {
                    match location? {
                        Location::Local(path) => {
                            let meta = tokio::fs::metadata(&path).await.ok()?;
                            let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
                            Some(format!("{} bytes, modified {}", meta.len(), modified.as_nanos()))
                        }
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
        let refuse = |message: String| RowError::new(Stage::Fetch, message);
        let local = |path: PathBuf| {
            let path = if path.is_absolute() { path } else { settings.base_dir.join(path) };
            let checked = settings.allowed.check_local(&path, &settings.base_dir);
            checked.map(Location::Local).map_err(|message| refuse(format!("{uri}: {message}")))
        };
        if !uri.contains("://") {
            return local(PathBuf::from(uri));
        }
        let url = Url::parse(uri).map_err(|error| refuse(format!("{uri:?} is not a valid URI: {error}")))?;
        let scheme = url.scheme();
        if scheme == "file" {
            return local(url.to_file_path().map_err(|()| refuse(format!("{uri} is not a local file path")))?);
        }
        if matches!(scheme, "http" | "https") && !settings.allow_http {
            return Err(refuse(format!(
                "{uri}: http(s) image URIs are off; enable them with `SET lakecat.allow_http = true`"
            )));
        }
        settings.allowed.check_remote(&url).map_err(|message| refuse(format!("{uri}: {message}")))?;
        let root = format!("{scheme}://{}", url.authority());
        let store = {
            // Stores carry the timeout and retry settings, so those are part of the key.
            let key = format!("{root} {:?} {}", settings.timeout, settings.retries);
            let mut stores = self.stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match stores.get(&key) {
                Some(store) => store.clone(),
                None => {
                    let store =
                        build_store(scheme, &root, settings).map_err(|message| refuse(format!("{uri}: {message}")))?;
                    stores.insert(key, store.clone());
                    store
                }
            }
        };
        let path = ObjectPath::from_url_path(url.path()).map_err(|error| refuse(format!("{uri}: {error}")))?;
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
    // (e.g. AWS_ALLOW_HTTP for a local endpoint).
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
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(true).with_timeout(settings.timeout),
                )
                .with_retry(retry)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => {
            return Err(format!(
                "the URI scheme {other}:// is not supported (use a path, file://, s3://, gs://, az:// or http(s)://)"
            ));
        }
    };
    Ok(store)
}

/// One fetch: `timeout` bounds a local read, `deadline` a remote fetch with all its retries.
async fn fetch_one(uri: &str, location: Location, timeout: Duration, deadline: Duration) -> Result<Bytes, RowError> {
    let limit = if matches!(location, Location::Local(_)) { timeout } else { deadline };
    let fetch = async {
        match location {
            Location::Local(path) => {
                tokio::fs::read(&path).await.map(Bytes::from).map_err(|error| match error.kind() {
                    std::io::ErrorKind::NotFound => format!("{uri}: no such file ({})", path.display()),
                    _ => format!("{uri}: {error}"),
                })
            }
            Location::Remote(store, path) => match store.get(&path).await {
                Ok(result) => result.bytes().await.map_err(|error| format!("{uri}: {}", with_causes(&error))),
                Err(object_store::Error::NotFound { .. }) => Err(format!("{uri}: no such object")),
                Err(error) => Err(format!("{uri}: {}", with_causes(&error))),
            },
        }
    };
    match tokio::time::timeout(limit, fetch).await {
        Ok(result) => result.map_err(|message| RowError::new(Stage::Fetch, message)),
        Err(_) => Err(RowError::new(Stage::Fetch, format!("{uri}: timed out after {limit:?}"))),
    }
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

    fn settings(base_dir: PathBuf) -> FetchSettings {
        FetchSettings { concurrency: 4, ..FetchSettings::trusted(base_dir) }
    }

    #[test]
    fn local_paths_relative_absolute_and_file_uris() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"abc").unwrap();
        let absolute = dir.path().join("a.bin").display().to_string();
        let file_uri = format!("file://{absolute}");
        let uris = [Some("a.bin"), Some(absolute.as_str()), Some(file_uri.as_str()), None, Some("missing.jpg")];
        let results = ImageFetcher::default().fetch_all(&uris, &settings(dir.path().to_path_buf()));
        for result in &results[..3] {
            assert_eq!(result.as_ref().unwrap().as_ref().unwrap().as_ref(), b"abc");
        }
        assert!(results[3].is_none());
        let missing = results[4].as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(missing.starts_with("fetch: missing.jpg: no such file"), "{missing}");
    }

    #[test]
    fn refuses_http_unless_enabled_and_unknown_schemes() {
        let fetcher = ImageFetcher::default();
        let results = fetcher
            .fetch_all(&[Some("http://169.254.169.254/latest"), Some("ftp://x/y")], &settings(PathBuf::from(".")));
        let http = results[0].as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(http.contains("SET lakecat.allow_http = true"), "{http}");
        let ftp = results[1].as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(ftp.contains("ftp:// is not supported"), "{ftp}");
    }
}
