//! Labeller consensus: from a labels table (product id, labeller id, category, optional time)
//! to one label per product where enough labellers agree, with every other product kept in a
//! table of its own with the reason, and agreement statistics per labeller and per category.
//! The rule is SQL (`sql/labels/`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;

use lakecat_udfs::consensus_table::consensus_query;

use crate::jobs::{TaxonomyStore, quote, require_columns};
use crate::{Error, Result, SessionBuilder, delta};

const BALLOTS_SQL: &str = include_str!("../../sql/labels/ballots.sql");
const BY_LABELLER_SQL: &str = include_str!("../../sql/labels/agreement_by_labeller.sql");
const BY_CATEGORY_SQL: &str = include_str!("../../sql/labels/agreement_by_category.sql");

/// Computes consensus labels; see the module documentation.
#[derive(Debug, Clone)]
pub struct ConsensusJob {
    labels: String,
    consensus_table: String,
    rejected_table: String,
    min_agree: usize,
    columns: [String; 4],
    taxonomy: Option<(TaxonomyStore, String)>,
    storage: crate::StorageOptions,
}

/// What the consensus found.
#[derive(Debug, Clone)]
pub struct ConsensusReport {
    pub products: usize,
    pub consensus: usize,
    pub rejected: usize,
    /// Rejected because two or more categories tied with enough votes.
    pub ties: usize,
    /// labeller_id, labels, agreed, disagreed, on_products_without_consensus.
    pub by_labeller: Vec<RecordBatch>,
    /// category, labels, consensus_products, mean_vote_share.
    pub by_category: Vec<RecordBatch>,
}

impl ConsensusJob {
    /// Reads `labels`; writes the consensus labels (product_id, category, votes, labellers) to
    /// `consensus_table` and the rest (product_id, reason, labellers, answered, votes,
    /// categories) to `rejected_table`, both replaced on every run.
    pub fn new(
        labels: impl Into<String>,
        consensus_table: impl Into<String>,
        rejected_table: impl Into<String>,
    ) -> Self {
        Self {
            labels: labels.into(),
            consensus_table: consensus_table.into(),
            rejected_table: rejected_table.into(),
            min_agree: 2,
            columns: ["product_id".into(), "labeller_id".into(), "category".into(), "labelled_at".into()],
            taxonomy: None,
            storage: crate::StorageOptions::default(),
        }
    }

    /// Options for the object stores of every table this job reads and writes (see
    /// [`crate::storage`]).
    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// Labellers that must agree (default 2, as in "2 of 3").
    pub fn with_min_agree(mut self, min_agree: usize) -> Self {
        self.min_agree = min_agree.max(1);
        self
    }

    /// Column names: product id, labeller id, category path, and the optional label time.
    pub fn with_columns(mut self, product: &str, labeller: &str, category: &str, time: &str) -> Self {
        self.columns = [product.into(), labeller.into(), category.into(), time.into()];
        self
    }

    /// Only categories of this stored taxonomy version count as votes.
    pub fn with_taxonomy(mut self, store: TaxonomyStore, version: impl Into<String>) -> Self {
        self.taxonomy = Some((store, version.into()));
        self
    }

    pub async fn execute(self) -> Result<ConsensusReport> {
        let session = SessionBuilder::new()
            .with_storage_options(self.storage.clone())
            .with_table("labels", &self.labels)
            .build()
            .await?;
        let ctx = &session.ctx;
        let votes = self.votes_select(ctx).await?;
        // The statistics read the ballots as views; the decisions come from the same SQL.
        ctx.sql(&format!("CREATE VIEW votes AS {votes}")).await?.collect().await?;
        ctx.sql(&format!("CREATE VIEW ballots AS {BALLOTS_SQL}")).await?.collect().await?;
        let decisions = ctx.sql(&consensus_query(&votes, self.min_agree)).await?.collect().await?;
        let products: usize = decisions.iter().map(RecordBatch::num_rows).sum();
        if products == 0 {
            return Err(Error::Input(format!("{}: the labels table has no rows", self.labels)));
        }
        let schema = decisions[0].schema();
        ctx.register_table("decisions", Arc::new(MemTable::try_new(schema, vec![decisions])?))?;
        let consensus = collect_or_empty(
            ctx,
            "SELECT product_id, category, votes, labellers FROM decisions WHERE reason IS NULL ORDER BY product_id",
        )
        .await?;
        let rejected = collect_or_empty(
            ctx,
            "SELECT product_id, reason, labellers, answered, votes, categories FROM decisions \
             WHERE reason IS NOT NULL ORDER BY product_id",
        )
        .await?;
        let count = |batches: &[RecordBatch]| batches.iter().map(RecordBatch::num_rows).sum::<usize>();

        let ties = count(&ctx.sql("SELECT 1 FROM decisions WHERE reason LIKE 'tie:%'").await?.collect().await?);
        let report = ConsensusReport {
            products,
            consensus: count(&consensus),
            rejected: count(&rejected),
            ties,
            by_labeller: ctx.sql(BY_LABELLER_SQL).await?.collect().await?,
            by_category: ctx.sql(BY_CATEGORY_SQL).await?.collect().await?,
        };
        write_all(&self.consensus_table, consensus, &self.storage).await?;
        write_all(&self.rejected_table, rejected, &self.storage).await?;
        Ok(report)
    }

    /// The labels with lakecat's column names and `known`, as a SELECT (registers what it needs).
    async fn votes_select(&self, ctx: &SessionContext) -> Result<String> {
        let schema = ctx.table("labels").await?.schema().as_arrow().clone();
        let [product, labeller, category, time] = &self.columns;
        require_columns(
            &schema,
            &self.labels,
            &[
                ("product id", product, "`product_column`"),
                ("labeller id", labeller, "`labeller_column`"),
                ("category", category, "`category_column`"),
            ],
        )?;
        let time = if schema.field_with_name(time).is_ok() { format!("l.{}", quote(time)) } else { "NULL".to_string() };
        let (join, known) = match &self.taxonomy {
            Some((store, version)) => {
                let taxonomy = store.load(version).await?;
                let paths: Vec<String> =
                    taxonomy.nodes().iter().map(|node| taxonomy.path(node.id).join(" > ")).collect();
                let batch = RecordBatch::try_from_iter([(
                    "path",
                    Arc::new(arrow::array::StringArray::from(paths)) as arrow::array::ArrayRef,
                )])?;
                ctx.register_table(
                    "known_categories",
                    Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
                )?;
                let join = format!(
                    " LEFT JOIN known_categories AS k ON k.path = trim(CAST(l.{} AS VARCHAR))",
                    quote(category)
                );
                (join, "k.path IS NOT NULL")
            }
            None => (String::new(), "true"),
        };
        Ok(format!(
            "SELECT l.{product} AS product_id, l.{labeller} AS labeller_id, \
             nullif(trim(CAST(l.{category} AS VARCHAR)), '') AS category, {time} AS labelled_at, \
             {known} AS known FROM labels AS l{join}",
            product = quote(product),
            labeller = quote(labeller),
            category = quote(category),
        ))
    }
}

/// The query's rows, or one empty batch with its schema (so an empty result still makes a table).
async fn collect_or_empty(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let frame = ctx.sql(sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches: Vec<RecordBatch> = frame.collect().await?.into_iter().filter(|batch| batch.num_rows() > 0).collect();
    Ok(if batches.is_empty() { vec![RecordBatch::new_empty(schema)] } else { batches })
}

async fn write_all(location: &str, batches: Vec<RecordBatch>, storage: &crate::StorageOptions) -> Result<u64> {
    delta::write_table(location, batches, SaveMode::Overwrite, storage).await
}
