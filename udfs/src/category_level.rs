//! `category_level([model,] category_id, level)`: the name of a category's ancestor at a level.

use std::sync::{Arc, LazyLock};

use arrow::array::{AsArray, StringBuilder};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::model_arg::{self, MODEL_ARGUMENT_DOC};
use crate::registry::{ModelRegistry, SharedModels};
use crate::{coerce_model_and_ids, doc_section};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CategoryLevelUdf {
    signature: Signature,
    models: SharedModels,
}

impl CategoryLevelUdf {
    /// The models it scores with (what a cluster plan names).
    pub fn models(&self) -> &Arc<ModelRegistry> {
        self.models.shared()
    }

    pub fn new(models: Arc<ModelRegistry>) -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), models: SharedModels::new(models) }
    }
}

impl ScalarUDFImpl for CategoryLevelUdf {
    fn name(&self) -> &str {
        "category_level"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_model_and_ids(self.name(), arg_types, 2)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (engine, inputs) = model_arg::split(&self.models, self.name(), 2, &args.args, |value| {
            model_arg::from_value(self.name(), value)
        })?;
        let ids = inputs[0].to_array(args.number_rows)?;
        let levels = inputs[1].to_array(args.number_rows)?;
        let taxonomy = engine.bundle().taxonomy();
        let mut names = StringBuilder::new();
        for (id, level) in ids.as_primitive::<Int64Type>().iter().zip(levels.as_primitive::<Int64Type>()) {
            let name =
                match (id.and_then(|id| u32::try_from(id).ok()), level.and_then(|level| usize::try_from(level).ok())) {
                    (Some(id), Some(level)) if level >= 1 => taxonomy.path(id).get(level - 1).copied(),
                    _ => None,
                };
            names.append_option(name);
        }
        Ok(ColumnarValue::Array(Arc::new(names.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "The name of a category's ancestor at a level (1 = top level), or the category itself at its own depth. NULL past the category's depth and for NULL or unknown ids.",
                "category_level([model,] category_id, level)",
            )
            .with_argument("model", MODEL_ARGUMENT_DOC)
            .with_argument("category_id", "A taxonomy id, e.g. categorize(…).category_id.")
            .with_argument("level", "1-based level.")
            .with_sql_example("```sql\n> SELECT category_level(c.category_id, 1) AS department FROM scored;\n```")
            .with_related_udf("category_path")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}
