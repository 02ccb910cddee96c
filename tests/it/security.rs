//! Trust boundaries (SECURITY.md): a products table is data written by others. Every test here
//! attacks one guard — where a connection goes, which files are read, how much, what errors
//! show — with real servers, real files and the real scoring path.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use lakecat::SessionBuilder;
use lakecat::jobs::ImportJob;

use crate::common::{GOOD_IMAGE, fixture, repo_root, sample_image};
use crate::s3::{free_port, wait_for_port};

/// tests/http/server.py on a free port of 127.0.0.1, stopped when dropped.
struct HttpServer {
    child: Child,
    port: u16,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_http_server() -> HttpServer {
    let port = free_port();
    let images = repo_root().join("data/sample/fashion/images");
    let child = Command::new("python3")
        .arg(repo_root().join("tests/http/server.py"))
        .arg(port.to_string())
        .arg(images)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs tests/http/server.py");
    let server = HttpServer { child, port };
    wait_for_port(port, "tests/http/server.py", String::new);
    server
}

/// (category, error) of `categorize(uri, title, NULL)`, with the title of the good image, for each URI, in order, with `settings`.
async fn score_uris(settings: &[(&str, String)], uris: &[String]) -> Vec<(Option<String>, Option<String>)> {
    let mut builder = SessionBuilder::new().with_model("baseline", &fixture().baseline).with_batch_size(16);
    for (key, value) in settings {
        builder = builder.with_setting(*key, value);
    }
    let session = builder.build().await.unwrap();
    let values: Vec<String> =
        uris.iter().enumerate().map(|(row, uri)| format!("({row}, '{}')", uri.replace('\'', "''"))).collect();
    let sql = format!(
        "SELECT c.category, c.error FROM (SELECT row, categorize(uri, 'Flying Machine Men Solid Blue Polo Tshirts', NULL) AS c FROM (VALUES {}) AS t(row, uri)) \
         ORDER BY row",
        values.join(", ")
    );
    let batches: Vec<RecordBatch> = session.ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut rows = Vec::new();
    for batch in &batches {
        let column =
            |index: usize| arrow::compute::cast(batch.column(index), &arrow::datatypes::DataType::Utf8).unwrap();
        let (categories, errors) = (column(0), column(1));
        let (categories, errors) = (categories.as_string::<i32>(), errors.as_string::<i32>());
        for row in 0..batch.num_rows() {
            let value = |array: &arrow::array::StringArray| array.is_valid(row).then(|| array.value(row).to_string());
            rows.push((value(categories), value(errors)));
        }
    }
    assert_eq!(rows.len(), uris.len(), "one row out per row in");
    rows
}

fn error(row: &(Option<String>, Option<String>)) -> &str {
    row.1.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn http_fetches_are_checked_where_the_connection_goes() {
    let server = start_http_server();
    let (port, base) = (server.port, format!("http://127.0.0.1:{}", server.port));
    let quick = |extra: Vec<(&'static str, String)>| {
        let mut settings = vec![("lakecat.allow_http", "true".to_string()), ("lakecat.fetch_retries", "0".to_string())];
        settings.extend(extra);
        settings
    };

    // Without an allow-list: a name that resolves to loopback is refused when it is resolved,
    // and the address itself by its text.
    let rows = score_uris(
        &quick(vec![]),
        &[format!("http://localhost:{port}/images/{GOOD_IMAGE}"), format!("{base}/images/{GOOD_IMAGE}")],
    )
    .await;
    let by_name = error(&rows[0]);
    assert!(by_name.starts_with(&format!("refused: http://localhost:{port}/images/{GOOD_IMAGE}: ")), "{by_name}");
    assert!(by_name.contains("localhost resolves to ") && by_name.contains(", a loopback address"), "{by_name}");
    assert_eq!(
        error(&rows[1]),
        format!(
            "refused: {base}/images/{GOOD_IMAGE}: 127.0.0.1 is a loopback address; list it in lakecat.allowed_locations to fetch from it"
        )
    );

    // The operator names the server: it is fetched, and so is a redirect to an allowed place;
    // redirects elsewhere are refused at each hop, error bodies never reach the row, and an
    // object announcing more than max_image_bytes is refused before its body is read.
    let allowed = format!("{base}/images/, {base}/redirect/, {base}/forbidden, {base}/huge");
    let started = Instant::now();
    let rows = score_uris(
        &quick(vec![("lakecat.allowed_locations", allowed), ("lakecat.max_image_bytes", "1048576".into())]),
        &[
            format!("{base}/images/{GOOD_IMAGE}"),
            format!("{base}/redirect/images/{GOOD_IMAGE}"),
            format!("{base}/redirect/metadata"),
            format!("{base}/redirect/localhost/{GOOD_IMAGE}"),
            format!("{base}/forbidden"),
            format!("{base}/huge"),
        ],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(15), "nothing waited for the huge body: {:?}", started.elapsed());
    assert_eq!(rows[0], (Some("Tshirts".to_string()), None), "the allowed image is fetched and scored");
    assert_eq!(rows[1], rows[0], "a redirect to an allowed location is followed");
    for (row, target) in [
        (2, "http://169.254.169.254/latest/meta-data".to_string()),
        (3, format!("http://localhost:{port}/images/{GOOD_IMAGE}")),
    ] {
        let refused = error(&rows[row]);
        assert!(refused.starts_with("refused: "), "{refused}");
        assert!(refused.contains(&format!("redirected to {target}: not under lakecat.allowed_locations")), "{refused}");
    }
    let forbidden = error(&rows[4]);
    assert!(forbidden.starts_with(&format!("fetch: {base}/forbidden: ")) && forbidden.contains("403"), "{forbidden}");
    assert!(!forbidden.contains("internal-secret-token"), "a response body leaked into the row: {forbidden}");
    assert_eq!(
        error(&rows[5]),
        format!(
            "refused: {base}/huge: the object is over lakecat.max_image_bytes (104857600 bytes > 1048576); raise the setting to read it"
        )
    );
}

#[tokio::test]
async fn local_images_stay_under_the_canonical_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(sample_image(GOOD_IMAGE), outside.path().join("secret.jpg")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    std::fs::copy(sample_image(GOOD_IMAGE), root_path.join("good.jpg")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.jpg"), root_path.join("link.jpg")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root_path.join("linked-dir")).unwrap();
    assert!(Command::new("mkfifo").arg(root_path.join("pipe.jpg")).status().unwrap().success());
    let started = Instant::now();
    let rows = score_uris(
        &[("lakecat.image_root", root_path.display().to_string())],
        &["good.jpg".into(), "link.jpg".into(), "linked-dir/secret.jpg".into(), "pipe.jpg".into(), "./../x.jpg".into()],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(30), "a FIFO must not hang the query");
    assert_eq!(rows[0].0.as_deref(), Some("Tshirts"));
    let secret = std::fs::canonicalize(outside.path().join("secret.jpg")).unwrap();
    for (row, uri) in [(1, "link.jpg"), (2, "linked-dir/secret.jpg")] {
        assert_eq!(
            error(&rows[row]),
            format!(
                "refused: {uri}: {} (a link to {}) is outside the image root ({}); set lakecat.image_root or lakecat.allowed_locations",
                root_path.join(uri).display(),
                secret.display(),
                root_path.display()
            )
        );
    }
    assert_eq!(
        error(&rows[3]),
        format!("refused: pipe.jpg: {} is not a regular file", root_path.join("pipe.jpg").display())
    );
    assert!(error(&rows[4]).starts_with("refused: ./../x.jpg: ") && error(&rows[4]).contains("outside the image root"));
}

#[tokio::test]
async fn import_reads_images_only_where_it_was_told() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.jpg");
    std::fs::copy(sample_image(GOOD_IMAGE), &secret).unwrap();
    let csv = dir.path().join("products.csv");
    std::fs::write(
        &csv,
        format!(
            "id,name,image\nok,Blue Polo,{GOOD_IMAGE}\nup,Escape,../../../../../../../../etc/passwd\n\
             proc,Environ,/proc/self/environ\nuri,File,file:///etc/passwd\nabs,Elsewhere,{}\n",
            secret.display()
        ),
    )
    .unwrap();
    let images = repo_root().join("data/sample/fashion/images");
    let import = |table: &str| {
        ImportJob::new(&csv, dir.path().join(table).display().to_string())
            .with_title_column("name")
            .with_images_dir(&images)
            .with_image_column("image")
    };
    let report = import("confined").execute().await.unwrap();
    assert_eq!((report.rows, report.images, report.images_missing), (5, 1, 4), "{report:?}");
    for example in &report.missing_examples {
        assert!(
            example.starts_with("refused: ")
                && example.ends_with("is not under --images (add --allow-images-from PREFIX to read elsewhere)"),
            "{example}"
        );
    }
    let widened = import("widened").with_images_from(elsewhere.path().display().to_string()).execute().await.unwrap();
    assert_eq!((widened.images, widened.images_missing), (2, 3), "{widened:?}");

    // Ids are data too: one that is not a plain file name never becomes a path.
    std::fs::write(&csv, "id,name\n../../../../etc/passwd,Escape\n.hidden,Hidden\n14063,Blue Polo\n").unwrap();
    let report = ImportJob::new(&csv, dir.path().join("by_id").display().to_string())
        .with_title_column("name")
        .with_images_dir(&images)
        .execute()
        .await
        .unwrap();
    assert_eq!((report.images, report.images_missing), (1, 2), "{report:?}");
    assert!(report.missing_examples.iter().all(|example| example.starts_with("no image given")), "{report:?}");
}

/// A small deterministic generator (xorshift), so a failing case can be replayed by its seed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Images and text from a seeded generator — valid images mutated (bits flipped, cut short,
/// markers spliced in, headers claiming huge sizes), random bytes, and text of every kind —
/// scored through SQL: no panic, one row out per row in, each either scored or with a reason.
#[tokio::test]
async fn fuzzed_images_and_text_give_one_row_each() {
    let seeds = [
        std::fs::read(sample_image(GOOD_IMAGE)).unwrap(),
        std::fs::read(repo_root().join("data/sample/fashion/images/45245.jpg")).unwrap(),
    ];
    let mut png = Vec::new();
    image::DynamicImage::new_rgba8(16, 16)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut random = Seeded(0x5eed_1a4e_ca75);
    let rows = 240;
    let mut images = Vec::with_capacity(rows);
    let mut titles = Vec::with_capacity(rows);
    for _ in 0..rows {
        let base = match random.below(3) {
            0 => seeds[0].clone(),
            1 => seeds[1].clone(),
            _ => png.clone(),
        };
        let mut bytes = base;
        match random.below(6) {
            0 => {
                for _ in 0..1 + random.below(20) {
                    let at = random.below(bytes.len());
                    bytes[at] ^= 1 << random.below(8);
                }
            }
            1 => bytes.truncate(random.below(bytes.len())),
            2 => {
                // Scan, restart and end markers where they do not belong.
                let at = random.below(bytes.len());
                let marker = [[0xFF, 0xDA], [0xFF, 0xD9], [0xFF, 0xD0], [0xFF, 0xC2]][random.below(4)];
                for _ in 0..1 + random.below(200) {
                    bytes.splice(at..at, marker);
                }
            }
            3 => {
                // Dimensions in the header rewritten to something huge.
                for at in 0..bytes.len().saturating_sub(4) {
                    if bytes[at] == 0xFF && bytes[at + 1] == 0xC0 && at + 9 < bytes.len() {
                        bytes[at + 5..at + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
                    }
                }
                if bytes.starts_with(b"\x89PNG") {
                    bytes[16..24].copy_from_slice(&[0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
                }
            }
            4 => bytes = (0..random.below(4096)).map(|_| random.next() as u8).collect(),
            _ => {}
        }
        images.push(bytes);
        let title: Vec<u8> = match random.below(4) {
            0 => (0..random.below(300)).map(|_| random.next() as u8).collect(),
            1 => "Blue Polo Tshirt ".repeat(random.below(5000)).into_bytes(),
            2 => "\u{0}\u{202e}ж漢字🙂\t\r\n".repeat(random.below(50)).into_bytes(),
            _ => Vec::new(),
        };
        titles.push(title);
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("row", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("image", arrow::datatypes::DataType::Binary, true),
        arrow::datatypes::Field::new("title", arrow::datatypes::DataType::Binary, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from_iter_values(0..rows as i64)),
            std::sync::Arc::new(arrow::array::BinaryArray::from_iter_values(images.iter())),
            std::sync::Arc::new(arrow::array::BinaryArray::from_iter_values(titles.iter())),
        ],
    )
    .unwrap();
    let session =
        SessionBuilder::new().with_model("baseline", &fixture().baseline).with_batch_size(16).build().await.unwrap();
    session.ctx.register_batch("fuzzed", batch).unwrap();
    let started = Instant::now();
    let batches = session
        .ctx
        .sql(
            "SELECT count(*) AS rows, count(DISTINCT row) AS ids, \
             sum(CASE WHEN c.category IS NULL AND c.error IS NULL THEN 1 ELSE 0 END) AS neither, \
             sum(CASE WHEN c.category IS NOT NULL AND c.error IS NOT NULL THEN 1 ELSE 0 END) AS both \
             FROM (SELECT row, categorize(image, title, NULL) AS c FROM fuzzed)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let value = |column: usize| {
        let array = arrow::compute::cast(batches[0].column(column), &arrow::datatypes::DataType::Int64).unwrap();
        array.as_primitive::<arrow::datatypes::Int64Type>().value(0)
    };
    assert_eq!((value(0), value(1), value(2), value(3)), (rows as i64, rows as i64, 0, 0));
    assert!(started.elapsed() < Duration::from_secs(120), "fuzzed rows took {:?}", started.elapsed());
}
