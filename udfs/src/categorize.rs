//! `categorize([model,] image, title, description)`: the predicted category of each row.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use lakecat_core::text::field_from_bytes;

use crate::arrays::{byte_values, is_bytes, is_text, string_values};
use crate::config::LakecatOptions;
use crate::doc_section;
use crate::engine::{Engine, RowInput};
use crate::error::{RowError, Stage};
use crate::fetch::{FetchSettings, ImageFetcher};
use crate::model_arg::{self, MODEL_ARGUMENT_DOC};
use crate::prediction::{PredictionBuilder, PredictionSettings, prediction_fields};
use crate::registry::{ModelRegistry, SharedModels};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CategorizeUdf {
    signature: Signature,
    models: SharedModels,
    fetcher: ImageFetcher,
}

impl CategorizeUdf {
    /// The models it scores with (what a cluster plan names).
    pub fn models(&self) -> &Arc<ModelRegistry> {
        self.models.shared()
    }

    pub fn new(models: Arc<ModelRegistry>) -> Self {
        Self {
            // Volatile, although a bundle is deterministic: the result depends on images fetched
            // from outside, and DataFusion pushes a filter on a non-volatile projection column
            // below it by inlining the call, which would run the model twice per row for
            // `WHERE c.confidence < 0.5`.
            signature: Signature::user_defined(Volatility::Volatile),
            models: SharedModels::new(models),
            fetcher: ImageFetcher::default(),
        }
    }

    /// Fetches, decodes and scores one window of rows into `builder`.
    fn score_window(
        &self,
        engine: &Engine,
        arrays: &[ArrayRef],
        fetch: &FetchSettings,
        builder: &mut PredictionBuilder<'_>,
    ) -> Result<()> {
        let rows = arrays[0].len();
        let bundle = engine.bundle();
        let images =
            if bundle.image().is_some() { self.fetcher.images(&arrays[0], fetch)? } else { vec![Ok(None); rows] };
        let reads_text = bundle.text().is_some();
        let titles = text_values("title", &arrays[1], reads_text)?;
        let descriptions = text_values("description", &arrays[2], reads_text)?;

        // Rows that can be scored go to the engine; the others keep their error.
        let mut staged: Vec<Result<RowInput<'_>, RowError>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let input = (|| {
                let image = images[row].as_ref().map_err(Clone::clone)?.as_deref();
                let title = titles[row].clone()?;
                let description = descriptions[row].clone()?;
                if image.is_none() && title.is_none() && description.is_none() {
                    return Err(nothing_to_score(bundle.image().is_some(), reads_text));
                }
                Ok(RowInput { image, title, description })
            })();
            staged.push(input);
        }
        let ready: Vec<RowInput<'_>> = staged.iter().filter_map(|row| row.as_ref().ok().copied()).collect();
        let mut scored = engine.score(&ready).into_iter();
        for row in &staged {
            match row {
                Ok(_) => match scored.next() {
                    Some(result) => builder.append(result.as_deref()),
                    None => return exec_err!("the engine returned fewer results than rows"),
                },
                Err(error) => builder.append(Err(error)),
            }
        }
        Ok(())
    }
}

impl ScalarUDFImpl for CategorizeUdf {
    fn name(&self) -> &str {
        "categorize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let inputs = match arg_types.len() {
            3 => arg_types,
            4 if is_text(&arg_types[0]) => &arg_types[1..],
            4 => {
                return plan_err!(
                    "categorize: the first of four arguments is the model name, a string; got {}",
                    arg_types[0]
                );
            }
            n => {
                return plan_err!(
                    "categorize takes (image, title, description) or ('model', image, title, description), got {n} arguments"
                );
            }
        };
        let image = &inputs[0];
        if !(is_bytes(image) || is_text(image) || image.is_null()) {
            return plan_err!("categorize: image must be the image bytes (BINARY) or a URI/path string, got {image}");
        }
        for (name, data_type) in [("title", &inputs[1]), ("description", &inputs[2])] {
            if !(is_text(data_type) || is_bytes(data_type) || data_type.is_null()) {
                return plan_err!(
                    "categorize: {name} must be a string, got {data_type}; cast it with CAST({name} AS VARCHAR)"
                );
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        let engine = self.models.get(None)?;
        Ok(DataType::Struct(prediction_fields(engine.bundle().taxonomy().max_depth())))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let (engine, _) = model_arg::split(&self.models, self.name(), 3, args.scalar_arguments, |literal| {
            model_arg::from_literal(self.name(), literal)
        })?;
        let fields = prediction_fields(engine.bundle().taxonomy().max_depth());
        Ok(Arc::new(Field::new(self.name(), DataType::Struct(fields), false)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (engine, inputs) = model_arg::split(&self.models, self.name(), 3, &args.args, |value| {
            model_arg::from_value(self.name(), value)
        })?;
        let arrays = inputs.iter().map(|value| value.to_array(rows)).collect::<Result<Vec<ArrayRef>>>()?;
        let options = LakecatOptions::resolve(&args.config_options, self.models.settings())?;
        let fetch = match FetchSettings::from_options(&options) {
            Ok(fetch) => fetch,
            Err(message) => return exec_err!("{message}"),
        };
        let bundle = engine.bundle();
        let settings = PredictionSettings { top_k: options.top_k, confidence_threshold: options.confidence_threshold };
        let mut builder =
            PredictionBuilder::new(bundle.taxonomy(), bundle.classes(), bundle.fingerprint(), settings, rows);
        // Fetched images are held one model batch at a time, so a partition holds at most
        // `batch_size × max_image_bytes` of them whatever the DataFusion batch size is.
        let window = engine.batch_size().max(1);
        for start in (0..rows).step_by(window) {
            let length = window.min(rows - start);
            let slices: Vec<ArrayRef> = arrays.iter().map(|array| array.slice(start, length)).collect();
            self.score_window(engine, &slices, &fetch, &mut builder)?;
        }
        Ok(ColumnarValue::Array(Arc::new(builder.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                doc_section(),
                "Predicts the category of each product with a lakecat model bundle (ONNX Runtime). \
                 Returns a struct: category_id, category (leaf name), path (names, root first), \
                 level_1 … level_k, confidence (calibrated probability of the leaf), top_k \
                 (list of {category_id, category, confidence}), confident_category_id and \
                 confident_path (the deepest category whose probability reaches \
                 lakecat.confidence_threshold), model (name@fingerprint), error and error_stage. A row that \
                 cannot be scored keeps its place with NULL predictions, error = 'stage: reason' and \
                 error_stage = 'stage' (stage is input, refused, fetch, decode, text or inference; refused means a policy said no: a location outside lakecat.allowed_locations, an image over lakecat.max_image_bytes); the query never fails because \
                 of one row. A row with no image is scored from its text. Each call runs the \
                 model: call it once in a subquery or CTE and read the fields of its result, as in \
                 the example, rather than once per field.",
                "categorize([model,] image, title, description)",
            )
            .with_argument("model", MODEL_ARGUMENT_DOC)
            .with_argument("image", "The image bytes (BINARY: JPEG, PNG, WebP, GIF, BMP, TIFF) or its location: a path (relative to lakecat.image_root), file://, s3://, gs://, az://, or http(s):// when lakecat.allow_http is true; only locations allowed by lakecat.allowed_locations (default: under lakecat.image_root, any cloud bucket) are fetched.")
            .with_argument("title", "Product title (string; may be NULL).")
            .with_argument("description", "Product description (string; may be NULL).")
            .with_sql_example(
                "```sql\n> SELECT id, c.category, c.level_1, round(c.confidence, 3) AS confidence\n  FROM (SELECT id, categorize(image, title, description) AS c FROM products);\n```",
            )
            .with_related_udf("taxonomy")
            .with_related_udf("category_path")
            .build()
        });
        Some(&DOCUMENTATION)
    }
}

/// Text per row; bytes that are not UTF-8 are that row's error. When the model reads no text,
/// every row gets `None` without looking at the column.
fn text_values<'a>(
    field: &'static str,
    column: &'a ArrayRef,
    needed: bool,
) -> Result<Vec<Result<Option<&'a str>, RowError>>> {
    if !needed {
        return Ok(vec![Ok(None); column.len()]);
    }
    let decode = |values: Vec<Option<&'a [u8]>>| {
        values
            .into_iter()
            .map(|value| {
                value
                    .map(|bytes| field_from_bytes(field, bytes))
                    .transpose()
                    .map_err(|error| RowError::new(Stage::Text, error))
            })
            .collect()
    };
    Ok(if is_bytes(column.data_type()) {
        decode(byte_values(column)?)
    } else {
        string_values(column)?.into_iter().map(Ok).collect()
    })
}

/// The error of a row in which every input the model reads is NULL.
fn nothing_to_score(reads_image: bool, reads_text: bool) -> RowError {
    let what = match (reads_image, reads_text) {
        (true, true) => "image, title and description are all NULL",
        (true, false) => "the image is NULL and this model reads only images",
        _ => "title and description are both NULL and this model reads only text",
    };
    RowError::new(Stage::Input, format!("nothing to score: {what}"))
}
