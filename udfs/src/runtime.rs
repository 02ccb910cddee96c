//! Finding and loading ONNX Runtime. `ort` is built with `load-dynamic`: the shared library comes
//! from the `onnxruntime` (or `onnxruntime-gpu`) PyPI wheel, which `scripts/setup.sh` installs
//! into the project's `.venv`. Nobody has to export anything: the library is looked up in a
//! fixed order, and a clear message says how to install it when it is nowhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::ExecutionProvider as _;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

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

/// The library `environment` loaded, once it has.
static LOADED: OnceLock<PathBuf> = OnceLock::new();

/// Which ONNX Runtime library is loaded: its path and, when it came from a PyPI wheel, the
/// package and version (`onnxruntime` is the CPU build, `onnxruntime-gpu` the CUDA one).
pub fn loaded_library() -> String {
    let Some(path) = LOADED.get() else { return "no ONNX Runtime library loaded yet".into() };
    let wheel = path.ancestors().nth(3).and_then(|site_packages| {
        let entries = std::fs::read_dir(site_packages).ok()?;
        entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).find_map(|name| {
            let stem = name.strip_suffix(".dist-info")?;
            let (package, version) = stem.split_once('-')?;
            package.starts_with("onnxruntime").then(|| format!("{} {version}", package.replace('_', "-")))
        })
    });
    match wheel {
        Some(wheel) => format!("{} (PyPI package {wheel})", path.display()),
        None => path.display().to_string(),
    }
}

/// Which ONNX Runtime execution provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Device {
    /// CUDA when it can be registered, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA or fail.
    Cuda,
}

/// A session opened by [`open_session`], and where it runs.
#[derive(Debug)]
pub struct OpenedSession {
    pub session: Session,
    /// `CUDAExecutionProvider` or `CPUExecutionProvider`.
    pub provider: &'static str,
    /// Why CUDA is not in use when it was asked for with [`Device::Auto`].
    pub provider_note: Option<String>,
}

/// Opens an ONNX graph the one way lakecat opens every session (scoring and training's
/// feature extraction alike): every graph optimisation, idle threads that do not spin (they
/// would take the cores that DataFusion's partitions and the training loop use to decode and
/// resize), `intra_threads` when given, and CUDA as `device` says. With [`Device::Auto`] a
/// CUDA failure falls back to the CPU and says why; with [`Device::Cuda`] it is an error that
/// names the library loaded and how to get the GPU build.
pub fn open_session(model: &[u8], device: Device, intra_threads: Option<usize>) -> Result<OpenedSession> {
    let environment = environment()?;
    let failed = |what: &str, error: &dyn std::fmt::Display| Error::Runtime(format!("{what}: {error}"));
    let mut builder = Session::builder(environment).map_err(|e| failed("cannot create a session", &e))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| failed("cannot set the optimization level", &e))?
        .with_intra_op_spinning(false)
        .map_err(|e| failed("cannot turn off thread spinning", &e))?;
    if let Some(threads) = intra_threads {
        builder = builder.with_intra_threads(threads).map_err(|e| failed("cannot set the thread count", &e))?;
    }
    let (provider, provider_note) = match device {
        Device::Cpu => ("CPUExecutionProvider", None),
        Device::Auto | Device::Cuda => match ort::ep::CUDA::default().register(&mut builder) {
            Ok(()) => ("CUDAExecutionProvider", None),
            Err(error) if device == Device::Auto => {
                let error = error.to_string();
                let reason = error.trim_end_matches('.');
                ("CPUExecutionProvider", Some(format!("CUDA not used: {reason} (ONNX Runtime: {})", loaded_library())))
            }
            Err(error) => {
                return Err(Error::Runtime(format!(
                    "the CUDA execution provider cannot be registered: {}. The ONNX Runtime library \
                     loaded is {}; CUDA needs the onnxruntime-gpu build: run scripts/setup.sh on a machine \
                     with an NVIDIA driver (or LAKECAT_ORT_PACKAGE='onnxruntime-gpu[cuda,cudnn]' \
                     scripts/setup.sh after removing .venv), or set ORT_DYLIB_PATH to a CUDA build's \
                     libonnxruntime.so; --device cpu runs without it",
                    error.to_string().trim_end_matches('.'),
                    loaded_library()
                )));
            }
        },
    };
    let session = builder.commit_from_memory(model).map_err(|e| failed("cannot open the ONNX graph", &e))?;
    Ok(OpenedSession { session, provider, provider_note })
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
            let _ = LOADED.set(path.clone());
            let builder = ort::init_from(&path).map_err(|error| format!("cannot load {}: {error}", path.display()))?;
            builder
                .with_name("lakecat")
                .build()
                .map_err(|error| format!("cannot start ONNX Runtime from {}: {error}", path.display()))
        })
        .as_ref()
        .map_err(|message| Error::Runtime(message.clone()))
}
