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
