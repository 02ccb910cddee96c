//! Training data from labels: taxonomy versions and formats, pruning.

use std::path::Path;

use lakecat::jobs::{PruneJob, TaxonomyStore};
use lakecat_core::{PruneAction, Pruner, SmallCategories, TaxonomyFormat};

use crate::common::{fixture, repo_root};

fn google_file() -> String {
    std::fs::read_to_string(repo_root().join("data/sample/taxonomy/google-product-taxonomy-2021-09-21.txt")).unwrap()
}

#[tokio::test]
async fn google_taxonomy_is_stored_as_a_version_and_exported_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = TaxonomyStore::new(dir.path().join("taxonomies").display().to_string());
    let google = TaxonomyFormat::Google.parse(&google_file(), None).unwrap();
    assert_eq!(
        (google.version(), google.len(), google.max_depth(), google.leaves().len()),
        ("2021-09-21", 5595, 7, 4719)
    );
    store.save(&google).await.unwrap();

    let loaded = store.load("2021-09-21").await.unwrap();
    assert_eq!(loaded, google);
    let exported = TaxonomyFormat::Google.render(&loaded);
    let mut exported_lines: Vec<&str> = exported.lines().collect();
    let original = google_file();
    let mut original_lines: Vec<&str> = original.lines().filter(|line| !line.trim().is_empty()).collect();
    exported_lines.sort_unstable();
    original_lines.sort_unstable();
    assert_eq!(exported_lines, original_lines, "the export is the original file, line for line");

    // Paths and JSON: another version of the same tree.
    let paths = TaxonomyFormat::Paths.parse(&TaxonomyFormat::Paths.render(&google), Some("paths-copy")).unwrap();
    assert_eq!(paths.len(), 5595);
    store.save(&paths).await.unwrap();
    assert_eq!(store.versions().await.unwrap(), ["2021-09-21", "paths-copy"]);
    let again = store.save(&google).await.unwrap_err().to_string();
    assert!(again.contains("\"2021-09-21\" is already stored"), "{again}");
    let missing = store.load("2020").await.unwrap_err().to_string();
    assert!(missing.contains("no taxonomy version \"2020\" (stored: 2021-09-21, paths-copy)"), "{missing}");
}

#[tokio::test]
async fn pruning_the_fashion_labels_keeps_every_row_accounted_for() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = TaxonomyStore::new(dir.path().join("taxonomies").display().to_string());
    let report_table = dir.path().join("prune_report").display().to_string();
    let outcome = PruneJob::new(&fixture.products, Pruner::new(20), "fashion-min20")
        .with_save_to(store.clone())
        .with_report_table(&report_table)
        .execute()
        .await
        .unwrap();
    let pruned = &outcome.pruned;
    assert_eq!(pruned.rows, 239);
    let leaves = pruned.leaf_rows();
    assert!(leaves.iter().all(|(_, rows)| *rows >= 20), "{}", pruned.tree());
    let kept: u64 = leaves.iter().map(|(_, rows)| rows).sum();
    assert_eq!(kept + pruned.dropped_rows, 239, "{}", pruned.tree());
    // Every merged category's rows land on a surviving leaf.
    for row in &pruned.report {
        if let PruneAction::MergedInto(into) = row.action {
            assert!(pruned.taxonomy.is_leaf(into), "{:?} went to an inner node", row.path);
            assert_eq!(pruned.mapping[&row.id], Some(into));
        }
    }
    assert_eq!(store.load("fashion-min20").await.unwrap(), pruned.taxonomy);
    let tree = pruned.tree();
    assert!(tree.contains("Other Footwear: 28 rows (leaf; 0 before)"), "{tree}");
    assert!(tree.contains("x Personal Care: 14 rows dropped"), "{tree}");

    // The report table holds the same numbers.
    let session = lakecat::SessionBuilder::new().with_table("report", &report_table).build().await.unwrap();
    let batches = session
        .ctx
        .sql("SELECT sum(rows_before), sum(CASE WHEN action = 'dropped' THEN rows_before END) FROM report WHERE path NOT LIKE '%>%'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let formatted = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
    assert!(formatted.contains("| 239 ") && formatted.contains("| 14 "), "{formatted}");

    // Drop mode never merges rows upwards.
    let dropped =
        PruneJob::new(&fixture.products, Pruner::new(20).with_small_categories(SmallCategories::Drop), "drop")
            .execute()
            .await
            .unwrap();
    assert!(
        dropped
            .pruned
            .report
            .iter()
            .all(|row| !matches!(row.action, PruneAction::MergedInto(_)) || row.rows_before == 0)
    );
    assert_eq!(dropped.pruned.dropped_rows, 239, "every article type has 14 < 20 rows");
}

#[tokio::test]
async fn labels_outside_the_taxonomy_are_named() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = TaxonomyStore::new(dir.path().join("taxonomies").display().to_string());
    store.save(&TaxonomyFormat::Google.parse(&google_file(), None).unwrap()).await.unwrap();
    let error = PruneJob::new(&fixture.products, Pruner::new(20), "x")
        .with_taxonomy(store, "2021-09-21")
        .execute()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("labels are not categories of taxonomy \"2021-09-21\"")
            && error.contains("Accessories > Bags > Handbags"),
        "{error}"
    );
    let no_column = PruneJob::new(&fixture.products, Pruner::new(1), "x").with_label_column("label").execute().await;
    assert!(no_column.unwrap_err().to_string().contains("no label column \"label\""));
    assert!(Path::new(&fixture.products).exists());
}

/// (product, labeller, category, hour) rows of a generated labelling run.
async fn write_labels(location: &Path, rows: &[(&str, &str, Option<&str>, i64)]) {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    let batch = RecordBatch::try_from_iter([
        ("product_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))) as ArrayRef),
        ("labeller_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.1))) as ArrayRef),
        ("category", Arc::new(StringArray::from_iter(rows.iter().map(|row| row.2))) as ArrayRef),
        (
            "labelled_at",
            Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|row| row.3 * 3_600_000_000)))
                as ArrayRef,
        ),
    ])
    .unwrap();
    lakecat::delta::write_table(
        &location.display().to_string(),
        vec![batch],
        deltalake::protocol::SaveMode::ErrorIfExists,
        &Default::default(),
    )
    .await
    .unwrap();
}

/// The first column of a query over the table at `location`, as strings.
async fn lines(location: &Path, sql: &str) -> Vec<String> {
    use arrow::array::AsArray;
    let session = lakecat::SessionBuilder::new().with_table("t", location.display().to_string()).build().await.unwrap();
    let batches = session.ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut lines = Vec::new();
    for batch in &batches {
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        lines.extend(column.as_string::<i32>().iter().map(|value| value.unwrap_or("NULL").to_string()));
    }
    lines
}

async fn table_text(location: &Path, sql: &str) -> String {
    let session = lakecat::SessionBuilder::new().with_table("t", location.display().to_string()).build().await.unwrap();
    let batches = session.ctx.sql(sql).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test]
async fn consensus_of_three_labellers_keeps_every_product_somewhere() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels");
    let (shirts, tees, jeans) =
        (Some("Apparel > Topwear > Shirts"), Some("Apparel > Topwear > Tshirts"), Some("Apparel > Bottomwear > Jeans"));
    let unknown = Some("Apparel > Topwear > Blouses");
    write_labels(
        &labels,
        &[
            ("all_agree", "ann", shirts, 1),
            ("all_agree", "bob", shirts, 1),
            ("all_agree", "cem", shirts, 1),
            ("two_agree", "ann", tees, 1),
            ("two_agree", "bob", tees, 1),
            ("two_agree", "cem", jeans, 1),
            ("all_disagree", "ann", shirts, 1),
            ("all_disagree", "bob", tees, 1),
            ("all_disagree", "cem", jeans, 1),
            ("null_labels", "ann", shirts, 1),
            ("null_labels", "bob", None, 1),
            ("null_labels", "cem", None, 1),
            ("only_nulls", "ann", None, 1),
            ("only_nulls", "bob", None, 1),
            ("unknown", "ann", unknown, 1),
            ("unknown", "bob", unknown, 1),
            ("unknown", "cem", jeans, 1),
            ("tie", "ann", shirts, 1),
            ("tie", "bob", shirts, 1),
            ("tie", "cem", tees, 1),
            ("tie", "dan", tees, 1),
            // ann changed her mind: only her latest label counts.
            ("relabelled", "ann", jeans, 1),
            ("relabelled", "ann", tees, 2),
            ("relabelled", "bob", tees, 1),
            ("relabelled", "cem", jeans, 1),
        ],
    )
    .await;
    let dir_path = dir.path();
    let store = TaxonomyStore::new(dir_path.join("taxonomies").display().to_string());
    let fashion = TaxonomyFormat::Paths
        .parse("Apparel > Topwear > Shirts\nApparel > Topwear > Tshirts\nApparel > Bottomwear > Jeans\n", Some("v1"))
        .unwrap();
    store.save(&fashion).await.unwrap();
    let (consensus, rejected) = (dir_path.join("consensus"), dir_path.join("rejected"));
    let report = lakecat::jobs::ConsensusJob::new(
        labels.display().to_string(),
        consensus.display().to_string(),
        rejected.display().to_string(),
    )
    .with_taxonomy(store, "v1")
    .execute()
    .await
    .unwrap();
    assert_eq!((report.products, report.consensus, report.rejected, report.ties), (8, 3, 5, 1));
    assert_eq!(
        table_text(&consensus, "SELECT * FROM t ORDER BY product_id").await,
        "+------------+-----------------------------+-------+-----------+\n\
         | product_id | category                    | votes | labellers |\n\
         +------------+-----------------------------+-------+-----------+\n\
         | all_agree  | Apparel > Topwear > Shirts  | 3     | 3         |\n\
         | relabelled | Apparel > Topwear > Tshirts | 2     | 3         |\n\
         | two_agree  | Apparel > Topwear > Tshirts | 2     | 3         |\n\
         +------------+-----------------------------+-------+-----------+"
    );
    assert_eq!(
        lines(&rejected, "SELECT concat(product_id, ': ', reason) FROM t ORDER BY product_id").await,
        [
            "all_disagree: no category has 2 of 3 votes (most: 1 for Apparel > Bottomwear > Jeans | Apparel > Topwear > Shirts | Apparel > Topwear > Tshirts)",
            "null_labels: no category has 2 of 3 votes (most: 1 for Apparel > Topwear > Shirts)",
            "only_nulls: no labeller gave a category",
            "tie: tie: Apparel > Topwear > Shirts | Apparel > Topwear > Tshirts (2 votes each)",
            "unknown: no category has 2 of 3 votes (most: 1 for Apparel > Bottomwear > Jeans); 2 labels unknown to the taxonomy",
        ]
    );
    let by_labeller = arrow::util::pretty::pretty_format_batches(&report.by_labeller).unwrap().to_string();
    assert!(by_labeller.contains("| ann         | 8      | 3      | 0         | 5  "), "{by_labeller}");
    assert!(by_labeller.contains("| cem         | 7      | 1      | 2         | 4  "), "{by_labeller}");
    let by_category = arrow::util::pretty::pretty_format_batches(&report.by_category).unwrap().to_string();
    assert!(
        by_category.contains("| Apparel > Topwear > Shirts   | 7      | 1                  | 1.0 "),
        "{by_category}"
    );
}

#[tokio::test]
async fn image_audit_finds_every_planted_fault() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let good = std::fs::read(crate::common::sample_image(crate::common::GOOD_IMAGE)).unwrap();
    let other = std::fs::read(crate::common::sample_image("10102.jpg")).unwrap();
    std::fs::write(images.join("good.jpg"), &good).unwrap();
    std::fs::write(images.join("other.jpg"), &other).unwrap();
    std::fs::write(images.join("copy.jpg"), &good).unwrap();
    std::fs::write(images.join("truncated.jpg"), &good[..good.len() / 2]).unwrap();
    std::fs::write(images.join("empty.jpg"), b"").unwrap();
    std::fs::write(images.join("notes.txt"), b"not an image").unwrap();
    let mut tiny = Vec::new();
    image::DynamicImage::new_rgb8(8, 8)
        .write_to(&mut std::io::Cursor::new(&mut tiny), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(images.join("tiny.png"), &tiny).unwrap();
    let rows: [(&str, Option<&str>); 9] = [
        ("good", Some("good.jpg")),
        ("other", Some("other.jpg")),
        ("copy", Some("copy.jpg")),
        ("truncated", Some("truncated.jpg")),
        ("empty", Some("empty.jpg")),
        ("not_an_image", Some("notes.txt")),
        ("tiny", Some("tiny.png")),
        ("missing", Some("gone.jpg")),
        ("no_image", None),
    ];
    let batch = RecordBatch::try_from_iter([
        ("product_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))) as ArrayRef),
        ("image_uri", Arc::new(StringArray::from_iter(rows.iter().map(|row| row.1))) as ArrayRef),
    ])
    .unwrap();
    let products = dir.path().join("products").display().to_string();
    lakecat::delta::write_table(
        &products,
        vec![batch],
        deltalake::protocol::SaveMode::ErrorIfExists,
        &Default::default(),
    )
    .await
    .unwrap();

    let (findings, clean) = (dir.path().join("findings"), dir.path().join("clean"));
    let report = lakecat::jobs::ImageAuditJob::new(&products, findings.display().to_string())
        .with_image_root(&images)
        .with_clean_snapshot(clean.display().to_string())
        .execute()
        .await
        .unwrap();
    assert_eq!((report.rows, report.ok, report.clean_rows), (9, 2, Some(2)));
    assert_eq!(
        lines(&findings, "SELECT concat(product_id, ' ', problem, ': ', detail) FROM t ORDER BY product_id").await,
        [
            "copy duplicate: same image bytes as product good".to_string(),
            "empty undecodable: image is empty (0 bytes)".to_string(),
            "missing missing: fetch: gone.jpg: no such file (".to_string() + &images.join("gone.jpg").display().to_string() + ")",
            "no_image missing: no image (NULL)".to_string(),
            "not_an_image undecodable: bytes are not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF); they start with 6e 6f 74 20 61 6e 20 69".to_string(),
            "tiny too_small: 8x8, under 32x32".to_string(),
            "truncated undecodable: truncated JPEG (the file ends before the image data does)".to_string(),
        ]
    );
    assert_eq!(lines(&clean, "SELECT product_id FROM t ORDER BY product_id").await, ["good", "other"]);
}

fn lakecat(args: &[&str]) -> String {
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_lakecat")).args(args).current_dir(repo_root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "lakecat {args:?}: {text}");
    text
}

#[tokio::test]
async fn labels_migrate_to_a_new_taxonomy_and_back() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("v1-to-v2.rules"), crate::common::MIGRATION_RULES).unwrap();
    std::fs::write(path("v2-to-v1.rules"), "Clothing => Apparel\nClothing > Tops => Apparel > Topwear\n").unwrap();
    let store = fixture.taxonomies.as_str();
    let forward = lakecat(&[
        "taxonomy",
        "migrate",
        "--table",
        &fixture.products,
        "--path-column",
        "category",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rules",
        &path("v1-to-v2.rules"),
        "--output",
        &path("labels_v2"),
        "--store",
        store,
    ]);
    assert!(forward.contains("| mapped ") && forward.contains("| 225 ") && forward.contains("| 14 "), "{forward}");
    lakecat(&[
        "taxonomy",
        "migrate",
        "--table",
        &path("labels_v2"),
        "--path-column",
        "migrated_category",
        "--from",
        "v2",
        "--to",
        "v1",
        "--rules",
        &path("v2-to-v1.rules"),
        "--output",
        &path("labels_back"),
        "--store",
        store,
    ]);
    let labels_back = Path::new(&dir.path().join("labels_back")).to_path_buf();
    // Every label that had one place in v2 comes back to where it was; the split ones say so.
    assert_eq!(
        lines(
            &labels_back,
            "SELECT concat(coalesce(CAST(category = migrated_category AS VARCHAR), 'n/a'), ' ', coalesce(migration_status, 'no label')) \
             AS outcome FROM t GROUP BY 1 ORDER BY 1"
        )
        .await,
        ["n/a no label", "true mapped"]
    );
    assert_eq!(lines(&labels_back, "SELECT count(*) FROM t WHERE migrated_category IS NULL").await, ["14"]);
    assert_eq!(lines(&labels_back, "SELECT DISTINCT migrated_taxonomy_version FROM t").await, ["v1"]);
}
