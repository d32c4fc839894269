//! Query results by column name, BigQuery's errors in a line, and job ids.

use std::time::SystemTime;

use gcp_bigquery_client::{
    error::BQError,
    model::{error_proto::ErrorProto, table_field_schema::TableFieldSchema, table_row::TableRow},
};
use serde_json::Value;

use super::Row;

pub(super) fn named_row(fields: &[TableFieldSchema], row: TableRow) -> Row {
    let cells = row.columns.unwrap_or_default();
    fields
        .iter()
        .zip(cells)
        .map(|(field, cell)| (field.name.clone(), unwrap_cell(cell.value.unwrap_or(Value::Null))))
        .collect()
}

/// Repeated values come as `[{"v": x}, …]`; keep just the values.
pub(super) fn unwrap_cell(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(mut cell) => unwrap_cell(cell.remove("v").unwrap_or(Value::Null)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

pub(super) fn is_conflict(error: &BQError) -> bool {
    matches!(error, BQError::ResponseError { error } if error.error.code == 409)
}

pub(super) fn describe_bq_error(error: &BQError) -> String {
    match error {
        BQError::ResponseError { error } => format!("HTTP {}: {}", error.error.code, error.error.message),
        other => other.to_string(),
    }
}

pub(super) fn describe_errors(errors: &[ErrorProto]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or("error"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A job id no other job used: BigQuery rejects a reused one.
pub(super) fn job_id(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("cilvest_daily_{kind}_{nanos:x}_{:x}", std::process::id())
}
