//! Finding and loading ONNX Runtime. `ort` is built with `load-dynamic`: the shared library comes
//! from the `onnxruntime` (or `onnxruntime-gpu`) PyPI wheel, which `scripts/setup.sh` installs
//! into the project's `.venv`. Nobody has to export anything: the library is looked up in a
//! fixed order, and a clear message says how to install it when it is nowhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::{Error, Result};

/// The ONNX Runtime release `scripts/setup.sh` installs; ort's `api-31` needs at least 1.31.
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

const LIBRARY_PREFIX: &str = "libonnxruntime.so";

/// Where ONNX Runtime is looked for, first match wins:
/// 1. `ORT_DYLIB_PATH` (the variable `ort` itself reads), when set;
/// 2. `.venv/lib/python3*/site-packages/onnxruntime/capi/` in the current directory or any
///    directory above it, then beside the running executable or above it;
/// 3. the `onnxruntime` package of the `python3` on `PATH`.
pub fn locate_library() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Runtime(format!("ORT_DYLIB_PATH points to {}, which is not a file", path.display())))
        };
    }
    if let Some(found) =
        site_packages().into_iter().find_map(|packages| library_in_package(&packages.join("onnxruntime")))
    {
        return Ok(found);
    }
    if let Some(found) = library_of_system_python() {
        return Ok(found);
    }
    Err(Error::Runtime(format!(
        "the ONNX Runtime library ({LIBRARY_PREFIX}) was not found. Run `scripts/setup.sh` in the lakecat \
         checkout (it installs the onnxruntime {ONNXRUNTIME_VERSION} wheel into .venv), or \
         `pip install onnxruntime=={ONNXRUNTIME_VERSION}`, or set ORT_DYLIB_PATH to the library file"
    )))
}

/// The `site-packages` folders of `.venv` in the current directory or any directory above it,
/// then beside the running executable or above it: where `scripts/setup.sh` installs.
fn site_packages() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    let mut found = Vec::new();
    for root in roots {
        let Ok(pythons) = std::fs::read_dir(root.join(".venv/lib")) else { continue };
        let mut pythons: Vec<PathBuf> = pythons
            .flatten()
            .filter(|python| python.file_name().to_string_lossy().starts_with("python3"))
            .map(|python| python.path().join("site-packages"))
            .collect();
        pythons.sort();
        found.extend(pythons);
    }
    found
}

/// A file installed by `scripts/setup.sh` (e.g. a wheel's data file), by its path inside
/// `site-packages`, searched as for the ONNX Runtime library.
pub fn find_installed(relative: &str) -> Option<PathBuf> {
    site_packages().into_iter().map(|packages| packages.join(relative)).find(|path| path.is_file())
}

fn library_of_system_python() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    library_in_package(Path::new(String::from_utf8_lossy(&output.stdout).trim()))
}

/// The versioned library file in a wheel's `capi/` folder (`libonnxruntime.so.1.31.1`).
fn library_in_package(package: &Path) -> Option<PathBuf> {
    let capi = package.join("capi");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(LIBRARY_PREFIX)))
        .collect();
    candidates.sort();
    candidates.pop()
}

/// The process-wide ONNX Runtime environment, loaded on first use. A failure is remembered so
/// every later attempt gives the same message.
pub fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = locate_library().map_err(|error| match error {
                Error::Runtime(message) => message,
                other => other.to_string(),
            })?;
            let builder = ort::init_from(&path).map_err(|error| format!("cannot load {}: {error}", path.display()))?;
            builder
                .with_name("lakecat")
                .build()
                .map_err(|error| format!("cannot start ONNX Runtime from {}: {error}", path.display()))
        })
        .as_ref()
        .map_err(|message| Error::Runtime(message.clone()))
}
