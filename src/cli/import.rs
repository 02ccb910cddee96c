use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use lakecat::jobs::{ImageStorage, ImportJob, Labels};

use super::WriteMode;

/// Turn a CSV or Parquet file of products and their images into a Delta table.
///
/// The table gets product_id, title, description, image (the bytes; or image_uri with
/// --reference-images), image_source, category ("A > B > C"), category_path (list) and every
/// source column. Rows whose image cannot be read are kept with a NULL image and counted.
///
/// Examples (the sample data committed in the repository):
///
///   lakecat import data/sample/fashion/products.csv --output lake/fashion --id id --title productDisplayName --images data/sample/fashion/images --labels masterCategory,subCategory,articleType
///
///   lakecat import data/sample/flipkart/products.csv --output lake/flipkart --id uniq_id --title product_name --description description --images data/sample/flipkart/images --image-column image --category-tree category_tree --max-depth 3
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ImportArgs {
    /// The products file: .csv (with a header row) or .parquet, a local path or an object's URL.
    source: PathBuf,
    /// The Delta table to write: a local path or a URL.
    #[arg(long, short)]
    output: String,
    /// Column with the product id.
    #[arg(long, default_value = "id", alias = "id-column")]
    id: String,
    /// Column with the product title.
    #[arg(long)]
    title: Option<String>,
    /// Column with the product description.
    #[arg(long)]
    description: Option<String>,
    /// Directory of the images, or a prefix in object storage (s3://bucket/images). Without
    /// --image-column, the image of product X is X.jpg (or, locally, .jpeg, .png, .webp) in it.
    #[arg(long, alias = "images-dir")]
    images: Option<PathBuf>,
    /// Column naming each product's image: a file name inside --images, a path, or a URI
    /// (s3://, gs://, az://, file://). Only images inside --images are read, unless
    /// --allow-images-from names more places.
    #[arg(long)]
    image_column: Option<String>,
    /// Other directories or prefixes (s3://bucket/photos) that --image-column may name,
    /// comma-separated or repeated. A CSV is data: without this, a cell naming ../x,
    /// /proc/self/environ or file:///etc/passwd is refused, not copied into the table.
    #[arg(long, value_delimiter = ',', alias = "images-from")]
    allow_images_from: Vec<String>,
    /// Label columns, top level first, comma-separated (e.g. masterCategory,subCategory,articleType).
    #[arg(long, value_delimiter = ',', conflicts_with = "category_tree")]
    labels: Vec<String>,
    /// Column holding the label as one path, "A >> B >> C" or "A > B > C".
    #[arg(long)]
    category_tree: Option<String>,
    /// Keep only this many top levels of --category-tree (deeper levels are often noise).
    #[arg(long, requires = "category_tree")]
    max_depth: Option<usize>,
    /// Store image locations (image_uri) instead of the image bytes.
    #[arg(long)]
    reference_images: bool,
    /// What to do when the table exists.
    #[arg(long, value_enum, default_value_t = WriteMode::Error)]
    mode: WriteMode,
}

pub async fn run(args: ImportArgs, storage: lakecat::StorageOptions) -> anyhow::Result<()> {
    if args.images.is_none() && args.image_column.is_none() {
        bail!("say where the images are: --images DIR (files named <id>.jpg) and/or --image-column COLUMN");
    }
    let labels = match (args.labels.is_empty(), args.category_tree) {
        (false, _) => Labels::Columns(args.labels),
        (true, Some(column)) => Labels::Tree { column, max_depth: args.max_depth },
        (true, None) => Labels::None,
    };
    let mut job = ImportJob::new(&args.source, &args.output)
        .with_progress(std::sync::Arc::new(super::progress::Terminal::new()))
        .with_id_column(args.id)
        .with_labels(labels)
        .with_save_mode(args.mode.into())
        .with_storage_options(storage)
        .with_image_storage(if args.reference_images { ImageStorage::Reference } else { ImageStorage::Embed });
    if let Some(column) = args.title {
        job = job.with_title_column(column);
    }
    if let Some(column) = args.description {
        job = job.with_description_column(column);
    }
    if let Some(dir) = args.images {
        job = job.with_images_dir(dir);
    }
    if let Some(column) = args.image_column {
        job = job.with_image_column(column);
    }
    for prefix in args.allow_images_from {
        job = job.with_images_from(prefix);
    }
    let report = job.execute().await?;
    println!(
        "wrote {} rows to {} (version {}): {} images, {} labelled",
        report.rows, report.target, report.table_version, report.images, report.labelled
    );
    if report.images_missing > 0 {
        println!("{} rows have no image (kept with image = NULL), e.g.:", report.images_missing);
        for reason in &report.missing_examples {
            println!("  {reason}");
        }
    }
    Ok(())
}
