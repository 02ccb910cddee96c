//! `content_hash(image, title, description [, image_version])`: a fingerprint of what
//! `categorize` reads, so a refresh rescores only rows whose inputs changed.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::arrays::{byte_values, is_bytes, is_text};
use crate::doc_section;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ContentHashUdf {
    signature: Signature,
}

impl ContentHashUdf {
    pub fn new() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl Default for ContentHashUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ContentHashUdf {
    fn name(&self) -> &str {
        "content_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(3..=4).contains(&arg_types.len()) {
            return plan_err!(
                "content_hash takes (image, title, description [, image_version]), got {} arguments",
                arg_types.len()
            );
        }
        for data_type in arg_types {
            if !(is_bytes(data_type) || is_text(data_type) || data_type.is_null()) {
                return plan_err!("content_hash: expected binary or string arguments, got {data_type}");
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let columns =
            args.args.iter().map(|value| value.to_array(args.number_rows)).collect::<Result<Vec<ArrayRef>>>()?;
        Ok(ColumnarValue::Array(Arc::new(content_hashes(&columns)?)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "A 128-bit BLAKE3 fingerprint (32 hex digits) of a product's inputs. Image bytes are hashed by content, an image URI by its text and, when given, the object's version (`image_version(image)`: a NULL version adds nothing); NULL, empty and a different type all hash differently. `lakecat refresh` rescores a row when this or the model changes.",
                "content_hash(image, title, description [, image_version])",
            )
            .with_argument("image", "Image bytes (BINARY) or an image URI (string), or NULL.")
            .with_argument("title", "Product title, or NULL.")
            .with_argument("description", "Product description, or NULL.")
            .with_argument("image_version", "Optional: the image object's version, from image_version(image).")
            .with_sql_example("```sql\n> SELECT product_id, content_hash(image, title, description) FROM products;\n```")
            .with_related_udf("categorize")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}

/// One hash per row over the image, title and description. Each value is framed by a type tag
/// and its length, so ("ab", "c") and ("a", "bc") differ, as do NULL and "". A fourth column,
/// the image's version, is added only where it is not NULL, so hashes without one are those
/// of the three inputs alone.
pub fn content_hashes(columns: &[ArrayRef]) -> Result<arrow::array::StringArray> {
    let rows = columns.first().map_or(0, |column| column.len());
    let (inputs, version) = columns.split_at(columns.len().min(3));
    let version = version.first().map(byte_values).transpose()?;
    let values = inputs.iter().map(byte_values).collect::<Result<Vec<_>>>()?;
    let tags: Vec<u8> = columns.iter().map(|column| if is_bytes(column.data_type()) { b'b' } else { b's' }).collect();
    let mut hashes = StringBuilder::with_capacity(rows, rows * 32);
    for row in 0..rows {
        let mut hasher = blake3::Hasher::new();
        for (column, &tag) in values.iter().zip(&tags) {
            match column[row] {
                None => hasher.update(b"n"),
                Some(value) => hasher.update(&[tag]).update(&(value.len() as u64).to_le_bytes()).update(value),
            };
        }
        if let Some(version) = version.as_ref().and_then(|versions| versions[row]) {
            hasher.update(b"v").update(&(version.len() as u64).to_le_bytes()).update(version);
        }
        hashes.append_value(hex::encode(&hasher.finalize().as_bytes()[..16]));
    }
    Ok(hashes.finish())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, BinaryArray, StringArray, StringViewArray};

    use super::*;

    fn hash(columns: Vec<ArrayRef>) -> Vec<String> {
        let hashes = content_hashes(&columns).unwrap();
        (0..hashes.len()).map(|row| hashes.value(row).to_string()).collect()
    }

    #[test]
    fn frames_values_so_shifted_or_null_fields_differ() {
        let image: ArrayRef = Arc::new(BinaryArray::from_iter([Some(&b"img"[..]); 4]));
        let titles: ArrayRef = Arc::new(StringArray::from(vec![Some("ab"), Some("a"), None, Some("")]));
        let descriptions: ArrayRef = Arc::new(StringArray::from(vec![Some("c"), Some("bc"), Some(""), None]));
        let hashes = hash(vec![image, titles, descriptions]);
        assert!(hashes.iter().all(|hash| hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit())));
        let distinct: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), 4, "{hashes:?}");
    }

    #[test]
    fn same_values_same_hash_whatever_the_layout() {
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["shirt"]));
        let view: ArrayRef = Arc::new(StringViewArray::from(vec!["shirt"]));
        let null: ArrayRef = Arc::new(StringArray::new_null(1));
        assert_eq!(
            hash(vec![plain.clone(), plain.clone(), null.clone()]),
            hash(vec![view.clone(), view, null.clone()])
        );
        // An image URI and the same text as image bytes are different inputs.
        let bytes: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"shirt"]));
        assert_ne!(hash(vec![plain.clone(), null.clone(), null.clone()]), hash(vec![bytes, null.clone(), null]));
    }

    #[test]
    fn an_image_version_changes_the_hash_and_a_null_one_does_not() {
        let uri: ArrayRef = Arc::new(StringArray::from(vec!["s3://b/shirt.jpg"; 3]));
        let title: ArrayRef = Arc::new(StringArray::from(vec!["Blue shirt"; 3]));
        let none: ArrayRef = Arc::new(StringArray::new_null(3));
        let versions: ArrayRef = Arc::new(StringArray::from(vec![None, Some("etag \"a\""), Some("etag \"b\"")]));
        let without = hash(vec![uri.clone(), title.clone(), none.clone()]);
        let with = hash(vec![uri, title, none, versions]);
        assert_eq!(with[0], without[0], "no version: the three-input hash, so existing tables are not rescored");
        assert_ne!(with[1], without[1]);
        assert_ne!(with[1], with[2]);
    }
}
