//! `taxonomy([model])`: every category of a model's taxonomy, one row each, to join predictions
//! to any level.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use lakecat_core::Taxonomy;

use crate::model_arg;
use crate::registry::ModelRegistry;

#[derive(Debug)]
pub struct TaxonomyFunction {
    models: Arc<ModelRegistry>,
}

impl TaxonomyFunction {
    pub fn new(models: Arc<ModelRegistry>) -> Self {
        Self { models }
    }
}

impl TableFunctionImpl for TaxonomyFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [] => None,
            [Expr::Literal(value, _)] => Some(model_arg::from_scalar(value)?),
            _ => {
                return plan_err!(
                    "taxonomy() takes no argument (the default model) or one model name: taxonomy('fashion')"
                );
            }
        };
        let engine = self.models.get(name.as_deref())?;
        let batch = taxonomy_batch(engine.bundle().taxonomy())?;
        Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))
    }
}

/// Columns: category_id, name, parent_id, depth, path, is_leaf, level_1 … level_k.
pub fn taxonomy_batch(taxonomy: &Taxonomy) -> Result<RecordBatch> {
    let depth = taxonomy.max_depth();
    let nodes = taxonomy.nodes();
    let mut fields = vec![
        Field::new("category_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("depth", DataType::Int32, false),
        Field::new("path", DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), false),
        Field::new("is_leaf", DataType::Boolean, false),
    ];
    fields.extend((1..=depth).map(|level| Field::new(format!("level_{level}"), DataType::Utf8, true)));
    let mut path = ListBuilder::new(StringBuilder::new());
    let mut levels: Vec<StringBuilder> = (0..depth).map(|_| StringBuilder::new()).collect();
    for node in nodes {
        let names = taxonomy.path(node.id);
        path.append_value(names.iter().map(|name| Some(*name)));
        for (level, builder) in levels.iter_mut().enumerate() {
            builder.append_option(names.get(level).copied());
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(nodes.iter().map(|node| i64::from(node.id)))),
        Arc::new(StringArray::from_iter_values(nodes.iter().map(|node| node.name.as_str()))),
        Arc::new(Int64Array::from_iter(nodes.iter().map(|node| node.parent.map(i64::from)))),
        Arc::new(Int32Array::from_iter_values(nodes.iter().map(|node| taxonomy.depth(node.id).unwrap_or(0) as i32))),
        Arc::new(path.finish()),
        Arc::new(BooleanArray::from_iter(nodes.iter().map(|node| Some(taxonomy.is_leaf(node.id))))),
    ];
    columns.extend(levels.iter_mut().map(|builder| Arc::new(builder.finish()) as ArrayRef));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
