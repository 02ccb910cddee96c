//! Runs the SQL logic tests in sql/*.slt against the fixture lakehouse (see tests/common).
//! `cargo test --test sqllogictests -- NAME` runs only the files whose name contains NAME (and
//! fails when none does);
//! `-- --complete` rewrites the expected results from what lakecat returns now (review the diff).

mod common;

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

struct LakecatDb {
    ctx: SessionContext,
}

#[async_trait]
impl sqllogictest::AsyncDB for LakecatDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let frame = self.ctx.sql(sql).await?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema.fields().iter().map(|field| column_type(field.data_type())).collect();
        Ok(DBOutput::Rows { types, rows: rows(&batches)? })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "lakecat"
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column, &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|formatter| match formatter.value(row).to_string() {
                        empty if empty.is_empty() => "(empty)".to_string(),
                        value => value,
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn main() {
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let complete = std::env::args().any(|arg| arg == "--complete");
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join("sql"))
        .expect("sql/ exists")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .filter(|path| filter.as_ref().is_none_or(|filter| path.to_string_lossy().contains(filter.as_str())))
        .collect();
    files.sort();
    if files.is_empty() {
        // A filter meant for another test binary must not pass here by running nothing.
        println!(
            "no sql/*.slt file matches {:?}; run other tests with `cargo test --test it -- FILTER`",
            filter.unwrap_or_default()
        );
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut failed = 0;
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(LakecatDb { ctx: common::session().await.ctx }) });
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if complete {
            let updated = runtime.block_on(runner.update_test_file(
                file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::strict_column_validator,
            ));
            if let Err(error) = updated {
                failed += 1;
                println!("FAILED to complete {}: {error}", file.display());
            }
            continue;
        }
        match runtime.block_on(runner.run_file_async(file)) {
            Ok(()) => println!("ok      {}", file.display()),
            Err(error) => {
                failed += 1;
                println!("FAILED  {}\n{error}", file.display());
            }
        }
    }
    println!("{} passed, {failed} failed", files.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
