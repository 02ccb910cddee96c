//! Delta tables in a cluster plan. delta-rs's scan node has no codec (delta-rs #4171), so the
//! plan names the table instead: its location and the version the client opened. The
//! scheduler and each executor open that same snapshot themselves, with their own
//! credentials; no file list or secret travels in the plan.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::storage::StorageOptions;
use crate::{Error, delta};

/// A Delta table at one version, as a cluster plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableAt {
    pub location: String,
    pub version: u64,
}

impl TableAt {
    /// Opens the snapshot and plans delta-rs's own scan of it.
    async fn plan_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
        storage: &StorageOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = delta::open_table(&self.location, Some(self.version), storage).await?;
        table.update_datafusion_session(state).map_err(|source| Error::delta(&self.location, source))?;
        let provider = table.table_provider().await?;
        provider.scan(state, projection, &[], limit).await
    }
}

/// The table provider of a cluster session: scans plan a [`ClusterScanExec`].
#[derive(Debug)]
pub struct ClusterTable {
    table: TableAt,
    schema: SchemaRef,
    storage: StorageOptions,
}

impl ClusterTable {
    pub fn new(table: TableAt, schema: SchemaRef, storage: StorageOptions) -> Self {
        Self { table, schema, storage }
    }

    pub fn table(&self) -> &TableAt {
        &self.table
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    // No filter is pushed into the scan (the default answer, Unsupported): the executor re-plans
    // it from what the plan names, and a filter kept above the scan is always right.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = self.table.plan_scan(state, projection, limit, &self.storage).await?;
        let scan = ScanRef {
            table: self.table.clone(),
            projection: projection.cloned(),
            limit,
            partitions: inner.properties().output_partitioning().partition_count(),
        };
        Ok(Arc::new(ClusterScanExec::planned(scan, inner, self.storage.clone())))
    }
}

/// What a cluster plan records of a scan: enough for an executor to plan the same one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRef {
    pub table: TableAt,
    pub projection: Option<Vec<usize>>,
    pub limit: Option<usize>,
    /// Partitions of the scan as the scheduler planned it; an executor's plan must match.
    pub partitions: usize,
}

/// A scan of a Delta snapshot that executors plan where they run. On the scheduler it holds
/// delta-rs's plan; decoded on an executor it plans the same scan on first use.
pub struct ClusterScanExec {
    scan: ScanRef,
    inner: Arc<OnceCell<Arc<dyn ExecutionPlan>>>,
    properties: Arc<PlanProperties>,
    storage: StorageOptions,
}

impl fmt::Debug for ClusterScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterScanExec").field("scan", &self.scan).finish_non_exhaustive()
    }
}

impl ClusterScanExec {
    fn planned(scan: ScanRef, inner: Arc<dyn ExecutionPlan>, storage: StorageOptions) -> Self {
        let properties = Arc::new(properties(inner.schema(), scan.partitions));
        Self { scan, inner: Arc::new(OnceCell::new_with(Some(inner))), properties, storage }
    }

    /// The node as an executor decodes it: planned when it first runs.
    pub fn decoded(scan: ScanRef, schema: SchemaRef, storage: StorageOptions) -> Self {
        let properties = Arc::new(properties(schema, scan.partitions));
        Self { scan, inner: Arc::new(OnceCell::new()), properties, storage }
    }

    pub fn scan(&self) -> &ScanRef {
        &self.scan
    }
}

fn properties(schema: SchemaRef, partitions: usize) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
}

impl DisplayAs for ClusterScanExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClusterScanExec: {}@{}, partitions={}",
            self.scan.table.location, self.scan.table.version, self.scan.partitions
        )
    }
}

impl ExecutionPlan for ClusterScanExec {
    fn name(&self) -> &str {
        "ClusterScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("ClusterScanExec has no children".into()))
        }
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let (scan, inner, storage) = (self.scan.clone(), self.inner.clone(), self.storage.clone());
        let schema = self.schema();
        let stream = futures::stream::once(async move {
            let plan = inner
                .get_or_try_init(|| async {
                    let state = SessionStateBuilder::new()
                        .with_default_features()
                        .with_config(context.session_config().clone())
                        .with_runtime_env(context.runtime_env())
                        .build();
                    scan.table.plan_scan(&state, scan.projection.as_ref(), scan.limit, &storage).await
                })
                .await?;
            let planned = plan.properties().output_partitioning().partition_count();
            if planned != scan.partitions {
                return Err(DataFusionError::Execution(format!(
                    "{}@{}: this executor plans {planned} scan partitions where the scheduler planned {}; \
                     give the scheduler and every executor the same lakecat version and settings",
                    scan.table.location, scan.table.version, scan.partitions
                )));
            }
            plan.execute(partition, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream.boxed())))
    }
}
