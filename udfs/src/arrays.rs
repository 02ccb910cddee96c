//! Reading the several Arrow layouts of one logical type (Delta tables come back as views).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;

pub(crate) fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

pub(crate) fn is_bytes(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

/// The values of a string column; NULL for every row of a NULL-typed column.
pub(crate) fn string_values(column: &ArrayRef) -> Result<Vec<Option<&str>>> {
    Ok(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().collect(),
        DataType::Utf8View => column.as_string_view().iter().collect(),
        DataType::Null => vec![None; column.len()],
        other => return exec_err!("expected a string column, got {other}"),
    })
}

/// The raw bytes of a binary or string column.
pub(crate) fn byte_values(column: &ArrayRef) -> Result<Vec<Option<&[u8]>>> {
    Ok(match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => column.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => column.as_binary_view().iter().collect(),
        _ => string_values(column)?.into_iter().map(|value| value.map(str::as_bytes)).collect(),
    })
}
