use arrow::array::{Array, AsArray};
use datafusion::assert_batches_eq;
use deltalake::protocol::SaveMode;
use lakecat::SessionBuilder;
use lakecat::jobs::{ImageStorage, ImportJob, Labels};

use crate::common::{fixture, repo_root, session};

#[tokio::test]
async fn fashion_sample_keeps_every_row_image_and_label() {
    let session = session().await;
    let batches = session
        .ctx
        .sql(
            "SELECT count(*) AS rows, count(image) AS images, count(DISTINCT product_id) AS ids, \
             count(category) AS labelled, count(image_source) AS sources \
             FROM products",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+------+--------+-----+----------+---------+",
            "| rows | images | ids | labelled | sources |",
            "+------+--------+-----+----------+---------+",
            "| 239  | 239    | 239 | 239      | 239     |",
            "+------+--------+-----+----------+---------+",
        ],
        &batches
    );
    // A leaf name under two parents stays two categories.
    let batches = session
        .ctx
        .sql("SELECT category, count(*) AS n FROM products WHERE category_path[3] = 'Sandals' GROUP BY category ORDER BY category")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+-----------------------------+----+",
            "| category                    | n  |",
            "+-----------------------------+----+",
            "| Footwear > Sandal > Sandals | 14 |",
            "| Footwear > Shoes > Sandals  | 1  |",
            "+-----------------------------+----+",
        ],
        &batches
    );
}

#[tokio::test]
async fn flipkart_category_trees_and_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("flipkart").display().to_string();
    let sample = repo_root().join("data/sample/flipkart");
    let report = ImportJob::new(sample.join("products.csv"), &table)
        .with_id_column("uniq_id")
        .with_title_column("product_name")
        .with_description_column("description")
        .with_images_dir(sample.join("images"))
        .with_image_column("image")
        .with_labels(Labels::Tree { column: "category_tree".into(), max_depth: Some(2) })
        .execute()
        .await
        .unwrap();
    assert_eq!((report.rows, report.images, report.images_missing, report.labelled), (42, 42, 0, 42));
    let session = SessionBuilder::new().with_table("flipkart", &table).build().await.unwrap();
    let batches = session
        .ctx
        .sql(
            "SELECT count(DISTINCT category_path[1]) AS top_levels, max(array_length(category_path)) AS depth, \
             min(length(description)) > 100 AS long_descriptions, count(source_image) AS source_columns_kept \
             FROM flipkart",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+------------+-------+-------------------+---------------------+",
            "| top_levels | depth | long_descriptions | source_columns_kept |",
            "+------------+-------+-------------------+---------------------+",
            "| 7          | 2     | true              | 42                  |",
            "+------------+-------+-------------------+---------------------+",
        ],
        &batches
    );
}

#[tokio::test]
async fn missing_images_are_kept_as_null_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("products.csv");
    std::fs::write(&csv, "id,name\n14063,Blue Polo\nno-such-product,Ghost\n").unwrap();
    let table = dir.path().join("t").display().to_string();
    let report = ImportJob::new(&csv, &table)
        .with_title_column("name")
        .with_images_dir(repo_root().join("data/sample/fashion/images"))
        .execute()
        .await
        .unwrap();
    assert_eq!((report.rows, report.images, report.images_missing), (2, 1, 1));
    assert!(report.missing_examples[0].contains("no-such-product.jpg: no such file"), "{:?}", report.missing_examples);
    let session = SessionBuilder::new().with_table("t", &table).build().await.unwrap();
    let batches = session
        .ctx
        .sql("SELECT product_id, image IS NULL AS no_image FROM t ORDER BY product_id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+-----------------+----------+",
            "| product_id      | no_image |",
            "+-----------------+----------+",
            "| 14063           | false    |",
            "| no-such-product | true     |",
            "+-----------------+----------+",
        ],
        &batches
    );
}

#[tokio::test]
async fn reference_mode_stores_locations_and_append_adds_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("products.csv");
    std::fs::write(&csv, "id,name\n14063,Blue Polo\n").unwrap();
    let table = dir.path().join("t").display().to_string();
    let job = ImportJob::new(&csv, &table)
        .with_title_column("name")
        .with_images_dir(repo_root().join("data/sample/fashion/images"))
        .with_image_storage(ImageStorage::Reference);
    assert_eq!(job.clone().execute().await.unwrap().table_version, 0);
    let refused = job.clone().execute().await.unwrap_err().to_string();
    assert!(refused.contains("already exists") || refused.contains("exists"), "{refused}");
    assert_eq!(job.with_save_mode(SaveMode::Append).execute().await.unwrap().table_version, 1);
    let session = SessionBuilder::new().with_table("t", &table).build().await.unwrap();
    let batches = session.ctx.sql("SELECT image_uri FROM t").await.unwrap().collect().await.unwrap();
    let uris = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
    assert!(uris.as_string::<i32>().value(0).ends_with("data/sample/fashion/images/14063.jpg"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert!(!uris.is_null(0));
}

#[tokio::test]
async fn missing_columns_are_named_with_the_available_ones() {
    let error = ImportJob::new(
        repo_root().join("data/sample/fashion/products.csv"),
        fixture().root.join("never").display().to_string(),
    )
    .with_title_column("title")
    .with_images_dir("x")
    .execute()
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("has no column title (its columns: id, gender, masterCategory"), "{error}");
}
