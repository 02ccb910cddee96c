//! `taxonomy_migrate(category_id, 'from_version', 'to_version')`: where a category of one
//! taxonomy version goes in another (same path, or the migration rules), without re-scoring.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use lakecat_core::Migrated;

use crate::doc_section;
use crate::registry::Shared;
use crate::taxonomy_versions::TaxonomyVersions;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TaxonomyMigrateUdf {
    signature: Signature,
    versions: Shared<TaxonomyVersions>,
}

impl TaxonomyMigrateUdf {
    pub fn new(versions: Arc<TaxonomyVersions>) -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable), versions: Shared::new(versions) }
    }
}

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("category_id", DataType::Int64, true),
        Field::new("path", DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true),
        Field::new("status", DataType::Utf8, true),
    ])
}

/// A version argument: a string literal.
pub(crate) fn version_literal(function: &str, value: &ColumnarValue) -> Result<String> {
    match value {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(version))
            | ScalarValue::Utf8View(Some(version))
            | ScalarValue::LargeUtf8(Some(version)),
        ) => Ok(version.clone()),
        _ => exec_err!("{function}: taxonomy versions must be string literals, e.g. '2021-09-21'"),
    }
}

pub(crate) fn coerce_to(function: &str, arg_types: &[DataType], first: DataType) -> Result<Vec<DataType>> {
    let arity = if first == DataType::Int64 { 3 } else { 2 };
    if arg_types.len() != arity {
        return plan_err!("{function} takes {arity} arguments, got {}", arg_types.len());
    }
    let mut coerced = vec![first];
    coerced.extend(std::iter::repeat_n(DataType::Utf8, arity - 1));
    Ok(coerced)
}

impl ScalarUDFImpl for TaxonomyMigrateUdf {
    fn name(&self) -> &str {
        "taxonomy_migrate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(self.name(), arg_types, DataType::Int64)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let from = version_literal(self.name(), &args.args[1])?;
        let to = version_literal(self.name(), &args.args[2])?;
        let migration = self.versions.migration(&from, &to)?;
        let target = self.versions.get(&to)?;
        let ids = args.args[0].to_array(args.number_rows)?;
        let (mut new_ids, mut paths, mut statuses) =
            (Int64Builder::new(), ListBuilder::new(StringBuilder::new()), StringBuilder::new());
        for id in ids.as_primitive::<Int64Type>() {
            let migrated = id.and_then(|id| u32::try_from(id).ok()).map(|id| migration.migrate(id));
            match migrated {
                None => {
                    new_ids.append_null();
                    paths.append_null();
                    statuses.append_null();
                }
                Some(Migrated::To(new)) => {
                    new_ids.append_value(i64::from(new));
                    paths.append_value(target.path(new).into_iter().map(Some));
                    statuses.append_value("mapped");
                }
                Some(Migrated::Broader(new)) => {
                    new_ids.append_value(i64::from(new));
                    paths.append_value(target.path(new).into_iter().map(Some));
                    statuses.append_value("mapped to a broader category");
                }
                Some(Migrated::Split(candidates)) => {
                    new_ids.append_null();
                    paths.append_null();
                    let names: Vec<String> = candidates.iter().map(|id| target.path(*id).join(" > ")).collect();
                    statuses.append_value(format!("split into {}", names.join(" | ")));
                }
                Some(Migrated::Unmapped) => {
                    new_ids.append_null();
                    paths.append_null();
                    statuses.append_value(format!("unmapped: no category of {to:?} has this path or a rule"));
                }
            }
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(new_ids.finish()), Arc::new(paths.finish()), Arc::new(statuses.finish())];
        let nulls = ids.logical_nulls();
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields(), columns, nulls)?)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "Where a category of one taxonomy version goes in another: the category with the same path, or what the migration rules say (renames and merges carry subcategories along). Returns struct{category_id, path, status}: status 'mapped', 'mapped to a broader category' (a rule moved its parent and the new version has no such subcategory), 'split into A | B' (not decided: category_id NULL) or 'unmapped: …'. NULL for a NULL id.",
                "taxonomy_migrate(category_id, 'from_version', 'to_version')",
            )
            .with_argument("category_id", "A category id of from_version.")
            .with_argument("from_version", "A stored taxonomy version (string literal).")
            .with_argument("to_version", "The version to migrate to (string literal).")
            .with_sql_example("```sql\n> SELECT taxonomy_migrate(category_id, 'v1', 'v2')['category_id'] FROM predictions;\n```")
            .with_related_udf("taxonomy_id")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}
