//! `image_version(image)`: which version of an image a URI names now, without reading it, so a
//! refresh notices a product photo replaced under the same URI.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::arrays::{is_bytes, is_text, string_values};
use crate::config::LakecatOptions;
use crate::doc_section;
use crate::fetch::{FetchSettings, ImageFetcher};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ImageVersionUdf {
    signature: Signature,
    fetcher: ImageFetcher,
}

impl ImageVersionUdf {
    pub fn new() -> Self {
        // Volatile: the answer depends on the store, not on the argument alone.
        Self { signature: Signature::user_defined(Volatility::Volatile), fetcher: ImageFetcher::default() }
    }
}

impl Default for ImageVersionUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ImageVersionUdf {
    fn name(&self) -> &str {
        "image_version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [data_type] if is_bytes(data_type) || is_text(data_type) || data_type.is_null() => Ok(arg_types.to_vec()),
            [other] => plan_err!("image_version: expected image bytes or an image URI, got {other}"),
            _ => plan_err!("image_version takes one argument (the image), got {}", arg_types.len()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let column = args.args[0].to_array(args.number_rows)?;
        if !is_text(column.data_type()) {
            // Image bytes are hashed by content: they have no other version.
            return Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(args.number_rows))));
        }
        let options = LakecatOptions::from_config(&args.config_options);
        let settings = match FetchSettings::from_options(&options) {
            Ok(settings) => settings,
            Err(message) => return exec_err!("{message}"),
        };
        let versions = self.fetcher.versions_all(&string_values(&column)?, &settings);
        let versions: ArrayRef = Arc::new(StringArray::from(versions));
        Ok(ColumnarValue::Array(versions))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "The version of the object an image URI names, read with one HEAD request (no image bytes): its ETag, else its object version, else size and modification time; a local file's size and modification time. NULL for image bytes, NULL, and URIs that cannot be reached or are refused. `lakecat refresh` hashes it with the URI, so an image replaced under the same URI is rescored.",
                "image_version(image)",
            )
            .with_argument("image", "An image URI (string) or image bytes (BINARY).")
            .with_sql_example("```sql\n> SELECT product_id, image_version(image_uri) FROM products;\n```")
            .with_related_udf("content_hash")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_rewritten_local_file_has_a_new_version_and_bytes_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shirt.jpg");
        std::fs::write(&path, b"first").unwrap();
        let settings = FetchSettings::for_import(dir.path().to_path_buf(), crate::allow_list::AllowList::Any);
        let fetcher = ImageFetcher::default();
        let uri = path.display().to_string();
        let uris = [Some(uri.as_str()), None, Some("missing.jpg")];
        let before = fetcher.versions_all(&uris, &settings);
        assert!(before[0].as_deref().is_some_and(|version| version.starts_with("5 bytes, modified ")), "{before:?}");
        assert_eq!(&before[1..], &[None, None]);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"second").unwrap();
        let after = fetcher.versions_all(&uris, &settings);
        assert_ne!(before[0], after[0]);
        assert_eq!(fetcher.versions_all(&uris, &settings)[0], after[0], "unchanged files keep their version");
    }
}
