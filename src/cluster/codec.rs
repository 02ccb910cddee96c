//! What lakecat adds to Ballista's plan codecs: Delta tables and scans by reference
//! ([`super::scan`]), in-memory tables (taxonomy(), a refresh's changed ids) by value, and the
//! model functions by the bundles they score with. Everything else is Ballista's own encoding,
//! passed through unchanged; lakecat's parts start with a tag of their own.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    ColumnarValue, Extension, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use lakecat_udfs::{Device, ModelRegistry};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::scan::{ClusterScanExec, ClusterTable, ScanRef, TableAt};
use crate::bundles::BundleStore;
use crate::session::load_engine;
use crate::storage::StorageOptions;

const DELTA_TABLE: &[u8] = b"lakecat:delta-table:";
const MEMORY_TABLE: &[u8] = b"lakecat:memory-table:";
const DELTA_SCAN: &[u8] = b"lakecat:delta-scan:";
const MODELS: &[u8] = b"lakecat:models:";

/// One model as a plan names it: executors load `location` and must find `fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub location: String,
    pub fingerprint: String,
}

/// The models of `registry` as references, the default first.
pub fn model_refs(registry: &ModelRegistry) -> Vec<ModelRef> {
    registry
        .sources()
        .into_iter()
        .map(|(name, location, engine)| ModelRef {
            name: name.to_string(),
            location: location.to_string(),
            fingerprint: engine.bundle().fingerprint().to_string(),
        })
        .collect()
}

/// Loads the models plans name, once per set of references, and refuses a bundle whose
/// fingerprint is not the one the plan was made with.
#[derive(Debug)]
pub struct ModelLoader {
    /// Executors: a model that cannot be loaded fails the tasks that call it, with the reason
    /// (an error while decoding a task reaches the client only as "rejected by executor").
    refuse_when_called: bool,
    device: Device,
    batch_size: Option<usize>,
    storage: StorageOptions,
    loaded: Mutex<HashMap<Vec<ModelRef>, Arc<ModelRegistry>>>,
    /// Names this process in refusals ("executor 127.0.0.1:50051").
    role: String,
}

impl ModelLoader {
    pub fn new(role: impl Into<String>, device: Device, batch_size: Option<usize>, storage: StorageOptions) -> Self {
        Self { refuse_when_called: false, device, batch_size, storage, loaded: Mutex::default(), role: role.into() }
    }

    /// The loader of an executor: see `refuse_when_called`.
    pub fn for_executor(
        role: impl Into<String>,
        device: Device,
        batch_size: Option<usize>,
        storage: StorageOptions,
    ) -> Self {
        Self { refuse_when_called: true, ..Self::new(role, device, batch_size, storage) }
    }

    pub fn registry(&self, refs: &[ModelRef]) -> Result<Arc<ModelRegistry>> {
        let mut loaded = self.loaded.lock().map_err(|_| DataFusionError::Internal("model cache poisoned".into()))?;
        if let Some(registry) = loaded.get(refs) {
            return Ok(registry.clone());
        }
        let mut registry = ModelRegistry::new();
        let store = BundleStore::new().with_storage_options(self.storage.clone());
        for model in refs {
            let (_, engine) = run_async(|| load_engine(&store, &model.location, self.device, self.batch_size))??;
            let found = engine.bundle().fingerprint();
            if found != model.fingerprint {
                return Err(DataFusionError::Execution(format!(
                    "model {}: {} found bundle {found} at {}, but the query was planned with {}; the bundle there \
                     changed after the client loaded it (or this machine's copy differs). Pin one version \
                     (LOCATION@VERSION) or give every machine the same bundle, then run the query again",
                    model.name, self.role, model.location, model.fingerprint
                )));
            }
            registry = registry.with_model_from(&model.name, engine, &model.location);
        }
        let registry = Arc::new(registry);
        loaded.insert(refs.to_vec(), registry.clone());
        Ok(registry)
    }

    /// Options for the object stores of tables and bundles.
    pub fn storage(&self) -> &StorageOptions {
        &self.storage
    }

    /// Writes a model function's references into `buf`; any other function is `ballista`'s.
    fn encode_udf(
        function: &ScalarUDF,
        buf: &mut Vec<u8>,
        ballista: impl FnOnce(&ScalarUDF, &mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let Some(models) = lakecat_udfs::models_of(function) else { return ballista(function, buf) };
        buf.extend_from_slice(MODELS);
        serde_json::to_writer(buf, &model_refs(models)).map_err(external)
    }

    /// A model function from its references; any other function is `ballista`'s.
    fn decode_udf(
        &self,
        name: &str,
        buf: &[u8],
        ballista: impl FnOnce(&str, &[u8]) -> Result<Arc<ScalarUDF>>,
    ) -> Result<Arc<ScalarUDF>> {
        let Some(refs) = buf.strip_prefix(MODELS) else { return ballista(name, buf) };
        let refs: Vec<ModelRef> = serde_json::from_slice(refs).map_err(external)?;
        let registry = match self.registry(&refs) {
            Ok(registry) => registry,
            Err(error) if self.refuse_when_called => {
                return Ok(Arc::new(ScalarUDF::new_from_impl(Refused::new(name, error.to_string()))));
            }
            Err(error) => return Err(error),
        };
        let function = lakecat_udfs::model_functions(&registry).into_iter().find(|function| function.name() == name);
        function.map(Arc::new).ok_or_else(|| DataFusionError::Plan(format!("{name} is not a lakecat model function")))
    }
}

/// A model function an executor could not load: each call fails with the reason.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Refused {
    name: String,
    signature: Signature,
    reason: String,
}

impl Refused {
    fn new(name: &str, reason: String) -> Self {
        Self { name: name.to_string(), signature: Signature::variadic_any(Volatility::Volatile), reason }
    }
}

impl ScalarUDFImpl for Refused {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Execution(self.reason.clone()))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Execution(self.reason.clone()))
    }
}

/// Runs the future `make` returns to completion from synchronous code (a codec), on a thread
/// of its own, whether or not a runtime is running on this one.
fn run_async<F, Fut>(make: F) -> Result<Fut::Output>
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future,
    Fut::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Fut::Output> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(runtime.block_on(make()))
            })
            .join()
            .map_err(|_| DataFusionError::Internal("loading a model panicked".into()))?
    })
}

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Ballista's logical codec with Delta tables, in-memory tables and model functions.
#[derive(Debug)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
    models: Arc<ModelLoader>,
}

impl LogicalCodec {
    pub fn new(models: Arc<ModelLoader>) -> Self {
        Self { ballista: BallistaLogicalExtensionCodec::default(), models }
    }
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(table) = buf.strip_prefix(DELTA_TABLE) {
            let table: TableAt = serde_json::from_slice(table).map_err(external)?;
            return Ok(Arc::new(ClusterTable::new(table, schema, self.models.storage().clone())));
        }
        if let Some(partitions) = buf.strip_prefix(MEMORY_TABLE) {
            return Ok(Arc::new(MemTable::try_new(schema, decode_partitions(partitions)?)?));
        }
        self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(table) = node.downcast_ref::<ClusterTable>() {
            buf.extend_from_slice(DELTA_TABLE);
            return serde_json::to_writer(buf, table.table()).map_err(external);
        }
        if let Some(table) = node.downcast_ref::<MemTable>() {
            buf.extend_from_slice(MEMORY_TABLE);
            return encode_partitions(table, buf);
        }
        self.ballista.try_encode_table_provider(table_ref, node, buf).map_err(|_| {
            DataFusionError::NotImplemented(format!(
                "table {table_ref} cannot run on a cluster: register Delta tables (--table) rather than other \
                 kinds of table"
            ))
        })
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.models.decode_udf(name, buf, |name, buf| LogicalExtensionCodec::try_decode_udf(&self.ballista, name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        ModelLoader::encode_udf(node, buf, |node, buf| LogicalExtensionCodec::try_encode_udf(&self.ballista, node, buf))
    }
}

/// An in-memory table's partitions: each as a length-prefixed Arrow IPC stream.
fn encode_partitions(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    for partition in &table.batches {
        let batches = partition.try_read().map_err(|_| {
            DataFusionError::Execution("an in-memory table is being written while it is planned".into())
        })?;
        let schema = batches.first().map(RecordBatch::schema).unwrap_or_else(|| table.schema());
        let mut stream = Vec::new();
        let mut writer = StreamWriter::try_new(&mut stream, &schema)?;
        for batch in batches.iter() {
            writer.write(batch)?;
        }
        writer.finish()?;
        drop(writer);
        buf.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        buf.extend_from_slice(&stream);
    }
    Ok(())
}

fn decode_partitions(mut buf: &[u8]) -> Result<Vec<Vec<RecordBatch>>> {
    let mut partitions = Vec::new();
    while !buf.is_empty() {
        let (length, rest) = buf.split_first_chunk::<8>().ok_or_else(|| truncated("in-memory table"))?;
        let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| truncated("in-memory table"))?;
        let stream = rest.get(..length).ok_or_else(|| truncated("in-memory table"))?;
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        partitions.push(reader.collect::<std::result::Result<Vec<_>, _>>()?);
        buf = &rest[length..];
    }
    Ok(partitions)
}

fn truncated(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("a cluster plan's {what} is truncated"))
}

/// Ballista's physical codec with Delta scans and model functions.
#[derive(Debug)]
pub struct PhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
    models: Arc<ModelLoader>,
}

impl PhysicalCodec {
    pub fn new(models: Arc<ModelLoader>) -> Self {
        Self { ballista: BallistaPhysicalExtensionCodec::default(), models }
    }
}

#[derive(Serialize, Deserialize)]
struct ScanWire {
    scan: ScanRef,
    /// The scan's output schema, as DataFusion's protobuf encodes it (hex).
    schema: String,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(wire) = buf.strip_prefix(DELTA_SCAN) else {
            return self.ballista.try_decode(buf, inputs, ctx, converter);
        };
        let wire: ScanWire = serde_json::from_slice(wire).map_err(external)?;
        let bytes = hex::decode(&wire.schema).map_err(|_| truncated("scan schema"))?;
        let schema = datafusion_proto::protobuf::Schema::decode(bytes.as_slice()).map_err(external)?;
        let schema = Schema::try_from(&schema).map_err(|error| DataFusionError::Internal(error.to_string()))?;
        Ok(Arc::new(ClusterScanExec::decoded(wire.scan, Arc::new(schema), self.models.storage().clone())))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<ClusterScanExec>() else {
            return self.ballista.try_encode(node, buf, converter);
        };
        let schema = datafusion_proto::protobuf::Schema::try_from(node.schema().as_ref())
            .map_err(|error| DataFusionError::Internal(error.to_string()))?;
        let wire = ScanWire { scan: scan.scan().clone(), schema: hex::encode(schema.encode_to_vec()) };
        buf.extend_from_slice(DELTA_SCAN);
        serde_json::to_writer(buf, &wire).map_err(external)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.models.decode_udf(name, buf, |name, buf| PhysicalExtensionCodec::try_decode_udf(&self.ballista, name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        ModelLoader::encode_udf(node, buf, |node, buf| {
            PhysicalExtensionCodec::try_encode_udf(&self.ballista, node, buf)
        })
    }
}
