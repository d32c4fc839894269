//! Unit tests of `bigquery`.

use super::{results::unwrap_cell, *};

#[test]
fn repeated_cells_become_plain_arrays() {
    let cell = serde_json::json!([{"v": "saham"}, {"v": "sukuk"}]);
    assert_eq!(unwrap_cell(cell), serde_json::json!(["saham", "sukuk"]));
    assert_eq!(unwrap_cell(serde_json::json!("3")), serde_json::json!("3"));
}

#[test]
fn every_mart_reads_the_qualified_tweets_table() {
    for mart in marts("`p.d.tweets`", "`p.d.tweet_counts`") {
        assert!(mart.name.starts_with("mart_"));
        assert!(mart.select.contains("`p.d.tweets`"), "{}", mart.name);
        if mart.name.starts_with("mart_keyword_") {
            assert!(mart.select.contains("`p.d.tweet_counts`"), "{}", mart.name);
        }
    }
}

#[test]
fn the_schema_lists_the_columns_in_parquet_order() {
    let names: Vec<String> = tweets_schema()
        .fields
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, TWEETS_COLUMNS);
}
