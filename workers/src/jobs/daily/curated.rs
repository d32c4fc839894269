//! The curated lake format: one Snappy-compressed Parquet object per local day, `curated/dt=D/part-00000.parquet`,
//! with the columns of the warehouse's `tweets` table in the same order.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Date32Array, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    builder::{ListBuilder, StringBuilder},
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use compact_str::CompactString;
use object_store::path::Path;
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::Compression,
    errors::ParquetError,
    file::properties::WriterProperties,
};

use crate::transform::CuratedTweet;

/// The one object of day `date`: a fixed name, so a rerun overwrites it instead of adding a second copy.
pub fn part_path(date: NaiveDate) -> Path {
    Path::from(format!("{}/part-00000.parquet", day_prefix(date)))
}

/// `curated/dt=YYYY-MM-DD`, the folder of one day.
pub fn day_prefix(date: NaiveDate) -> String {
    format!("curated/dt={date}")
}

/// The Arrow schema of curated rows. `keywords` is a list whose element is named `element`, as the Parquet LIST
/// specification spells it, which BigQuery's list inference and Spark read as an array of strings.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("local_date", DataType::Date32, false),
        Field::new("local_hour", DataType::Int64, false),
        Field::new("username", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, false),
        Field::new("text_clean", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("keywords", DataType::List(keyword_field()), false),
    ]))
}

fn keyword_field() -> Arc<Field> {
    Arc::new(Field::new("element", DataType::Utf8, false))
}

/// Rows turned into Arrow columns at a time while encoding: the Arrow copy of a whole 1M-tweet day (about 150 MB)
/// would sit beside the rows. The file has the same rows, order, schema and one row group as one batch would give;
/// only where the writer cuts pages can move.
const ENCODE_CHUNK: usize = 8 * 1024;

/// Encode `rows` as one Parquet file (a schema-only file for an empty day, so the day's data is still replaced).
pub fn encode(rows: &[CuratedTweet]) -> Result<Vec<u8>, ParquetError> {
    let schema = schema();
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(properties))?;
    for chunk in rows.chunks(ENCODE_CHUNK) {
        writer.write(&batch(&schema, chunk)?)?;
    }
    writer.into_inner()
}

/// One Arrow record batch of `rows`.
fn batch(schema: &SchemaRef, rows: &[CuratedTweet]) -> Result<RecordBatch, ParquetError> {
    let epoch = NaiveDate::default();
    let mut keywords = ListBuilder::new(StringBuilder::new()).with_field(keyword_field());
    for row in rows {
        for keyword in &row.keywords {
            keywords.values().append_value(keyword);
        }
        keywords.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.id))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.created_at.timestamp_micros()))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| (r.local_date - epoch).num_days() as i32),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| i64::from(r.local_hour)),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.username.as_deref()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.text))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.text_clean))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.lang))),
        Arc::new(keywords.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Decode a curated Parquet file written by [`encode`] (or by another engine with the same schema).
pub fn decode(bytes: Bytes) -> Result<Vec<CuratedTweet>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let epoch = NaiveDate::default();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ids = column::<StringArray>(&batch, "id")?;
        let created = column::<TimestampMicrosecondArray>(&batch, "created_at")?;
        let dates = column::<Date32Array>(&batch, "local_date")?;
        let hours = column::<Int64Array>(&batch, "local_hour")?;
        let usernames = column::<StringArray>(&batch, "username")?;
        let texts = column::<StringArray>(&batch, "text")?;
        let cleans = column::<StringArray>(&batch, "text_clean")?;
        let langs = column::<StringArray>(&batch, "lang")?;
        let keywords = column::<ListArray>(&batch, "keywords")?;
        for i in 0..batch.num_rows() {
            let list = keywords.value(i);
            let names = list
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| ParquetError::General("keywords is not a list of strings".into()))?;
            rows.push(CuratedTweet {
                id: ids.value(i).into(),
                created_at: DateTime::from_timestamp_micros(created.value(i))
                    .ok_or_else(|| ParquetError::General(format!("created_at {} out of range", created.value(i))))?,
                local_date: epoch + chrono::Days::new(u64::try_from(dates.value(i)).unwrap_or_default()),
                local_hour: u32::try_from(hours.value(i)).unwrap_or_default(),
                username: usernames.is_valid(i).then(|| usernames.value(i).into()),
                text: texts.value(i).to_owned(),
                text_clean: cleans.value(i).to_owned(),
                lang: langs.value(i).into(),
                keywords: names.iter().flatten().map(CompactString::new).collect(),
            });
        }
    }
    Ok(rows)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ParquetError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ParquetError::General(format!("column {name} is missing or has the wrong type")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, keywords: &[&str], username: Option<&str>) -> CuratedTweet {
        CuratedTweet {
            id: id.into(),
            created_at: "2026-10-31T17:30:00.123456Z".parse().expect("time"),
            local_date: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            local_hour: 0,
            username: username.map(CompactString::new),
            text: "Beli #saham 🚀".into(),
            text_clean: "beli saham".into(),
            lang: "id".into(),
            keywords: keywords.iter().map(|k| CompactString::new(k)).collect(),
        }
    }

    #[test]
    fn rows_survive_a_round_trip() {
        let rows = vec![
            row("1", &["saham", "sukuk"], Some("budi")),
            row("2", &[], None),
            row("3", &["reksadana"], Some("sari")),
        ];
        let bytes = encode(&rows).expect("encode");
        assert_eq!(decode(Bytes::from(bytes)).expect("decode"), rows);
    }

    #[test]
    fn an_empty_day_is_a_valid_file() {
        let bytes = encode(&[]).expect("encode");
        assert!(decode(Bytes::from(bytes)).expect("decode").is_empty());
    }

    #[test]
    fn the_same_rows_give_the_same_bytes() {
        let rows = vec![row("1", &["saham"], Some("budi"))];
        assert_eq!(encode(&rows).expect("first"), encode(&rows).expect("second"));
    }

    #[test]
    fn a_day_of_several_chunks_survives_a_round_trip_as_one_row_group() {
        let rows: Vec<CuratedTweet> = (0..ENCODE_CHUNK + 3000)
            .map(|i| {
                let keywords: &[&str] = if i % 3 == 0 { &["saham"] } else { &[] };
                let mut row = row(&i.to_string(), keywords, (i % 5 != 0).then_some("budi"));
                row.text = format!("tweet {i} {}", "x".repeat(i % 97));
                row
            })
            .collect();
        let bytes = Bytes::from(encode(&rows).expect("encode"));
        let groups = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .expect("reader")
            .metadata()
            .num_row_groups();
        assert_eq!(groups, 1);
        assert_eq!(decode(bytes).expect("decode"), rows);
    }

    #[test]
    fn the_columns_are_the_warehouse_columns() {
        let names: Vec<String> = schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, crate::google::bigquery::TWEETS_COLUMNS);
    }
}
