//! The search side of the daily job: what a fixture day must become in the index, and bulk indexing against throttling,
//! refusals and a conflicting mapping.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use cilvest_workers::search::{self, BulkRetry, ItemFailure};
use elasticsearch::{Elasticsearch, SearchParts};
use serde_json::{Value, json};

use super::marts::mentions;
use super::{DAY1, Expected};
use crate::support::{init_test_logs, service_env, unique};

async fn search_json(es: &Elasticsearch, alias: &str, body: Value) -> Value {
    let response = es
        .search(SearchParts::Index(&[alias]))
        .body(body)
        .send()
        .await
        .expect("search request");
    assert!(
        response.status_code().is_success(),
        "search: {}",
        response.status_code()
    );
    response.json().await.expect("search json")
}

/// Every document behind the alias, by `_id`.
pub(super) async fn search_documents(es: &Elasticsearch, alias: &str) -> BTreeMap<String, Value> {
    let found = search_json(es, alias, json!({"size": 10_000, "query": {"match_all": {}}})).await;
    found["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| (hit["_id"].as_str().expect("_id").to_owned(), hit["_source"].clone()))
        .collect()
}

pub(super) async fn assert_search(es: &Elasticsearch, alias: &str, expected: &BTreeMap<String, Expected>) {
    let docs = search_documents(es, alias).await;
    assert_eq!(
        docs.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "indexed ids"
    );
    for (id, want) in expected {
        let doc = &docs[id];
        assert_eq!(doc["keywords"], json!(want.keywords), "keywords of {id}");
        assert_eq!(
            doc["local_date"],
            json!(want.local_date.to_string()),
            "local_date of {id}"
        );
        assert_eq!(doc["text_clean"], json!(want.text_clean), "text_clean of {id}");
    }

    for keyword in ["saham", "reksadana", "sukuk", "obligasi"] {
        let found = search_json(
            es,
            alias,
            json!({"size": 1000, "query": {"term": {"keywords": keyword}}, "_source": false}),
        )
        .await;
        let ids: BTreeSet<String> = found["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["_id"].as_str().expect("_id").to_owned())
            .collect();
        let want: BTreeSet<String> = mentions(expected)
            .filter(|(k, _)| *k == keyword)
            .map(|(_, r)| r.id.clone())
            .collect();
        assert_eq!(ids, want, "documents of keyword {keyword}");
    }

    // Full-text search on the cleaned text finds "reksa dana" across the line break of tweet 1008.
    let found = search_json(
        es,
        alias,
        json!({"size": 100, "query": {"match_phrase": {"text_clean": "reksa dana"}}, "_source": false}),
    )
    .await;
    let ids: BTreeSet<&str> = found["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["_id"].as_str())
        .collect();
    let want: BTreeSet<&str> = expected
        .values()
        .filter(|r| r.text_clean.contains("reksa dana"))
        .map(|r| r.id.as_str())
        .collect();
    assert!(ids.contains("1008"), "{found}");
    assert_eq!(ids, want, "phrase search for reksa dana");

    // Per-day counts: by local day, and by created_at bucketed in Jakarta time.
    let found = search_json(
        es,
        alias,
        json!({"size": 0, "aggs": {
            "by_local_date": {"date_histogram": {"field": "local_date", "calendar_interval": "day", "format": "yyyy-MM-dd"}},
            "by_created_at": {"date_histogram": {"field": "created_at", "calendar_interval": "day", "time_zone": "+07:00", "format": "yyyy-MM-dd"}},
        }}),
    )
    .await;
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for row in expected.values() {
        *want.entry(row.local_date.to_string()).or_default() += 1;
    }
    for agg in ["by_local_date", "by_created_at"] {
        let got: BTreeMap<String, u64> = found["aggregations"][agg]["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("no {agg} buckets in {found}"))
            .iter()
            .map(|b| {
                (
                    b["key_as_string"].as_str().expect("key").to_owned(),
                    b["doc_count"].as_u64().expect("count"),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(got, want, "{agg}");
    }
}

/// A stand-in for Elasticsearch's `_bulk` that throttles some ids and refuses one, recording every request's ids.
#[derive(Clone, Default)]
struct FakeBulk {
    requests: Arc<Mutex<Vec<Vec<String>>>>,
}

async fn fake_bulk(
    axum::extract::State(fake): axum::extract::State<FakeBulk>,
    body: String,
) -> impl axum::response::IntoResponse {
    let ids: Vec<String> = body
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| v["index"]["_id"].as_str().map(str::to_owned))
        .collect();
    let attempt = {
        let mut requests = fake.requests.lock().expect("lock");
        requests.push(ids.clone());
        requests.len()
    };
    let items: Vec<Value> = ids
        .iter()
        .map(|id| match (id.as_str(), attempt) {
            ("2", 1) | ("4", _) => json!({"index": {"_id": id, "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}}),
            ("3", _) => json!({"index": {"_id": id, "status": 400,
                "error": {"type": "document_parsing_exception", "reason": "failed to parse field [created_at]"}}}),
            _ => json!({"index": {"_id": id, "status": 201, "result": "created"}}),
        })
        .collect();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({"took": 1, "errors": true, "items": items}).to_string(),
    )
}

#[tokio::test]
async fn bulk_indexing_retries_throttled_items_and_reports_refused_ones() {
    let fake = FakeBulk::default();
    let app = axum::Router::new()
        .route("/{index}/_bulk", axum::routing::post(fake_bulk))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let es = search::client(&format!("http://{address}"), None, None).expect("client");
    let docs: Vec<(String, Value)> = (1..=5).map(|i| (i.to_string(), json!({"n": i}))).collect();
    let retry = BulkRetry {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
    };
    let report = search::bulk_index(&es, "tweets-2026.11", &docs, retry)
        .await
        .expect("bulk");
    server.abort();

    assert_eq!(
        *fake.requests.lock().expect("lock"),
        [vec!["1", "2", "3", "4", "5"], vec!["2", "4"], vec!["4"]],
        "only throttled items are sent again"
    );
    assert_eq!(report.indexed, 3);
    assert_eq!(report.retries, 3);
    assert_eq!(
        report.failed,
        [
            ItemFailure {
                id: "3".into(),
                status: 400,
                reason: "document_parsing_exception: failed to parse field [created_at]".into(),
            },
            ItemFailure {
                id: "4".into(),
                status: 429,
                reason: "still throttled after 3 attempts".into(),
            },
        ]
    );
    let err = report
        .into_result("tweets-2026.11", docs.len())
        .expect_err("failures are an error");
    assert!(
        err.to_string()
            .starts_with("failed to index 2 of 5 documents into tweets-2026.11"),
        "{err}"
    );
}

#[tokio::test]
async fn the_search_server_refusing_part_of_a_bulk_is_reported_and_a_fixed_rerun_indexes_each_tweet_once() {
    init_test_logs();
    let es = search::client(&service_env("CILVEST_ES_URL", "search"), None, None).expect("search client");
    let alias = unique("bulk-refused");
    let index = search::monthly_index(&alias, DAY1.parse().expect("date"));
    search::ensure_index(&es, &alias, &index).await.expect("index");
    let doc = |id: u32| {
        json!({"id": id.to_string(), "created_at": "2026-11-01T03:00:00Z", "local_date": DAY1, "local_hour": 10,
            "username": format!("investor{id}"), "text": "beli saham", "text_clean": "beli saham", "lang": "in",
            "keywords": ["saham"]})
    };
    // Two documents the index's strict mapping refuses: a field it does not know, and a hour that is no number.
    let mut docs: Vec<(String, Value)> = (1..=20).map(|id| (id.to_string(), doc(id))).collect();
    docs[4].1["retweets"] = json!(3);
    docs[11].1["local_hour"] = json!("ten");
    let retry = BulkRetry {
        attempts: 2,
        initial_backoff: Duration::from_millis(10),
    };
    let report = search::bulk_index(&es, &index, &docs, retry).await.expect("bulk");
    assert_eq!(report.indexed, 18);
    let refused: Vec<(&str, u16)> = report.failed.iter().map(|f| (f.id.as_str(), f.status)).collect();
    assert_eq!(refused, [("5", 400), ("12", 400)], "{:?}", report.failed);
    assert!(
        report.failed[0].reason.contains("strict_dynamic_mapping_exception"),
        "{:?}",
        report.failed
    );
    assert!(
        report.failed[1].reason.contains("mapper_parsing_exception"),
        "{:?}",
        report.failed
    );
    let err = report
        .into_result(&index, docs.len())
        .expect_err("refusals fail the run");
    assert!(
        err.to_string()
            .starts_with(&format!("failed to index 2 of 20 documents into {index}")),
        "{err}"
    );

    // Once the documents are fixed, indexing all of them again leaves each tweet once (its id is the `_id`).
    let fixed: Vec<(String, Value)> = (1..=20).map(|id| (id.to_string(), doc(id))).collect();
    let report = search::bulk_index(&es, &index, &fixed, retry)
        .await
        .expect("bulk again");
    assert_eq!((report.indexed, report.failed.len()), (20, 0));
    search::refresh(&es, &index).await.expect("refresh");
    let ids: Vec<String> = search_documents(&es, &alias).await.into_keys().collect();
    let mut expected: Vec<String> = (1..=20).map(|id: u32| id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let _ = es
        .indices()
        .delete(elasticsearch::indices::IndicesDeleteParts::Index(&[&index]))
        .send()
        .await;
}

/// A real engine's mapping conflict: the month's index exists with another type for a field (made by hand, or by an
/// older release); every document is refused for it, the run says so, and no document is half-indexed.
#[tokio::test]
async fn an_index_whose_mapping_conflicts_refuses_every_document_and_the_run_says_why() {
    init_test_logs();
    let url = service_env("CILVEST_ES_URL", "search");
    let es = search::client(&url, None, None).expect("search client");
    let alias = unique("mapping-conflict");
    let index = search::monthly_index(&alias, DAY1.parse().expect("date"));
    let created = reqwest::Client::new()
        .put(format!("{url}/{index}"))
        .json(&json!({"mappings": {"properties": {"local_hour": {"type": "boolean"}}}, "aliases": {&alias: {}}}))
        .send()
        .await
        .expect("create a conflicting index");
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap_or_default()
    );
    search::ensure_index(&es, &alias, &index)
        .await
        .expect("the index exists: ensure_index keeps it");
    let docs: Vec<(String, Value)> = (1..=5)
        .map(|id: u32| {
            (
                id.to_string(),
                json!({"id": id.to_string(), "created_at": "2026-11-01T03:00:00Z", "local_date": DAY1,
                "local_hour": 10, "username": "budi", "text": "beli saham", "text_clean": "beli saham", "lang": "in",
                "keywords": ["saham"]}),
            )
        })
        .collect();
    let retry = BulkRetry {
        attempts: 1,
        initial_backoff: Duration::from_millis(10),
    };
    let report = search::bulk_index(&es, &index, &docs, retry).await.expect("bulk");
    assert_eq!((report.indexed, report.failed.len()), (0, 5));
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.status == 400 && f.reason.contains("local_hour")),
        "{:?}",
        report.failed
    );
    let err = report
        .into_result(&index, docs.len())
        .expect_err("a conflict fails the run");
    assert!(err.to_string().contains("failed to index 5 of 5"), "{err}");
    search::refresh(&es, &index).await.expect("refresh");
    assert!(search_documents(&es, &alias).await.is_empty(), "nothing half-indexed");
    let _ = es
        .indices()
        .delete(elasticsearch::indices::IndicesDeleteParts::Index(&[&index]))
        .send()
        .await;
}
