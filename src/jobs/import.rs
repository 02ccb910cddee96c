//! `lakecat import`: a CSV or Parquet file of products plus their images → a Delta table.
//!
//! The table has `product_id`, `title`, `description`, the image (bytes in `image`, or the
//! location in `image_uri`), `image_source` (where the image came from), the label as
//! `category` (`A > B > C`) and `category_path` (list, top level first), followed by every
//! source column, so nothing of the input is lost. Rows whose image cannot be read are kept with
//! a NULL image and counted in the report.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::protocol::SaveMode;
use lakecat_core::bundle::is_plain_file_name;
use lakecat_core::taxonomy::split_path;
use lakecat_core::{Progress, Quiet};
use lakecat_udfs::allow_list::AllowList;
use lakecat_udfs::fetch::{FetchSettings, ImageFetcher};

use crate::{Error, Result, delta};

/// Where the label of each product comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    None,
    /// One column per level, top level first (fashion: masterCategory, subCategory, articleType).
    Columns(Vec<String>),
    /// One column holding `A >> B >> C` (or `A > B > C`), cut to `max_depth` levels if given.
    Tree {
        column: String,
        max_depth: Option<usize>,
    },
}

/// Whether the table holds the image bytes or only their location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStorage {
    Embed,
    Reference,
}

#[derive(Debug, Clone)]
pub struct ImportJob {
    source: String,
    target: String,
    id_column: String,
    title_column: Option<String>,
    description_column: Option<String>,
    image_column: Option<String>,
    images_dir: Option<String>,
    images_from: Vec<String>,
    labels: Labels,
    storage: ImageStorage,
    mode: SaveMode,
    batch_rows: usize,
    storage_options: crate::StorageOptions,
    progress: Arc<dyn Progress>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub target: String,
    pub table_version: u64,
    pub rows: usize,
    pub images: usize,
    /// Rows whose image could not be read, kept with a NULL image.
    pub images_missing: usize,
    /// The first few reasons images were missing.
    pub missing_examples: Vec<String>,
    pub labelled: usize,
}

/// Where an import's images may come from, as refusals name it.
const IMAGES_FLAGS: &str = "--images (add --allow-images-from PREFIX to read elsewhere)";

const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "JPG"];

impl ImportJob {
    /// Imports `source` (a `.csv` or `.parquet` file, local or in object storage) into the
    /// Delta table at `target`.
    pub fn new(source: impl AsRef<Path>, target: impl Into<String>) -> Self {
        Self {
            source: source.as_ref().to_string_lossy().into_owned(),
            target: target.into(),
            id_column: "id".into(),
            title_column: None,
            description_column: None,
            image_column: None,
            images_dir: None,
            images_from: Vec::new(),
            labels: Labels::None,
            storage: ImageStorage::Embed,
            mode: SaveMode::ErrorIfExists,
            batch_rows: 1024,
            storage_options: crate::StorageOptions::default(),
            progress: Arc::new(Quiet),
        }
    }

    /// Options for the object stores of the source file and the target table (see
    /// [`crate::storage`]); images in object storage are fetched with the environment's
    /// credentials, as `categorize` fetches them.
    /// Where progress goes (default: nowhere; the CLI renders it).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage_options = options;
        self
    }

    pub fn with_id_column(mut self, column: impl Into<String>) -> Self {
        self.id_column = column.into();
        self
    }

    pub fn with_title_column(mut self, column: impl Into<String>) -> Self {
        self.title_column = Some(column.into());
        self
    }

    pub fn with_description_column(mut self, column: impl Into<String>) -> Self {
        self.description_column = Some(column.into());
        self
    }

    /// Column naming each product's image: a file name (relative to the images directory), a
    /// path or a URI. Without it, images are found as `<images dir>/<id>.jpg` (or .jpeg, .png, .webp).
    pub fn with_image_column(mut self, column: impl Into<String>) -> Self {
        self.image_column = Some(column.into());
        self
    }

    /// The folder of the images: a local directory or a prefix in object storage.
    pub fn with_images_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.images_dir = Some(dir.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Further places (directories or `scheme://bucket/prefix`) that `--image-column` values
    /// may name. Without it an import reads images only inside the images directory: a CSV
    /// cell naming `../x`, `/proc/self/environ` or `file:///etc/passwd` is refused.
    pub fn with_images_from(mut self, prefix: impl Into<String>) -> Self {
        self.images_from.push(prefix.into());
        self
    }

    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    pub fn with_image_storage(mut self, storage: ImageStorage) -> Self {
        self.storage = storage;
        self
    }

    /// `ErrorIfExists` (default), `Overwrite` or `Append`.
    pub fn with_save_mode(mut self, mode: SaveMode) -> Self {
        self.mode = mode;
        self
    }

    pub async fn execute(self) -> Result<ImportReport> {
        let bytes = crate::storage::read_file(&self.source, &self.storage_options).await?;
        let input = read_source(&self.source, bytes, self.batch_rows)?;
        self.check_columns(&input.schema)?;
        let total: usize = input.batches.iter().map(RecordBatch::num_rows).sum();
        let progress = &self.progress;
        progress.start(&format!("importing {}", self.source), Some(total as u64));
        let fetcher = ImageFetcher::default();
        let settings = self.fetch_settings()?;
        let mut report = ImportReport {
            target: self.target.clone(),
            table_version: 0,
            rows: total,
            images: 0,
            images_missing: 0,
            missing_examples: Vec::new(),
            labelled: 0,
        };
        let mut output = Vec::with_capacity(input.batches.len());
        for batch in &input.batches {
            output.push(self.convert(batch, &fetcher, &settings, &mut report)?);
            progress.advance(batch.num_rows() as u64);
        }
        progress.finish();
        report.table_version = delta::write_table(&self.target, output, self.mode, &self.storage_options).await?;
        Ok(report)
    }

    /// Images are read only under the directory and prefixes the user named for this import.
    fn fetch_settings(&self) -> Result<FetchSettings> {
        let cwd = std::env::current_dir().map_err(|source| Error::io(".", source))?;
        let allowed: Vec<&str> = self.images_dir.iter().chain(&self.images_from).map(String::as_str).collect();
        let allowed = AllowList::parse(&allowed.join(","), &cwd)
            .map_err(|message| Error::Input(message.replace("lakecat.allowed_locations", "`images_from`")))?;
        let allowed = match allowed {
            // Nothing named: nothing may be read (every row says how to allow it).
            AllowList::Default => AllowList::Prefixes { prefixes: Vec::new(), setting: IMAGES_FLAGS },
            named => named.given_by(IMAGES_FLAGS),
        };
        Ok(FetchSettings::for_import(cwd, allowed))
    }

    fn check_columns(&self, schema: &Schema) -> Result<()> {
        let mut wanted: Vec<&str> = vec![&self.id_column];
        wanted.extend(self.title_column.as_deref());
        wanted.extend(self.description_column.as_deref());
        wanted.extend(self.image_column.as_deref());
        match &self.labels {
            Labels::None => {}
            Labels::Columns(columns) => wanted.extend(columns.iter().map(String::as_str)),
            Labels::Tree { column, .. } => wanted.push(column),
        }
        let missing: Vec<&str> = wanted.into_iter().filter(|name| schema.index_of(name).is_err()).collect();
        if !missing.is_empty() {
            let available: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
            return Err(Error::Input(format!(
                "{} has no column {} (its columns: {})",
                self.source,
                missing.join(", "),
                available.join(", ")
            )));
        }
        if self.image_column.is_none() && self.images_dir.is_none() {
            return Err(Error::Input(
                "say where the images are: `images_dir` (files named <id>.jpg) and/or `image_column`".into(),
            ));
        }
        Ok(())
    }

    fn output_schema(&self, source: &Schema) -> SchemaRef {
        let image = match self.storage {
            ImageStorage::Embed => Field::new("image", DataType::Binary, true),
            ImageStorage::Reference => Field::new("image_uri", DataType::Utf8, true),
        };
        let mut fields = vec![
            Field::new("product_id", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
            image,
            Field::new("image_source", DataType::Utf8, true),
            Field::new("category", DataType::Utf8, true),
            Field::new("category_path", DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true),
        ];
        let ours: HashSet<String> = fields.iter().map(|field| field.name().clone()).collect();
        for field in source.fields() {
            let name =
                if ours.contains(field.name()) { format!("source_{}", field.name()) } else { field.name().clone() };
            fields.push(Field::new(name, DataType::Utf8, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn convert(
        &self,
        batch: &RecordBatch,
        fetcher: &ImageFetcher,
        settings: &FetchSettings,
        report: &mut ImportReport,
    ) -> Result<RecordBatch> {
        let column = |name: &str| -> &StringArray {
            batch.column_by_name(name).expect("checked columns exist").as_string::<i32>()
        };
        let ids = column(&self.id_column);
        if ids.null_count() > 0 {
            return Err(Error::Input(format!(
                "column {} has empty product ids; every product needs one",
                self.id_column
            )));
        }
        let optional = |name: &Option<String>| -> ArrayRef {
            match name {
                Some(name) => batch.column_by_name(name).expect("checked columns exist").clone(),
                None => Arc::new(StringArray::new_null(batch.num_rows())),
            }
        };
        let image_names = self.image_column.as_deref().map(column);
        let sources: Vec<Option<String>> =
            (0..batch.num_rows()).map(|row| self.image_source(ids.value(row), image_names, row)).collect();
        let source_refs: Vec<Option<&str>> = sources.iter().map(Option::as_deref).collect();
        let image: ArrayRef = match self.storage {
            ImageStorage::Embed => {
                let mut images = BinaryBuilder::new();
                for (fetched, source) in fetcher.fetch_all(&source_refs, settings).into_iter().zip(&sources) {
                    match fetched {
                        Some(Ok(bytes)) => {
                            report.images += 1;
                            images.append_value(&bytes);
                        }
                        Some(Err(error)) => {
                            self.count_missing(report, error.to_string());
                            images.append_null();
                        }
                        None => {
                            self.count_missing(report, format!("no image given (source {source:?})"));
                            images.append_null();
                        }
                    }
                }
                Arc::new(images.finish())
            }
            ImageStorage::Reference => {
                report.images += source_refs.iter().flatten().count();
                Arc::new(StringArray::from(source_refs.clone()))
            }
        };
        let mut category = StringBuilder::new();
        let mut category_path = ListBuilder::new(StringBuilder::new());
        for row in 0..batch.num_rows() {
            let path = self.label_path(batch, row);
            if path.is_empty() {
                category.append_null();
                category_path.append_null();
            } else {
                report.labelled += 1;
                category.append_value(path.join(" > "));
                category_path.append_value(path.iter().map(Some));
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(ids.clone()),
            optional(&self.title_column),
            optional(&self.description_column),
            image,
            Arc::new(StringArray::from(source_refs)),
            Arc::new(category.finish()),
            Arc::new(category_path.finish()),
        ];
        columns.extend(batch.columns().iter().cloned());
        Ok(RecordBatch::try_new(self.output_schema(&batch.schema()), columns)?)
    }

    fn count_missing(&self, report: &mut ImportReport, reason: String) {
        report.images_missing += 1;
        if report.missing_examples.len() < 5 {
            report.missing_examples.push(reason);
        }
    }

    /// Where row `row`'s image is: the image column's value (joined to the images directory
    /// when relative), or the first `<images dir>/<id>.<ext>` that exists.
    fn image_source(&self, id: &str, image_column: Option<&StringArray>, row: usize) -> Option<String> {
        if let Some(column) = image_column {
            let value = column.is_valid(row).then(|| column.value(row).trim()).filter(|value| !value.is_empty())?;
            return Some(match &self.images_dir {
                Some(dir) if !value.contains("://") && !Path::new(value).is_absolute() => join(dir, value),
                _ => value.to_string(),
            });
        }
        let dir = self.images_dir.as_ref()?;
        // The id is data: it names a file only when it is one plain file name.
        if !is_plain_file_name(id) {
            return None;
        }
        if dir.contains("://") {
            // Object storage: no cheap existence check per extension; images are <id>.jpg.
            return Some(join(dir, &format!("{id}.jpg")));
        }
        let dir = Path::new(dir);
        let found = IMAGE_EXTENSIONS.iter().map(|ext| dir.join(format!("{id}.{ext}"))).find(|path| path.is_file());
        Some(found.unwrap_or_else(|| dir.join(format!("{id}.jpg"))).display().to_string())
    }

    fn label_path(&self, batch: &RecordBatch, row: usize) -> Vec<String> {
        let value = |name: &str| {
            let column = batch.column_by_name(name).expect("checked columns exist").as_string::<i32>();
            column.is_valid(row).then(|| column.value(row).trim().to_string()).filter(|value| !value.is_empty())
        };
        match &self.labels {
            Labels::None => Vec::new(),
            Labels::Columns(columns) => columns.iter().map_while(|name| value(name)).collect(),
            Labels::Tree { column, max_depth } => {
                let mut path = value(column).map(|tree| split_path(&tree)).unwrap_or_default();
                if let Some(depth) = max_depth {
                    path.truncate(*depth);
                }
                path
            }
        }
    }
}

struct SourceData {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// `name` inside the folder `dir` (a local directory or an object storage prefix).
fn join(dir: &str, name: &str) -> String {
    if dir.contains("://") {
        format!("{}/{name}", dir.trim_end_matches('/'))
    } else {
        Path::new(dir).join(name).display().to_string()
    }
}

/// Reads a CSV (header row, every column as text) or Parquet file (columns cast to text) from
/// its bytes; `name` says which it is.
fn read_source(name: &str, bytes: bytes::Bytes, batch_rows: usize) -> Result<SourceData> {
    let open = || Ok::<_, Error>(std::io::Cursor::new(bytes.clone()));
    let extension = Path::new(name).extension().and_then(|ext| ext.to_str()).unwrap_or_default().to_lowercase();
    let batches: Vec<RecordBatch> = match extension.as_str() {
        "csv" => {
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (inferred, _) = format.infer_schema(open()?, Some(100))?;
            let schema = Arc::new(Schema::new(
                inferred
                    .fields()
                    .iter()
                    .map(|field| Field::new(field.name(), DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            let reader =
                arrow::csv::ReaderBuilder::new(schema).with_format(format).with_batch_size(batch_rows).build(open()?)?;
            reader.collect::<Result<_, _>>()?
        }
        "parquet" => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .map_err(|error| Error::Input(format!("{name}: {error}")))?
                .with_batch_size(batch_rows)
                .build()
                .map_err(|error| Error::Input(format!("{name}: {error}")))?;
            let mut batches = Vec::new();
            for batch in reader {
                batches.push(as_text(&batch?)?);
            }
            batches
        }
        _ => return Err(Error::Input(format!("{name}: expected a .csv or .parquet file"))),
    };
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => return Err(Error::Input(format!("{name} has no rows"))),
    };
    Ok(SourceData { schema, batches })
}

/// Every column of a Parquet batch as text, as CSV columns are.
fn as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch.columns().iter().map(|column| cast(column, &DataType::Utf8)).collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> =
        batch.schema().fields().iter().map(|field| Field::new(field.name(), DataType::Utf8, true)).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
