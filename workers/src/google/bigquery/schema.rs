//! The warehouse's tables: `tweets` (partitioned by local day), `tweet_counts`, and the staging tables of a load.

use std::time::SystemTime;

use gcp_bigquery_client::model::{
    table::Table, table_field_schema::TableFieldSchema, table_schema::TableSchema, time_partitioning::TimePartitioning,
};

use super::{COUNTS_TABLE, STAGING_TTL, TWEETS_TABLE};

/// The columns of `tweets`, in the curated Parquet's order (the emulator loads Parquet by position).
pub const TWEETS_COLUMNS: [&str; 9] = [
    "id",
    "created_at",
    "local_date",
    "local_hour",
    "username",
    "text",
    "text_clean",
    "lang",
    "keywords",
];

/// The schema of `tweets`, its staging tables and the load job.
pub fn tweets_schema() -> TableSchema {
    let required = |mut field: TableFieldSchema| {
        field.mode = Some("REQUIRED".to_owned());
        field
    };
    let mut keywords = TableFieldSchema::string("keywords");
    keywords.mode = Some("REPEATED".to_owned());
    TableSchema::new(vec![
        required(TableFieldSchema::string("id")),
        required(TableFieldSchema::timestamp("created_at")),
        required(TableFieldSchema::date("local_date")),
        required(TableFieldSchema::integer("local_hour")),
        TableFieldSchema::string("username"),
        required(TableFieldSchema::string("text")),
        required(TableFieldSchema::string("text_clean")),
        required(TableFieldSchema::string("lang")),
        keywords,
    ])
}

/// `tweets`, partitioned by local day so that a day is replaced by touching one partition. Not clustered:
/// BigQuery cannot cluster on a REPEATED column such as `keywords`, and a day is a few MB.
pub(super) fn tweets_table(project: &str, dataset: &str) -> Table {
    Table::new(project, dataset, TWEETS_TABLE, tweets_schema())
        .time_partitioning(TimePartitioning::per_day().field("local_date"))
        .description("Curated tweets, one row per tweet; written by `cilvest daily`, one local day at a time")
}

/// The schema of `tweet_counts`.
pub fn counts_schema() -> TableSchema {
    let required = |mut field: TableFieldSchema| {
        field.mode = Some("REQUIRED".to_owned());
        field
    };
    TableSchema::new(vec![
        required(TableFieldSchema::string("keyword")),
        required(TableFieldSchema::date("local_date")),
        required(TableFieldSchema::integer("local_hour")),
        required(TableFieldSchema::timestamp("hour_start")),
        required(TableFieldSchema::integer("tweets")),
        required(TableFieldSchema::timestamp("fetched_at")),
    ])
}

pub(super) fn counts_table(project: &str, dataset: &str) -> Table {
    Table::new(project, dataset, COUNTS_TABLE, counts_schema())
        .time_partitioning(TimePartitioning::per_day().field("local_date"))
        .description(
            "Posts X counted per keyword and hour without reading them (counts mode); written by `cilvest daily`",
        )
}

/// A staging table for one load. It carries a trailing nullable `dt` column besides the tweets' columns because
/// the emulator's Parquet reader (DuckDB) adds the `dt=D` directory of the source path as a last column and
/// inserts by position; BigQuery replaces the schema with the load's on WRITE_TRUNCATE, so there it is unused.
pub(super) fn staging_table(project: &str, dataset: &str, name: &str) -> Table {
    let mut schema = tweets_schema();
    if let Some(fields) = schema.fields.as_mut() {
        fields.push(TableFieldSchema::date("dt"));
    }
    Table::new(project, dataset, name, schema).expiration_time(SystemTime::now() + STAGING_TTL)
}
