//! The optional leading model-name argument shared by lakecat's functions:
//! `f(args…)` uses the session's default model, `f('name', args…)` a named one.

use std::sync::Arc;

use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;

use crate::engine::Engine;
use crate::registry::ModelRegistry;

/// Describes the `model` argument in each function's documentation.
pub(crate) const MODEL_ARGUMENT_DOC: &str = "Optional string literal naming a loaded model (`lakecat sql --model NAME=PATH`); without it the session's default model is used.";

/// Splits `args` into the model and the function's own `arity` arguments.
pub(crate) fn split<'r, 'a, T>(
    models: &'r ModelRegistry,
    function: &str,
    arity: usize,
    args: &'a [T],
    model_name: impl Fn(&'a T) -> Result<String>,
) -> Result<(&'r Arc<Engine>, &'a [T])> {
    let name = if args.len() == arity {
        None
    } else if args.len() == arity + 1 {
        Some(model_name(&args[0])?)
    } else {
        return plan_err!(
            "{function} takes {arity} arguments, or {} with a model name first; got {}",
            arity + 1,
            args.len()
        );
    };
    let offset = args.len() - arity;
    Ok((models.get(name.as_deref())?, &args[offset..]))
}

/// The model name from a planning-time literal.
pub(crate) fn from_literal(function: &str, literal: &Option<&ScalarValue>) -> Result<String> {
    match literal {
        Some(value) => from_scalar(value),
        None => plan_err!("{function}: the model name must be a string literal, e.g. {function}('fashion', …)"),
    }
}

/// The model name from an evaluated argument.
pub(crate) fn from_value(function: &str, value: &ColumnarValue) -> Result<String> {
    match value {
        ColumnarValue::Scalar(value) => from_scalar(value),
        // DataFusion's FFI passes a literal as an array of equal values (datafusion-python).
        ColumnarValue::Array(array) if !array.is_empty() => {
            let first = ScalarValue::try_from_array(array, 0)?;
            for row in 1..array.len() {
                if ScalarValue::try_from_array(array, row)? != first {
                    return exec_err!("{function}: the model name must be a string literal, not a column");
                }
            }
            from_scalar(&first)
        }
        ColumnarValue::Array(_) => exec_err!("{function}: the model name must be a string literal"),
    }
}

pub(crate) fn from_scalar(value: &ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(name)) | ScalarValue::LargeUtf8(Some(name)) | ScalarValue::Utf8View(Some(name)) => {
            Ok(name.clone())
        }
        other => plan_err!("the model name must be a non-NULL string literal, got {other}"),
    }
}
