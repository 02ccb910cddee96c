//! The native half of the `lakecat` Python package: lakecat's functions, its `taxonomy` table
//! function and its Delta tables, handed to datafusion-python through DataFusion's FFI
//! (`datafusion-ffi` capsules). Arrays cross that boundary through the Arrow C data interface,
//! so image bytes are not copied row by row. `python/lakecat/__init__.py` is the API users call.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{FunctionRegistry, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_ffi::config::extension_options::FFI_ExtensionOptions;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use datafusion_ffi::udf::FFI_ScalarUDF;
use datafusion_ffi::udtf::FFI_TableFunction;
use lakecat::{LakecatSession, SessionBuilder, StorageOptions};
use lakecat_udfs::Device;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The functions a Python session gets. `image_version` is left out: it serves
/// `lakecat refresh`, which runs in lakecat's own session.
const SCALAR_FUNCTIONS: [&str; 4] = ["categorize", "category_path", "category_level", "content_hash"];

/// lakecat's runtime for everything the FFI runs on this side (Delta scans, object-store reads):
/// datafusion-python's tokio is another copy of tokio, in another library, whose runtime this
/// code cannot see.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("lakecat")
        .enable_all()
        .build()
        .map_err(|error| PyRuntimeError::new_err(format!("lakecat could not start its I/O runtime: {error}")))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

fn error(error: impl fmt::Display) -> PyErr {
    PyRuntimeError::new_err(error.to_string())
}

fn storage_options(pairs: Vec<(String, String)>) -> StorageOptions {
    pairs.into_iter().fold(StorageOptions::new(), |options, (key, value)| options.with(key, value))
}

/// The host's logical extension codec, read off the `session` datafusion-python passes to
/// `__datafusion_table_provider__` and `__datafusion_table_function__`.
fn host_codec(session: &Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    const NAME: &CStr = c"datafusion_logical_extension_codec";
    let capsule = if session.hasattr("__datafusion_logical_extension_codec__")? {
        session.call_method0("__datafusion_logical_extension_codec__")?
    } else {
        session.clone()
    };
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer = capsule.pointer_checked(Some(NAME))?;
    // SAFETY: the capsule's name says it holds an FFI_LogicalExtensionCodec; it is cloned
    // (reference-counted on the host's side) before any other Python code runs.
    Ok(unsafe { pointer.cast::<FFI_LogicalExtensionCodec>().as_ref() }.clone())
}

/// Models loaded once, with the settings they score with when the host session sets none.
#[pyclass(frozen, module = "lakecat._lakecat")]
struct Models {
    session: LakecatSession,
}

#[pymethods]
impl Models {
    /// Loads every bundle (refusing a bad one now, not in the first query).
    #[new]
    #[pyo3(signature = (models, settings, storage_options, device, batch_size=None))]
    fn new(
        py: Python<'_>,
        models: Vec<(String, String)>,
        settings: Vec<(String, String)>,
        storage_options: Vec<(String, String)>,
        device: &str,
        batch_size: Option<usize>,
    ) -> PyResult<Self> {
        let device = match device {
            "auto" => Device::Auto,
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda,
            other => return Err(PyValueError::new_err(format!("device must be auto, cpu or cuda; got {other:?}"))),
        };
        let mut builder =
            SessionBuilder::new().with_device(device).with_storage_options(self::storage_options(storage_options));
        for (name, location) in models {
            builder = builder.with_model(name, location);
        }
        for (key, value) in settings {
            builder = builder.with_setting(key, value);
        }
        if let Some(batch_size) = batch_size {
            builder = builder.with_batch_size(batch_size);
        }
        let runtime = runtime()?;
        // The error as text: lakecat::Error is too large to return across the detach by value.
        let session =
            py.detach(|| runtime.block_on(builder.build()).map_err(|failure| failure.to_string())).map_err(error)?;
        Ok(Self { session })
    }

    /// `(name, bundle fingerprint, where it came from)` of every model, the default first.
    fn describe(&self) -> PyResult<Vec<(String, String, String)>> {
        let models = &self.session.models;
        let mut names: Vec<&str> = models.default_name().into_iter().collect();
        names.extend(models.names().filter(|name| Some(*name) != models.default_name()));
        names
            .into_iter()
            .map(|name| {
                let engine = models.get(Some(name)).map_err(error)?;
                let location = self
                    .session
                    .bundles
                    .iter()
                    .find(|(model, _)| model == name)
                    .map(|(_, bundle)| bundle.location.clone())
                    .unwrap_or_default();
                Ok((name.to_string(), engine.bundle().fingerprint().to_string(), location))
            })
            .collect()
    }

    fn scalar_functions(&self) -> PyResult<Vec<ScalarFunction>> {
        SCALAR_FUNCTIONS.iter().map(|name| Ok(ScalarFunction(self.session.ctx.udf(name).map_err(error)?))).collect()
    }

    fn taxonomy_function(&self) -> PyResult<TableFunction> {
        let function = self.session.ctx.table_function("taxonomy").map_err(error)?;
        Ok(TableFunction(function.function().clone()))
    }
}

/// A scalar function for `datafusion.udf(...)`.
#[pyclass(frozen, module = "lakecat._lakecat")]
struct ScalarFunction(Arc<ScalarUDF>);

#[pymethods]
impl ScalarFunction {
    #[getter]
    fn name(&self) -> &str {
        self.0.name()
    }

    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(py, FFI_ScalarUDF::from(self.0.clone()), c"datafusion_scalar_udf")
    }
}

/// A table function for `datafusion.udtf(...)`.
#[pyclass(frozen, module = "lakecat._lakecat")]
struct TableFunction(Arc<dyn TableFunctionImpl>);

#[pymethods]
impl TableFunction {
    fn __datafusion_table_function__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let handle = runtime()?.handle().clone();
        let function = FFI_TableFunction::new_with_ffi_codec(self.0.clone(), Some(handle), host_codec(&session)?);
        PyCapsule::new_with_value(py, function, c"datafusion_table_function")
    }
}

/// A Delta table, opened at one version, for `SessionContext.register_table`.
#[pyclass(frozen, module = "lakecat._lakecat")]
struct DeltaTable {
    provider: Arc<dyn TableProvider>,
    #[pyo3(get)]
    version: Option<u64>,
    #[pyo3(get)]
    location: String,
}

#[pymethods]
impl DeltaTable {
    /// Opens the table at `location` (a path or an s3/gs/az URL) at `version` (latest when None).
    #[new]
    #[pyo3(signature = (location, version=None, storage_options=Vec::new()))]
    fn new(
        py: Python<'_>,
        location: String,
        version: Option<u64>,
        storage_options: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let storage = self::storage_options(storage_options);
        let runtime = runtime()?;
        let opened = py.detach(|| {
            runtime.block_on(async {
                let table = lakecat::delta::open_table(&location, version, &storage).await.map_err(error)?;
                // The table's object store lives in a runtime environment of lakecat's own:
                // the host's cannot be reached through the FFI (see OwnRuntimeTable).
                let runtime_env = Arc::new(RuntimeEnv::default());
                let state = SessionStateBuilder::new().with_runtime_env(runtime_env.clone()).build();
                table.update_datafusion_session(&state).map_err(error)?;
                let inner = table.table_provider().await.map_err(error)?;
                let version = table.version();
                Ok::<_, PyErr>((OwnRuntimeTable { inner, runtime_env }, version, table.table_url().to_string()))
            })
        })?;
        let (provider, version, location) = opened;
        Ok(Self { provider: Arc::new(provider), version, location })
    }

    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let handle = runtime()?.handle().clone();
        let provider =
            FFI_TableProvider::new_with_ffi_codec(self.provider.clone(), true, Some(handle), host_codec(&session)?);
        PyCapsule::new_with_value(py, provider, c"datafusion_table_provider")
    }
}

/// `lakecat.*` settings for `SessionConfig.with_extension`, so `SET lakecat.top_k = 5` works
/// in a datafusion-python session. Checked here as `SET` checks them in lakecat's own session.
#[pyclass(frozen, module = "lakecat._lakecat")]
struct Settings(HashMap<String, String>);

#[pymethods]
impl Settings {
    #[new]
    fn new(settings: Vec<(String, String)>) -> PyResult<Self> {
        let mut checked = lakecat_udfs::config::session_config();
        for (key, value) in &settings {
            checked.options_mut().set(key, value).map_err(|error| PyValueError::new_err(error.to_string()))?;
        }
        Ok(Self(settings.into_iter().collect()))
    }

    fn __datafusion_extension_options__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(py, FFI_ExtensionOptions::from(self.0.clone()), c"datafusion_extension_options")
    }
}

/// A Delta provider whose scans run with lakecat's runtime environment, where its object store
/// is registered. Through the FFI a provider sees the host's session without its object stores
/// (DataFusion 55 hands it a fresh runtime environment), and its plan executes with another
/// fresh one, where a Delta scan finds no store for its files.
#[derive(Debug)]
struct OwnRuntimeTable {
    inner: Arc<dyn TableProvider>,
    runtime_env: Arc<RuntimeEnv>,
}

#[async_trait]
impl TableProvider for OwnRuntimeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DataFusionResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        // The host's settings (batch size, partitions, Parquet options), lakecat's stores.
        let state = SessionStateBuilder::new()
            .with_config(session.config().clone())
            .with_runtime_env(self.runtime_env.clone())
            .with_default_features()
            .build();
        // Planned on lakecat's runtime: the host polls this future on its own tokio, where
        // delta-rs finds no reactor.
        let (provider, projection, filters) = (self.inner.clone(), projection.cloned(), filters.to_vec());
        let planned = runtime()
            .map_err(|error| DataFusionError::External(Box::new(error)))?
            .spawn(async move { provider.scan(&state, projection.as_ref(), &filters, limit).await });
        let inner = planned.await.map_err(|error| DataFusionError::External(Box::new(error)))??;
        Ok(Arc::new(OwnRuntimeExec { inner, runtime_env: self.runtime_env.clone() }))
    }
}

/// Executes `inner` with lakecat's runtime environment in the host's task context.
#[derive(Debug)]
struct OwnRuntimeExec {
    inner: Arc<dyn ExecutionPlan>,
    runtime_env: Arc<RuntimeEnv>,
}

impl DisplayAs for OwnRuntimeExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(format, f)
    }
}

impl ExecutionPlan for OwnRuntimeExec {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    /// A leaf to the host: its optimizer cannot rewrite inside a plan that crossed the FFI.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() { Ok(self) } else { internal_err!("a lakecat Delta scan takes no children") }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DataFusionResult<SendableRecordBatchStream> {
        let context = TaskContext::new(
            context.task_id(),
            context.session_id(),
            context.session_config().clone(),
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            self.runtime_env.clone(),
        );
        self.inner.execute(partition, Arc::new(context))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DataFusionResult<TreeNodeRecursion>,
    ) -> DataFusionResult<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
}

/// The DataFusion major version this library's FFI speaks (datafusion-python must match it).
#[pyfunction]
fn datafusion_major_version() -> u64 {
    datafusion_ffi::version()
}

#[pymodule]
fn _lakecat(module: &Bound<'_, PyModule>) -> PyResult<()> {
    lakecat::storage::register_backends();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<Models>()?;
    module.add_class::<ScalarFunction>()?;
    module.add_class::<TableFunction>()?;
    module.add_class::<DeltaTable>()?;
    module.add_class::<Settings>()?;
    module.add_function(wrap_pyfunction!(datafusion_major_version, module)?)?;
    Ok(())
}
