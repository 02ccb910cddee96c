//! `taxonomy_id(path, 'version')`: the id of a category path (`A > B > C` or `A >> B >> C`) in a
//! stored taxonomy version; what labels written as paths need before `taxonomy_migrate`.

use std::sync::{Arc, LazyLock};

use arrow::array::{AsArray, Int64Builder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use lakecat_core::taxonomy::split_path;

use crate::doc_section;
use crate::registry::Shared;
use crate::taxonomy_migrate::{coerce_to, version_literal};
use crate::taxonomy_versions::TaxonomyVersions;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TaxonomyIdUdf {
    signature: Signature,
    versions: Shared<TaxonomyVersions>,
}

impl TaxonomyIdUdf {
    pub fn new(versions: Arc<TaxonomyVersions>) -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), versions: Shared::new(versions) }
    }
}

impl ScalarUDFImpl for TaxonomyIdUdf {
    fn name(&self) -> &str {
        "taxonomy_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(self.name(), arg_types, DataType::Utf8)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let version = version_literal(self.name(), &args.args[1])?;
        let taxonomy = self.versions.get(&version)?;
        let paths = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let mut ids = Int64Builder::with_capacity(paths.len());
        for path in paths.as_string::<i32>() {
            ids.append_option(path.and_then(|path| taxonomy.find_path(&split_path(path))).map(i64::from));
        }
        Ok(ColumnarValue::Array(Arc::new(ids.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "The id of a category path in a stored taxonomy version; NULL when the version has no such category.",
                "taxonomy_id(path, 'version')",
            )
            .with_argument("path", "A category path, 'A > B > C' or 'A >> B >> C'.")
            .with_argument("version", "A stored taxonomy version (string literal).")
            .with_sql_example("```sql\n> SELECT taxonomy_id(category, '2021-09-21') FROM labels;\n```")
            .with_related_udf("taxonomy_migrate")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}
