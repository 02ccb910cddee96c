//! `consensus('labels_table', min_agree [, 'time_column'])`: the labeller consensus of a labels
//! table (product_id, labeller_id, category[, time]) as a table: product_id, category (NULL
//! without consensus), votes, labellers, reason (NULL with consensus). The rule is the SQL in
//! `sql/labels/`, shared with `lakecat labels consensus`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

const BALLOTS_SQL: &str = include_str!("../../sql/labels/ballots.sql");
const CONSENSUS_SQL: &str = include_str!("../../sql/labels/consensus.sql");

/// The consensus query over `votes_select` (product_id, labeller_id, category, labelled_at,
/// known): one row per product with labellers, answered, unknown, votes, categories, category
/// and reason.
pub fn consensus_query(votes_select: &str, min_agree: usize) -> String {
    let body: String =
        CONSENSUS_SQL.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let after_with = body.trim_start().strip_prefix("WITH").unwrap_or(&body);
    format!("WITH votes AS ({votes_select}), ballots AS ({BALLOTS_SQL}), {after_with}")
        .replace(":min_agree", &min_agree.to_string())
}

/// Quotes an identifier for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(Debug, Default)]
pub struct ConsensusFunction;

impl TableFunctionImpl for ConsensusFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let literal = |index: usize| match args.exprs().get(index) {
            Some(Expr::Literal(value, _)) => Some(value.clone()),
            _ => None,
        };
        let table = match literal(0) {
            Some(ScalarValue::Utf8(Some(name)) | ScalarValue::Utf8View(Some(name))) => name,
            _ => {
                return plan_err!(
                    "consensus('labels_table', min_agree [, 'time_column']): the table name is a string literal"
                );
            }
        };
        let min_agree = match literal(1) {
            Some(ScalarValue::Int64(Some(k))) if k >= 1 => k as usize,
            None if args.exprs().len() < 2 => 2,
            _ => return plan_err!("consensus: min_agree must be a positive integer literal"),
        };
        let time = match literal(2) {
            Some(ScalarValue::Utf8(Some(column)) | ScalarValue::Utf8View(Some(column))) => quote(&column),
            None if args.exprs().len() < 3 => "NULL".to_string(),
            _ => return plan_err!("consensus: the time column is a string literal"),
        };
        let votes = format!(
            "SELECT CAST(product_id AS VARCHAR) AS product_id, labeller_id, \
             nullif(trim(CAST(category AS VARCHAR)), '') AS category, {time} AS labelled_at, true AS known \
             FROM {}",
            quote(&table)
        );
        let sql = format!(
            "SELECT arrow_cast(product_id, 'Utf8') AS product_id, arrow_cast(category, 'Utf8') AS category, \
             CAST(votes AS BIGINT) AS votes, CAST(labellers AS BIGINT) AS labellers, arrow_cast(reason, 'Utf8') AS reason \
             FROM ({})",
            consensus_query(&votes, min_agree)
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("product_id", DataType::Utf8, true),
            Field::new("category", DataType::Utf8, true),
            Field::new("votes", DataType::Int64, true),
            Field::new("labellers", DataType::Int64, true),
            Field::new("reason", DataType::Utf8, true),
        ]));
        Ok(Arc::new(ConsensusTable { sql, schema }))
    }
}

/// The consensus as a view: planned from SQL in the calling session when scanned.
#[derive(Debug)]
struct ConsensusTable {
    sql: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for ConsensusTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Plan("consensus() needs a DataFusion SessionState".into()))?;
        let columns: Vec<String> = match projection {
            Some(indices) => indices.iter().map(|&index| quote(self.schema.field(index).name())).collect(),
            None => self.schema.fields().iter().map(|field| quote(field.name())).collect(),
        };
        let sql = format!("SELECT {} FROM ({}) AS consensus", columns.join(", "), self.sql);
        let plan = state.create_logical_plan(&sql).await?;
        state.create_physical_plan(&plan).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_joins_the_shared_sql_into_one_statement() {
        let sql = consensus_query("SELECT * FROM labels", 3);
        assert!(sql.starts_with("WITH votes AS (SELECT * FROM labels), ballots AS ("), "{sql}");
        assert!(sql.contains("tally AS (") && sql.contains("l.votes >= 3") && !sql.contains(":min_agree"), "{sql}");
        assert_eq!(sql.matches("WITH").count(), 1, "{sql}");
    }
}
