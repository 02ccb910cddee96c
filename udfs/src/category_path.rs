//! `category_path([model,] category_id)`: the names from the top level down to a category.

use std::sync::{Arc, LazyLock};

use arrow::array::{AsArray, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::model_arg::{self, MODEL_ARGUMENT_DOC};
use crate::registry::{ModelRegistry, SharedModels};
use crate::{coerce_model_and_ids, doc_section};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CategoryPathUdf {
    signature: Signature,
    models: SharedModels,
}

impl CategoryPathUdf {
    /// The models it scores with (what a cluster plan names).
    pub fn models(&self) -> &Arc<ModelRegistry> {
        self.models.shared()
    }

    pub fn new(models: Arc<ModelRegistry>) -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), models: SharedModels::new(models) }
    }
}

impl ScalarUDFImpl for CategoryPathUdf {
    fn name(&self) -> &str {
        "category_path"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_model_and_ids(self.name(), arg_types, 1)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (engine, inputs) = model_arg::split(&self.models, self.name(), 1, &args.args, |value| {
            model_arg::from_value(self.name(), value)
        })?;
        let ids = inputs[0].to_array(args.number_rows)?;
        let taxonomy = engine.bundle().taxonomy();
        let mut paths = ListBuilder::new(StringBuilder::new());
        for id in ids.as_primitive::<Int64Type>() {
            match id.and_then(|id| u32::try_from(id).ok()).filter(|&id| taxonomy.contains(id)) {
                Some(id) => paths.append_value(taxonomy.path(id).into_iter().map(Some)),
                None => paths.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(paths.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "The names of a category and its ancestors, top level first, in the model's taxonomy. NULL for NULL or unknown ids.",
                "category_path([model,] category_id)",
            )
            .with_argument("model", MODEL_ARGUMENT_DOC)
            .with_argument("category_id", "A taxonomy id, e.g. categorize(…).category_id.")
            .with_sql_example("```sql\n> SELECT category_path(category_id) FROM taxonomy() WHERE is_leaf LIMIT 1;\n```")
            .with_related_udf("category_level")
            .with_related_udf("categorize")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}
