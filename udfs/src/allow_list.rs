//! Which image locations may be fetched. A table is data, not trusted code: a row holding
//! `file:///etc/passwd`, `../../secrets` or a cloud metadata address must be refused, not read.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use url::Url;

/// Where images may come from (`lakecat.allowed_locations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// No list configured: local files under the image root, any `s3://`, `gs://` or `az://`
    /// location (the credentials bound those), and `http(s)://` hosts other than link-local and
    /// cloud-metadata addresses.
    Default,
    /// Only locations under one of these prefixes.
    Prefixes(Vec<Prefix>),
    /// Everything: for inputs the user named explicitly (e.g. an import's image folder).
    Any,
}

/// One allowed prefix: a local directory or a remote `scheme://authority/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefix {
    Local(PathBuf),
    Remote { scheme: String, authority: String, segments: Vec<String> },
}

impl AllowList {
    /// Parses a comma-separated list of prefixes (local directories, `file://`, or
    /// `scheme://authority/path`); relative directories are taken from `base_dir`. An empty
    /// list is [`AllowList::Default`].
    pub fn parse(list: &str, base_dir: &Path) -> Result<Self, String> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
        if entries.is_empty() {
            return Ok(Self::Default);
        }
        let prefixes = entries
            .into_iter()
            .map(|entry| {
                if !entry.contains("://") {
                    return Ok(Prefix::Local(normalize(&base_dir.join(entry))));
                }
                let url = Url::parse(entry)
                    .map_err(|error| format!("lakecat.allowed_locations: {entry:?} is not a valid URI: {error}"))?;
                if url.scheme() == "file" {
                    let path = url
                        .to_file_path()
                        .map_err(|()| format!("lakecat.allowed_locations: {entry} is not a local path"))?;
                    return Ok(Prefix::Local(normalize(&path)));
                }
                Ok(Prefix::Remote {
                    scheme: url.scheme().to_string(),
                    authority: url.authority().to_string(),
                    segments: segments(&url),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self::Prefixes(prefixes))
    }

    /// Checks a local file (made absolute by the caller); `Err` says why it is refused.
    pub fn check_local(&self, path: &Path, base_dir: &Path) -> Result<PathBuf, String> {
        let path = normalize(path);
        let allowed = match self {
            Self::Any => true,
            Self::Default => path.starts_with(normalize(base_dir)),
            Self::Prefixes(prefixes) => prefixes.iter().any(|prefix| match prefix {
                Prefix::Local(dir) => path.starts_with(dir),
                Prefix::Remote { .. } => false,
            }),
        };
        if allowed {
            Ok(path)
        } else {
            Err(match self {
                Self::Default => format!(
                    "refused: {} is outside the image root ({}); set lakecat.image_root or lakecat.allowed_locations",
                    path.display(),
                    base_dir.display()
                ),
                _ => format!("refused: {} is not under lakecat.allowed_locations", path.display()),
            })
        }
    }

    /// Checks a remote URI; `Err` says why it is refused.
    pub fn check_remote(&self, url: &Url) -> Result<(), String> {
        match self {
            Self::Any => Ok(()),
            Self::Default if matches!(url.scheme(), "http" | "https") && is_metadata_host(url) => Err(format!(
                "refused: {} is a link-local or cloud metadata address; list it in lakecat.allowed_locations to fetch from it",
                url.host_str().unwrap_or_default()
            )),
            Self::Default => Ok(()),
            Self::Prefixes(prefixes) => {
                let path = segments(url);
                let under = |prefix: &Prefix| match prefix {
                    Prefix::Remote { scheme, authority, segments } => {
                        scheme == url.scheme() && authority == url.authority() && path.starts_with(segments)
                    }
                    Prefix::Local(_) => false,
                };
                if prefixes.iter().any(under) {
                    Ok(())
                } else {
                    Err("refused: not under lakecat.allowed_locations".to_string())
                }
            }
        }
    }
}

/// The path's segments with empty ones (trailing or doubled slashes) left out.
fn segments(url: &Url) -> Vec<String> {
    url.path_segments()
        .map(|segments| segments.filter(|segment| !segment.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Resolves `.` and `..` without touching the filesystem, so `images/../../etc/passwd` is
/// checked as the file it names.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other.as_os_str()),
        }
    }
    normal
}

fn is_metadata_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_link_local(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_link_local(IpAddr::V6(ip)),
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("metadata.google.internal") || domain.eq_ignore_ascii_case("metadata")
        }
        None => false,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80 || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn default_keeps_local_files_under_the_root() {
        let root = Path::new("/data/images");
        let list = AllowList::parse("", root).unwrap();
        assert_eq!(list, AllowList::Default);
        assert!(list.check_local(&root.join("a/b.jpg"), root).is_ok());
        let traversal = list.check_local(&root.join("../../etc/passwd"), root).unwrap_err();
        assert!(traversal.contains("/etc/passwd is outside the image root"), "{traversal}");
        assert!(list.check_local(Path::new("/etc/passwd"), root).is_err());
        assert!(list.check_local(Path::new("/data/images2/x.jpg"), root).is_err());
    }

    #[test]
    fn default_refuses_metadata_addresses_only() {
        let list = AllowList::Default;
        assert!(list.check_remote(&url("s3://bucket/any/key.jpg")).is_ok());
        assert!(list.check_remote(&url("https://cdn.example.com/a.jpg")).is_ok());
        for refused in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert!(list.check_remote(&url(refused)).unwrap_err().starts_with("refused"), "{refused}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let list = AllowList::parse("s3://bucket/images, /srv/img ,file:///mnt/pics/", Path::new("/")).unwrap();
        assert!(list.check_remote(&url("s3://bucket/images/a/b.jpg")).is_ok());
        assert!(list.check_remote(&url("s3://bucket/images2/a.jpg")).is_err());
        assert!(list.check_remote(&url("s3://other/images/a.jpg")).is_err());
        assert!(list.check_remote(&url("s3://bucket/images/../secrets/key")).is_err());
        assert!(list.check_remote(&url("http://169.254.169.254/images/x")).is_err());
        assert!(list.check_local(Path::new("/srv/img/x.jpg"), Path::new("/")).is_ok());
        assert!(list.check_local(Path::new("/mnt/pics/x.jpg"), Path::new("/")).is_ok());
        assert!(list.check_local(Path::new("/srv/img/../../etc/passwd"), Path::new("/")).is_err());
        assert!(AllowList::parse("s3://[bad", Path::new("/")).is_err());
    }
}
