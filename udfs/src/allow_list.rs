//! Which image locations may be fetched. A table is data, not trusted code: a row holding
//! `file:///etc/passwd`, `../../secrets`, a symlink out of the image root or a cloud metadata
//! address must be refused, not read. Local paths are checked after every symlink is resolved;
//! network addresses are checked where the connection is made ([`crate::fetch`] calls
//! [`refused_address`] for every address a name resolves to and every redirect).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use url::Url;

/// Where images may come from (`lakecat.allowed_locations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// No list configured: local files under the image root, any `s3://`, `gs://` or `az://`
    /// location (the credentials bound those), and `http(s)://` hosts on public addresses.
    Default,
    /// Only locations under one of these prefixes; `setting` is where they were given (named
    /// in refusals).
    Prefixes { prefixes: Vec<Prefix>, setting: &'static str },
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
    /// `scheme://authority/path`); relative directories are taken from `base_dir`, and local
    /// prefixes are canonical (symlinks resolved) where they exist. An empty list is
    /// [`AllowList::Default`].
    pub fn parse(list: &str, base_dir: &Path) -> Result<Self, String> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
        if entries.is_empty() {
            return Ok(Self::Default);
        }
        let local = |path: PathBuf| {
            let path = normalize(&base_dir.join(path));
            Prefix::Local(std::fs::canonicalize(&path).unwrap_or(path))
        };
        let prefixes = entries
            .into_iter()
            .map(|entry| {
                if !entry.contains("://") {
                    return Ok(local(PathBuf::from(entry)));
                }
                let url = Url::parse(entry)
                    .map_err(|error| format!("lakecat.allowed_locations: {entry:?} is not a valid URI: {error}"))?;
                if url.scheme() == "file" {
                    let path = url
                        .to_file_path()
                        .map_err(|()| format!("lakecat.allowed_locations: {entry} is not a local path"))?;
                    return Ok(local(path));
                }
                Ok(Prefix::Remote {
                    scheme: url.scheme().to_string(),
                    authority: url.authority().to_string(),
                    segments: segments(&url),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self::Prefixes { prefixes, setting: "lakecat.allowed_locations" })
    }

    /// The same list, naming `setting` (e.g. a command-line flag) when it refuses.
    pub fn given_by(self, name: &'static str) -> Self {
        match self {
            Self::Prefixes { prefixes, .. } => Self::Prefixes { prefixes, setting: name },
            other => other,
        }
    }

    /// Checks a local file (made absolute by the caller) against a canonical `root`: its
    /// canonical path (every symlink resolved) must lie under the root or an allowed prefix,
    /// so a link out of the root is refused like `../`. `Err` says why it is refused; a file
    /// that does not exist is `Ok(None)` (the fetch reports it).
    pub fn check_local(&self, path: &Path, root: &Path) -> Result<Option<PathBuf>, String> {
        let named = normalize(path);
        let real = match std::fs::canonicalize(&named) {
            Ok(real) => real,
            // Refuse what lies outside by name before saying whether it exists.
            Err(_) if !self.allows_local(&named, root) => return Err(self.outside(&named, &named, root)),
            Err(_) => return Ok(None),
        };
        if self.allows_local(&real, root) { Ok(Some(real)) } else { Err(self.outside(&named, &real, root)) }
    }

    fn allows_local(&self, path: &Path, root: &Path) -> bool {
        match self {
            Self::Any => true,
            // A root of `/` would allow every file: see `canonical_root`.
            Self::Default => root.parent().is_some() && path.starts_with(root),
            Self::Prefixes { prefixes, .. } => prefixes.iter().any(|prefix| match prefix {
                Prefix::Local(dir) => path.starts_with(dir),
                Prefix::Remote { .. } => false,
            }),
        }
    }

    fn outside(&self, named: &Path, real: &Path, root: &Path) -> String {
        let resolved = if named == real { String::new() } else { format!(" (a link to {})", real.display()) };
        match self {
            Self::Default if root.parent().is_none() => format!(
                "{}: local images are read only under lakecat.image_root, and the image root is / (the \
                 current directory); set lakecat.image_root to the images folder",
                named.display()
            ),
            Self::Default => format!(
                "{}{resolved} is outside the image root ({}); set lakecat.image_root or lakecat.allowed_locations",
                named.display(),
                root.display()
            ),
            Self::Prefixes { setting, .. } => format!("{}{resolved} is not under {setting}", named.display()),
            Self::Any => format!("{}{resolved} is refused", named.display()),
        }
    }

    /// Checks a remote URI by its text; `Err` says why it is refused. Where an `http(s)` name
    /// leads is checked again at connect time ([`AllowList::names_host`], [`refused_address`]).
    pub fn check_remote(&self, url: &Url) -> Result<(), String> {
        let http = matches!(url.scheme(), "http" | "https");
        match self {
            Self::Any => Ok(()),
            Self::Default if http => match refused_host(url) {
                Some(reason) => Err(format!(
                    "{} is {reason}; list it in lakecat.allowed_locations to fetch from it",
                    url.host_str().unwrap_or_default()
                )),
                None => Ok(()),
            },
            Self::Default => Ok(()),
            Self::Prefixes { prefixes, setting } => {
                let path = segments(url);
                let under = |prefix: &Prefix| match prefix {
                    Prefix::Remote { scheme, authority, segments } => {
                        scheme == url.scheme() && authority == url.authority() && path.starts_with(segments)
                    }
                    Prefix::Local(_) => false,
                };
                if !prefixes.iter().any(under) {
                    return Err(format!("not under {setting}"));
                }
                match refused_host(url) {
                    Some(reason) if http && !self.names_host(url.host_str().unwrap_or_default()) => Err(format!(
                        "{} is {reason}; name its host in {setting} to fetch from it",
                        url.host_str().unwrap_or_default()
                    )),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether a prefix names this host itself: then its addresses are allowed even when they
    /// are loopback or private (an image server of the operator's own network).
    pub fn names_host(&self, host: &str) -> bool {
        let host = plain_host(host);
        match self {
            Self::Any => true,
            Self::Default => false,
            Self::Prefixes { prefixes, .. } => prefixes.iter().any(|prefix| match prefix {
                Prefix::Remote { authority, .. } => {
                    Url::parse(&format!("http://{authority}/")).ok().and_then(|url| url.host_str().map(plain_host))
                        == Some(host.clone())
                }
                Prefix::Local(_) => false,
            }),
        }
    }
}

/// The image root as a canonical directory (symlinks resolved), so that `.` or a link cannot
/// widen it. `Err` when it does not exist, is not a directory, or is `/` (every file).
pub fn canonical_root(root: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(root).map_err(|error| format!("{}: {error}", root.display()))?;
    if !real.is_dir() {
        return Err(format!("{} is not a directory", real.display()));
    }
    if real.parent().is_none() {
        return Err(format!(
            "{} is /, which would allow every file; name the images folder (or list / in lakecat.allowed_locations)",
            root.display()
        ));
    }
    Ok(real)
}

/// A host name as compared: lower case, without the trailing dot of a fully qualified name.
fn plain_host(host: &str) -> String {
    host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Host names of cloud metadata services (compared without a trailing dot).
const METADATA_NAMES: [&str; 7] = [
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Why a URL's host is refused by its text: a metadata name or a non-public address literal.
fn refused_host(url: &Url) -> Option<&'static str> {
    match url.host()? {
        url::Host::Domain(domain) => {
            let domain = plain_host(domain);
            METADATA_NAMES.contains(&domain.as_str()).then_some("a cloud metadata host")
        }
        url::Host::Ipv4(ip) => refused_address(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => refused_address(IpAddr::V6(ip)),
    }
}

/// Why an address may not be fetched from table data, or `None` for a public address:
/// loopback, private, shared (CGNAT), link-local, unique-local, multicast, reserved and cloud
/// metadata addresses, and the IPv6 forms that embed such an IPv4 address (mapped, compatible,
/// NAT64, 6to4).
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refused_v4(ip),
        IpAddr::V6(ip) => refused_v6(ip),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    // Azure's wire server and Alibaba's metadata service sit on addresses that look ordinary.
    if ip == Ipv4Addr::new(168, 63, 129, 16) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        return Some("a cloud metadata address");
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local (cloud metadata) address")
    } else if ip.is_private() {
        Some("a private address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else if a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("a reserved address")
    } else if (a, b, c) == (192, 0, 0) || (a == 198 && (b & 0xfe) == 18) || ip.is_documentation() {
        Some("a special-purpose address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Some("a reserved address");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible) reach the IPv4 address.
    if let Some(v4) = ip.to_ipv4() {
        return refused_v4(v4).or(Some("an IPv4-compatible address"));
    }
    match segments[0] {
        0xfe80..=0xfebf => Some("a link-local address"),
        0xfec0..=0xfeff => Some("a site-local address"),
        0xfc00..=0xfdff => Some("a unique-local (private) address"),
        // NAT64 (64:ff9b::/96 reaches the IPv4 address; 64:ff9b:1::/48 is for local use).
        0x0064 if segments[1] == 0xff9b => {
            if segments[2] == 1 {
                Some("a local NAT64 address")
            } else {
                refused_v4(embedded(segments[6], segments[7]))
            }
        }
        // 6to4 embeds the IPv4 address after 2002:, Teredo hides its relay's.
        0x2002 => refused_v4(embedded(segments[1], segments[2])),
        0x2001 if segments[1] == 0 => Some("a Teredo address"),
        0x2001 if segments[1] == 0x0db8 => Some("a documentation address"),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn default_keeps_local_files_under_the_canonical_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path()).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/b.jpg"), b"x").unwrap();
        let list = AllowList::parse("", &root).unwrap();
        assert_eq!(list, AllowList::Default);
        assert_eq!(list.check_local(&root.join("a/b.jpg"), &root).unwrap(), Some(root.join("a/b.jpg")));
        assert_eq!(list.check_local(&root.join("a/missing.jpg"), &root).unwrap(), None);
        let traversal = list.check_local(&root.join("../../etc/passwd"), &root).unwrap_err();
        assert!(traversal.contains("/etc/passwd is outside the image root"), "{traversal}");
        assert!(list.check_local(Path::new("/etc/passwd"), &root).is_err());
        let sibling = PathBuf::from(format!("{}2/x.jpg", root.display()));
        assert!(list.check_local(&sibling, &root).is_err());
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"token").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("file-link.jpg")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dir-link")).unwrap();
        std::fs::write(root.join("inside.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("inside.jpg"), root.join("inner-link.jpg")).unwrap();
        let list = AllowList::Default;
        for escape in ["file-link.jpg", "dir-link/secret"] {
            let error = list.check_local(&root.join(escape), &root).unwrap_err();
            assert!(error.contains("(a link to ") && error.contains("is outside the image root"), "{error}");
        }
        assert_eq!(list.check_local(&root.join("inner-link.jpg"), &root).unwrap(), Some(root.join("inside.jpg")));
    }

    #[test]
    fn a_root_of_slash_or_dot_cannot_widen_the_root() {
        let error = canonical_root(Path::new("/")).unwrap_err();
        assert!(error.contains("would allow every file"), "{error}");
        // `.` is the canonical current directory, not a prefix of every path.
        let dot = canonical_root(Path::new(".")).unwrap();
        assert!(dot.is_absolute());
        assert!(AllowList::Default.check_local(Path::new("/etc/passwd"), &dot).is_err());
        // A root of `/` (the process started from /, no image_root) allows no local file.
        let error = AllowList::Default.check_local(Path::new("/etc/passwd"), Path::new("/")).unwrap_err();
        assert!(error.contains("the image root is /"), "{error}");
        assert!(canonical_root(Path::new("/nonexistent/images")).is_err());
    }

    #[test]
    fn addresses_are_classified_in_every_spelling() {
        let refused = [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.170.2",
            "100.64.0.1",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.192",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "fec0::1",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "ff02::1",
        ];
        for address in refused {
            let ip: IpAddr = address.parse().unwrap();
            assert!(refused_address(ip).is_some(), "{address} should be refused");
        }
        for address in ["8.8.8.8", "151.101.1.69", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(refused_address(ip), None, "{address} is public");
        }
    }

    #[test]
    fn default_refuses_metadata_and_private_hosts_by_their_text() {
        let list = AllowList::Default;
        assert!(list.check_remote(&url("s3://bucket/any/key.jpg")).is_ok());
        assert!(list.check_remote(&url("https://cdn.example.com/a.jpg")).is_ok());
        for refused in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/latest",
            "http://[::169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://2852039166/",
            "http://168.63.129.16/machine",
            "http://100.100.100.200/latest",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata.google.internal./computeMetadata/v1/",
            "http://METADATA/",
            "http://127.0.0.1:8080/x.jpg",
        ] {
            assert!(list.check_remote(&url(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_and_name_hosts() {
        let list = AllowList::parse(
            "s3://bucket/images, /srv/img ,file:///mnt/pics/, http://127.0.0.1:9000/img, http://Images.Local/",
            Path::new("/"),
        )
        .unwrap();
        assert!(list.check_remote(&url("s3://bucket/images/a/b.jpg")).is_ok());
        assert!(list.check_remote(&url("s3://bucket/images2/a.jpg")).is_err());
        assert!(list.check_remote(&url("s3://other/images/a.jpg")).is_err());
        assert!(list.check_remote(&url("s3://bucket/images/../secrets/key")).is_err());
        assert!(list.check_remote(&url("http://169.254.169.254/images/x")).is_err());
        // The operator named 127.0.0.1 itself: its loopback address is allowed.
        assert!(list.check_remote(&url("http://127.0.0.1:9000/img/a.jpg")).is_ok());
        assert!(list.names_host("127.0.0.1") && list.names_host("images.local.") && !list.names_host("localhost"));
        assert!(list.check_local(Path::new("/srv/img/x.jpg"), Path::new("/")).is_ok());
        assert!(list.check_local(Path::new("/mnt/pics/x.jpg"), Path::new("/")).is_ok());
        assert!(list.check_local(Path::new("/srv/img/../../etc/passwd"), Path::new("/")).is_err());
        assert!(AllowList::parse("s3://[bad", Path::new("/")).is_err());
    }
}
