//! Image audit: finds the products whose image is missing, unreadable, undecodable, too small,
//! or the same bytes as another product's, writes the findings to a table with the reason, and
//! optionally writes a training snapshot without them. Images are decoded by the same code as
//! scoring (`ImagePreprocessor::inspect`), so what passes here is what the model will see.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use lakecat_core::{ImageError, ImagePreprocessor, ImageSpec, Progress, Quiet};
use lakecat_udfs::config::LakecatOptions;
use lakecat_udfs::fetch::{FetchSettings, ImageFetcher};
use rayon::prelude::*;

use crate::jobs::{image_column, quote, require_columns};
use crate::{Error, Result, SessionBuilder, delta};

/// Audits the images of a products table; see the module documentation.
#[derive(Debug, Clone)]
pub struct ImageAuditJob {
    products: String,
    findings: String,
    id_column: String,
    image_column: Option<String>,
    min_size: u32,
    image_root: Option<PathBuf>,
    clean_snapshot: Option<String>,
    storage: crate::StorageOptions,
    progress: Arc<dyn Progress>,
}

/// Counts of what the audit found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub rows: u64,
    pub ok: u64,
    /// Problem (missing, unreadable, undecodable, too_small, duplicate) → rows.
    pub problems: BTreeMap<&'static str, u64>,
    /// Rows in the clean snapshot, when one was written.
    pub clean_rows: Option<u64>,
}

/// One image's verdict.
struct Finding {
    problem: &'static str,
    detail: String,
    size: Option<(u32, u32)>,
}

impl ImageAuditJob {
    /// Audits the products table at `products`; findings (product_id, problem, detail, width,
    /// height) replace the table at `findings`.
    pub fn new(products: impl Into<String>, findings: impl Into<String>) -> Self {
        Self {
            products: products.into(),
            findings: findings.into(),
            id_column: "product_id".into(),
            image_column: None,
            min_size: 32,
            image_root: None,
            clean_snapshot: None,
            storage: crate::StorageOptions::default(),
            progress: Arc::new(Quiet),
        }
    }

    /// Options for the object stores of every table this job reads and writes (see
    /// [`crate::storage`]).
    /// Where progress and warnings go (default: nowhere; the CLI renders them).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_storage_options(mut self, options: crate::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    pub fn with_id_column(mut self, column: impl Into<String>) -> Self {
        self.id_column = column.into();
        self
    }

    /// The image column, bytes or locations (default `image`, else `image_uri`).
    pub fn with_image_column(mut self, column: impl Into<String>) -> Self {
        self.image_column = Some(column.into());
        self
    }

    /// Images narrower or lower than this many pixels are too small (default 32).
    pub fn with_min_size(mut self, pixels: u32) -> Self {
        self.min_size = pixels;
        self
    }

    /// Relative image paths resolve here (and local images must lie under it).
    pub fn with_image_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.image_root = Some(root.into());
        self
    }

    /// Also writes the products without any finding (the first of duplicates stays) here.
    pub fn with_clean_snapshot(mut self, location: impl Into<String>) -> Self {
        self.clean_snapshot = Some(location.into());
        self
    }

    pub async fn execute(self) -> Result<AuditReport> {
        let session = SessionBuilder::new()
            .with_storage_options(self.storage.clone())
            .with_table("products", &self.products)
            .build()
            .await?;
        let ctx = &session.ctx;
        let schema = ctx.table("products").await?.schema().as_arrow().clone();
        let image_column = image_column(&schema, self.image_column.as_deref());
        require_columns(
            &schema,
            &self.products,
            &[("id", &self.id_column, "`id_column`"), ("image", &image_column, "`image_column`")],
        )?;
        let total = ctx.table("products").await?.count().await? as u64;
        let mut stream = ctx
            .sql(&format!(
                "SELECT CAST({} AS VARCHAR) AS product_id, {} AS image FROM products",
                quote(&self.id_column),
                quote(&image_column)
            ))
            .await?
            .execute_stream()
            .await?;

        let mut options = LakecatOptions::default();
        if let Some(root) = &self.image_root {
            options.image_root = root.display().to_string();
        }
        let fetch = FetchSettings::from_options(&options).map_err(Error::Input)?;
        let fetcher = ImageFetcher::default();
        // A small target: the audit needs the decode checks, not a model-sized tensor.
        let preprocessor = ImagePreprocessor::new(ImageSpec::imagenet(32))?;
        let mut first_with_hash: HashMap<blake3::Hash, String> = HashMap::new();
        let mut report = AuditReport { rows: total, ..AuditReport::default() };
        let (mut ids, mut problems, mut details, mut widths, mut heights) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let progress = &self.progress;
        progress.start(&format!("auditing {}", self.products), Some(total));
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let batch_ids = cast(batch.column(0), &DataType::Utf8)?;
            let batch_ids = batch_ids.as_string::<i32>();
            let images = fetcher.images(batch.column(1), &fetch)?;
            let verdicts: Vec<(Option<Finding>, Option<blake3::Hash>)> = images
                .par_iter()
                .map(|image| match image {
                    Err(error) => (Some(fetch_finding(&error.to_string())), None),
                    Ok(None) => {
                        (Some(Finding { problem: "missing", detail: "no image (NULL)".into(), size: None }), None)
                    }
                    Ok(Some(bytes)) => match preprocessor.inspect(bytes) {
                        Err(error) => (Some(decode_finding(&error)), None),
                        Ok((width, height)) if width < self.min_size || height < self.min_size => (
                            Some(Finding {
                                problem: "too_small",
                                detail: format!("{width}x{height}, under {0}x{0}", self.min_size),
                                size: Some((width, height)),
                            }),
                            None,
                        ),
                        Ok(_) => (None, Some(blake3::hash(bytes))),
                    },
                })
                .collect();
            for (row, (finding, hash)) in verdicts.into_iter().enumerate() {
                // A product without an id is still audited; its findings carry an empty id.
                let id = if batch_ids.is_valid(row) { batch_ids.value(row).to_string() } else { String::new() };
                let finding = finding.or_else(|| {
                    let hash = hash?;
                    match first_with_hash.get(&hash) {
                        Some(first) => Some(Finding {
                            problem: "duplicate",
                            detail: format!("same image bytes as product {first}"),
                            size: None,
                        }),
                        None => {
                            first_with_hash.insert(hash, id.clone());
                            None
                        }
                    }
                });
                match finding {
                    None => report.ok += 1,
                    Some(finding) => {
                        *report.problems.entry(finding.problem).or_default() += 1;
                        ids.push(id);
                        problems.push(finding.problem);
                        details.push(finding.detail);
                        widths.push(finding.size.map(|size| size.0));
                        heights.push(finding.size.map(|size| size.1));
                    }
                }
            }
            progress.advance(batch.num_rows() as u64);
        }
        progress.finish();

        let findings = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("product_id", DataType::Utf8, false),
                Field::new("problem", DataType::Utf8, false),
                Field::new("detail", DataType::Utf8, false),
                Field::new("width", DataType::UInt32, true),
                Field::new("height", DataType::UInt32, true),
            ])),
            vec![
                Arc::new(StringArray::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(problems)),
                Arc::new(StringArray::from(details)),
                Arc::new(UInt32Array::from(widths)),
                Arc::new(UInt32Array::from(heights)),
            ],
        )?;
        delta::write_table(&self.findings, vec![findings.clone()], SaveMode::Overwrite, &self.storage).await?;

        if let Some(location) = &self.clean_snapshot {
            ctx.register_table("findings", Arc::new(MemTable::try_new(findings.schema(), vec![vec![findings]])?))?;
            let clean = ctx
                .sql(&format!(
                    "SELECT p.* FROM products AS p LEFT ANTI JOIN findings AS f ON CAST(p.{} AS VARCHAR) = f.product_id",
                    quote(&self.id_column)
                ))
                .await?
                .collect()
                .await?;
            report.clean_rows = Some(clean.iter().map(|batch| batch.num_rows() as u64).sum());
            delta::write_table(location, clean, SaveMode::Overwrite, &self.storage).await?;
        }
        Ok(report)
    }
}

fn fetch_finding(message: &str) -> Finding {
    let missing = message.contains("no such file") || message.contains("no such object");
    Finding { problem: if missing { "missing" } else { "unreadable" }, detail: message.to_string(), size: None }
}

fn decode_finding(error: &ImageError) -> Finding {
    Finding { problem: "undecodable", detail: error.to_string(), size: None }
}
