//! The lakehouse the integration and SQL logic tests run against, built once per test binary
//! from the sample committed in data/sample (real products and images) plus generated bad input.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgba};
use lakecat::jobs::{BaselineJob, ImportJob, Labels};
use lakecat::{LakecatSession, SessionBuilder};
use lakecat_training::BaselineTrainer;

pub struct Fixture {
    /// Where the fixture lives (rebuilt on every run of the test binary).
    #[allow(dead_code)]
    pub root: PathBuf,
    /// The fashion sample, imported with embedded images.
    pub products: String,
    /// Good and bad images of every kind the scoring path must survive.
    pub bad_images: String,
    /// The bad_images schema with no rows.
    pub empty: String,
    /// Image locations: relative, absolute, file://, missing, refused (scheme, http, outside the root).
    pub image_uris: String,
    /// Three labellers' labels of a few products (consensus cases).
    pub labels: String,
    /// Taxonomy versions: v1 (the sample's categories) and v2 (renamed, with a split).
    pub taxonomies: String,
    /// Baseline bundle on text and images (the session's default model).
    pub baseline: PathBuf,
    /// Baseline bundle on text only.
    pub text_only: PathBuf,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_image(name: &str) -> PathBuf {
    repo_root().join("data/sample/fashion/images").join(name)
}

/// A product of the sample: "Flying Machine Men Solid Blue Polo Tshirts", Apparel > Topwear > Tshirts.
pub const GOOD_IMAGE: &str = "14063.jpg";

/// Builds the fixture once per test binary (in its own runtime, so any test runtime can use it).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(build()).expect("the test fixture builds")
        })
        .join()
        .expect("the fixture thread")
    })
}

/// A session with every fixture table and both models (`baseline` is the default).
pub async fn session() -> LakecatSession {
    let fixture = fixture();
    SessionBuilder::new()
        .with_table("products", &fixture.products)
        .with_table("bad_images", &fixture.bad_images)
        .with_table("image_uris", &fixture.image_uris)
        .with_table("empty_products", &fixture.empty)
        .with_table("labels", &fixture.labels)
        .with_model("baseline", &fixture.baseline)
        .with_model("text_only", &fixture.text_only)
        .with_batch_size(16)
        .with_taxonomy_store(&fixture.taxonomies)
        .with_migration_rules("v1", "v2", migration_rules())
        .build()
        .await
        .expect("the fixture session")
}

async fn build() -> lakecat::Result<Fixture> {
    // One directory per test binary, rebuilt on every run.
    let binary =
        std::env::current_exe().ok().and_then(|exe| exe.file_stem().map(|stem| stem.to_string_lossy().into_owned()));
    let root =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lakecat-fixture-{}", binary.unwrap_or_default()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("fixture dir");
    let table = |name: &str| root.join("lake").join(name).display().to_string();
    let fixture = Fixture {
        products: table("products"),
        bad_images: table("bad_images"),
        image_uris: table("image_uris"),
        empty: table("empty_products"),
        taxonomies: table("taxonomies"),
        labels: table("labels"),
        baseline: root.join("models/baseline"),
        text_only: root.join("models/text_only"),
        root,
    };
    let sample = repo_root().join("data/sample/fashion");
    ImportJob::new(sample.join("products.csv"), &fixture.products)
        .with_id_column("id")
        .with_title_column("productDisplayName")
        .with_images_dir(sample.join("images"))
        .with_labels(Labels::Columns(vec!["masterCategory".into(), "subCategory".into(), "articleType".into()]))
        .execute()
        .await?;
    BaselineJob::new(&fixture.products, &fixture.baseline).execute().await?;
    BaselineJob::new(&fixture.products, &fixture.text_only)
        .with_trainer(BaselineTrainer::new("text_only").with_inputs(false, true))
        .execute()
        .await?;
    write_bad_images(&fixture.bad_images, &fixture.empty).await?;
    write_taxonomies(&fixture.products, &fixture.taxonomies).await?;
    write_labels(&fixture.labels).await?;
    write_image_uris(&fixture.image_uris).await?;
    Ok(fixture)
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).expect("encode");
    bytes
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("fixture image")
}

async fn write_bad_images(location: &str, empty_location: &str) -> lakecat::Result<()> {
    let good = read(&sample_image(GOOD_IMAGE));
    let gradient = |x: u32, y: u32| (x * 4 + y * 2) as u16;
    let png = encode(
        DynamicImage::ImageRgba8(ImageBuffer::from_fn(48, 48, |x, y| Rgba([200, 30, (x * 5) as u8, 128 + (y as u8)]))),
        ImageFormat::Png,
    );
    let mut corrupt_png = png.clone();
    corrupt_png[60..120].fill(0x5A);
    let images = repo_root().join("tests/data/images");
    // (product_id, image, title, description)
    type Row<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>, Option<String>);
    let rows: Vec<Row> = vec![
        ("good_jpeg", Some(good.clone()), Some("Nike Men Blue T-shirt"), None),
        ("cmyk_jpeg", Some(read(&images.join("cmyk.jpg"))), None, None),
        ("progressive_jpeg", Some(read(&images.join("progressive.jpg"))), None, None),
        (
            "gray16_png",
            Some(encode(
                DynamicImage::ImageLuma16(ImageBuffer::from_fn(40, 30, |x, y| Luma([gradient(x, y) * 300]))),
                ImageFormat::Png,
            )),
            None,
            None,
        ),
        ("rgba_png", Some(png), None, None),
        (
            "webp",
            Some(encode(
                DynamicImage::ImageRgba8(ImageBuffer::from_pixel(20, 20, Rgba([10, 200, 10, 255]))),
                ImageFormat::WebP,
            )),
            None,
            None,
        ),
        ("truncated_jpeg", Some(good[..good.len() / 2].to_vec()), Some("Blue shirt"), None),
        ("zero_bytes", Some(Vec::new()), Some("Blue shirt"), None),
        ("not_an_image", Some(b"hello world, not an image".to_vec()), Some("Blue shirt"), None),
        ("corrupt_png", Some(corrupt_png), Some("Blue shirt"), None),
        ("bomb_png", Some(read(&images.join("bomb.png"))), Some("Blue shirt"), None),
        ("no_image", None, Some("Titan Women Analog Watch"), None),
        ("nothing", None, None, None),
        ("long_description", Some(good), Some("Blue shirt"), Some("cotton ".repeat(10_000))),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("image", DataType::Binary, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(BinaryArray::from_iter(rows.iter().map(|row| row.1.as_deref()))),
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.2))),
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.3.as_deref()))),
        ],
    )?;
    lakecat::delta::write_table(empty_location, vec![batch.slice(0, 0)], SaveMode::ErrorIfExists, &Default::default())
        .await?;
    lakecat::delta::write_table(location, vec![batch], SaveMode::ErrorIfExists, &Default::default()).await?;
    Ok(())
}

/// product_id, uri, title, and the product whose picture the uri names.
type UriRow<'a> = (&'a str, Option<String>, Option<&'a str>, Option<&'a str>);

async fn write_image_uris(location: &str) -> lakecat::Result<()> {
    // Three pictures the image-only model puts in three categories, so a fetch that hands a row
    // another row's image is seen; `image_of` names the product whose image it is.
    let absolute = |name: &str| sample_image(name).display().to_string();
    let rows: Vec<UriRow> = vec![
        ("relative_path", Some(format!("data/sample/fashion/images/{GOOD_IMAGE}")), None, Some("14063")),
        ("absolute_path", Some(absolute("10300.jpg")), None, Some("10300")),
        ("file_uri", Some(format!("file://{}", absolute("11248.jpg"))), None, Some("11248")),
        ("missing_file", Some("data/sample/fashion/images/does-not-exist.jpg".into()), Some("Blue shirt"), None),
        ("http_off", Some("http://169.254.169.254/latest/meta-data".into()), Some("Blue shirt"), None),
        ("unknown_scheme", Some("ftp://example.com/shirt.jpg".into()), Some("Blue shirt"), None),
        // Enough `..` to reach / from any checkout depth, so the refused path is always /etc/passwd.
        ("traversal", Some(format!("data/sample/{}etc/passwd", "../".repeat(32))), Some("Blue shirt"), None),
        ("etc_passwd", Some("file:///etc/passwd".into()), Some("Blue shirt"), None),
        ("null_uri", None, Some("Titan Women Analog Watch"), None),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("uri", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("image_of", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.1.as_deref()))),
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.2))),
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.3))),
        ],
    )?;
    lakecat::delta::write_table(location, vec![batch], SaveMode::ErrorIfExists, &Default::default()).await?;
    Ok(())
}

/// v1 → v2: Apparel is now Clothing (Topwear: Tops), and Sandal > Sandals split in two.
pub const MIGRATION_RULES: &str = "Apparel => Clothing\n\
    Apparel > Topwear => Clothing > Tops\n\
    Footwear > Sandal > Sandals => Footwear > Sandals > Flat Sandals\n\
    Footwear > Sandal > Sandals => Footwear > Sandals > Slides\n";

pub fn migration_rules() -> Vec<(Vec<String>, Vec<String>)> {
    lakecat_core::taxonomy_formats::parse_rules(MIGRATION_RULES).expect("rules parse")
}

/// v1: the categories of the products table; v2: v1 renamed and split as the rules say.
async fn write_taxonomies(products: &str, location: &str) -> lakecat::Result<()> {
    use arrow::array::AsArray;
    let session = SessionBuilder::new().with_table("products", products).build().await?;
    let batches = session.ctx.sql("SELECT DISTINCT CAST(category AS VARCHAR) FROM products").await?.collect().await?;
    let mut paths: Vec<String> = Vec::new();
    for batch in &batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        paths.extend(column.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    let v1 = lakecat_core::TaxonomyFormat::Paths.parse(&paths.join("\n"), Some("v1"))?;
    let renamed: Vec<String> = paths
        .iter()
        .filter(|path| !path.starts_with("Footwear > Sandal >"))
        .map(|path| path.replace("Apparel > Topwear", "Clothing > Tops").replace("Apparel", "Clothing"))
        .chain(["Footwear > Sandals > Flat Sandals".to_string(), "Footwear > Sandals > Slides".to_string()])
        .collect();
    let v2 = lakecat_core::TaxonomyFormat::Paths.parse(&renamed.join("\n"), Some("v2"))?;
    let store = lakecat::jobs::TaxonomyStore::new(location);
    store.save(&v1).await?;
    store.save(&v2).await?;
    Ok(())
}

/// (product_id, labeller_id, category, labelled_at hour) for the consensus tests in SQL.
async fn write_labels(location: &str) -> lakecat::Result<()> {
    use arrow::array::{ArrayRef, Int64Array};
    let (shirts, tees) = (Some("Apparel > Topwear > Shirts"), Some("Apparel > Topwear > Tshirts"));
    let rows: [(&str, &str, Option<&str>, i64); 11] = [
        ("agreed", "ann", shirts, 1),
        ("agreed", "bob", shirts, 1),
        ("agreed", "cem", tees, 1),
        ("split", "ann", shirts, 1),
        ("split", "bob", tees, 1),
        ("split", "cem", None, 1),
        ("changed_mind", "ann", shirts, 1),
        ("changed_mind", "ann", tees, 2),
        ("changed_mind", "bob", tees, 1),
        ("changed_mind", "cem", shirts, 1),
        ("nobody", "ann", None, 1),
    ];
    let batch = RecordBatch::try_from_iter([
        ("product_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))) as ArrayRef),
        ("labeller_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.1))) as ArrayRef),
        ("category", Arc::new(StringArray::from_iter(rows.iter().map(|row| row.2))) as ArrayRef),
        ("labelled_at", Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.3))) as ArrayRef),
    ])?;
    lakecat::delta::write_table(location, vec![batch], SaveMode::ErrorIfExists, &Default::default()).await?;
    Ok(())
}
