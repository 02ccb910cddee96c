//! lakecat's DataFusion functions and the ONNX Runtime scoring engine behind them.
//!
//! ```sql
//! SELECT id, c.category, c.level_1, c.confidence, c.error
//! FROM (SELECT id, categorize(image, title, description) AS c FROM products);
//! SELECT * FROM taxonomy();
//! ```
//! Register everything with [`register_all`] on a context made from [`config::session_config`].

pub mod allow_list;
mod arrays;
pub mod categorize;
pub mod category_level;
pub mod category_path;
pub mod config;
pub mod consensus_table;
pub mod content_hash;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod image_version;
mod model_arg;
pub mod prediction;
pub mod registry;
pub mod runtime;
pub mod taxonomy_id;
pub mod taxonomy_migrate;
pub mod taxonomy_table;
pub mod taxonomy_versions;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::plan_err;
use datafusion::logical_expr::{DocSection, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use engine::{Device, Engine, EngineBuilder};
pub use error::{Error, Result};
pub use registry::ModelRegistry;
pub use taxonomy_versions::TaxonomyVersions;

/// Registers `categorize`, `category_path`, `category_level`, `content_hash`, `image_version` and the `taxonomy`
/// and `consensus` table functions for the models in `models`.
pub fn register_all(ctx: &SessionContext, models: Arc<ModelRegistry>) {
    for function in model_free_functions().into_iter().chain(model_functions(&models)) {
        ctx.register_udf(function);
    }
    ctx.register_udtf("taxonomy", Arc::new(taxonomy_table::TaxonomyFunction::new(models)));
    ctx.register_udtf("consensus", Arc::new(consensus_table::ConsensusFunction));
}

/// The scalar functions that need no model: found by name wherever a plan is decoded.
pub fn model_free_functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(content_hash::ContentHashUdf::new()),
        ScalarUDF::new_from_impl(image_version::ImageVersionUdf::new()),
    ]
}

/// The scalar functions that score with or look up in `models`.
pub fn model_functions(models: &Arc<ModelRegistry>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(categorize::CategorizeUdf::new(models.clone())),
        ScalarUDF::new_from_impl(category_path::CategoryPathUdf::new(models.clone())),
        ScalarUDF::new_from_impl(category_level::CategoryLevelUdf::new(models.clone())),
    ]
}

/// The models `function` uses, when it is one of [`model_functions`].
pub fn models_of(function: &ScalarUDF) -> Option<&Arc<ModelRegistry>> {
    let inner = function.inner();
    inner
        .downcast_ref::<categorize::CategorizeUdf>()
        .map(categorize::CategorizeUdf::models)
        .or_else(|| inner.downcast_ref::<category_path::CategoryPathUdf>().map(category_path::CategoryPathUdf::models))
        .or_else(|| {
            inner.downcast_ref::<category_level::CategoryLevelUdf>().map(category_level::CategoryLevelUdf::models)
        })
}

/// Registers `taxonomy_migrate` and `taxonomy_id` over the taxonomy versions in `versions`.
pub fn register_taxonomy_functions(ctx: &SessionContext, versions: Arc<TaxonomyVersions>) {
    ctx.register_udf(ScalarUDF::new_from_impl(taxonomy_migrate::TaxonomyMigrateUdf::new(versions.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(taxonomy_id::TaxonomyIdUdf::new(versions)));
}

pub(crate) fn doc_section() -> DocSection {
    DocSection {
        include: true,
        label: "lakecat",
        description: Some("Product categorization with lakecat model bundles"),
    }
}

/// Coercion for `f([model,] id, more integers…)`: the model name stays a string, the rest
/// become Int64.
pub(crate) fn coerce_model_and_ids(
    function: &str,
    arg_types: &[DataType],
    arity: usize,
) -> datafusion::error::Result<Vec<DataType>> {
    let offset = match arg_types.len() {
        n if n == arity => 0,
        n if n == arity + 1 => 1,
        n => return plan_err!("{function} takes {arity} arguments, or {} with a model name first; got {n}", arity + 1),
    };
    let mut coerced = arg_types.to_vec();
    if offset == 1 && !matches!(arg_types[0], DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return plan_err!("{function}: the model name must be a string, got {}", arg_types[0]);
    }
    for data_type in &mut coerced[offset..] {
        if !(data_type.is_integer() || data_type.is_null()) {
            return plan_err!("{function}: expected an integer category id or level, got {data_type}");
        }
        *data_type = DataType::Int64;
    }
    Ok(coerced)
}
