//! `cilvest daily` against the real services of `scripts/testenv`: the BigQuery emulator, the search server and the
//! GCS emulator (or a local lake where the BigQuery emulator reads it).
//!
//! The fixtures under `fixtures/daily/` carry the expected outcome of every line in an `_expect` field (`keywords`
//! and `text_clean` of a kept tweet, or the reason it is dropped), which the transform ignores. The tests compute
//! every expected row, count and mart from those annotations and the tweets' timestamps, without the code under test.

mod bigquery_outage;
mod indexing;
mod marts;
mod runs;
#[path = "../support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike, Utc};
use cilvest_workers::{
    google::bigquery::{Row, Warehouse},
    jobs::daily::{self, Report, curated},
    search,
    transform::CuratedTweet,
};
use clap::Parser;
use elasticsearch::Elasticsearch;
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::{Value, json};

use support::{init_test_logs, service_env, unique};

const DAY1: &str = "2026-11-01";
const DAY2: &str = "2026-11-02";
/// Asia/Jakarta has been UTC+7 without daylight saving since 1964; the tests use the fixed offset, the job its
/// time-zone database.
const JAKARTA_OFFSET_SECONDS: i32 = 7 * 3600;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/daily")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The raw objects of the fixture days, as the consumer lays them out: `(path, body)`.
fn raw_objects() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("raw/dt={DAY1}/cilvest.demo.raw-0-100.ndjson.gz"),
            gzip(&fixture("2026-11-01.a.ndjson")),
        ),
        (
            format!("raw/dt={DAY1}/cilvest.demo.raw-1-200.ndjson"),
            fixture("2026-11-01.b.ndjson").into_bytes(),
        ),
        (
            format!("raw/dt={DAY2}/cilvest.demo.raw-0-300.ndjson.gz"),
            gzip(&fixture("2026-11-02.ndjson")),
        ),
    ]
}

/// What the fixture says a kept tweet becomes.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    id: String,
    created_at: DateTime<Utc>,
    local_date: NaiveDate,
    local_hour: u32,
    username: Option<String>,
    text: String,
    text_clean: String,
    keywords: Vec<String>,
}

/// What the fixture says about one day: kept rows by id and the count of each drop reason.
#[derive(Debug, Default)]
struct ExpectedDay {
    rows: BTreeMap<String, Expected>,
    drops: BTreeMap<String, u64>,
}

impl ExpectedDay {
    fn from_fixtures(names: &[&str]) -> Self {
        let mut day = Self::default();
        for name in names {
            for line in fixture(name).lines() {
                day.add(line.trim_end_matches('\r'));
            }
        }
        day
    }

    fn add(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            *self.drops.entry("rejected".into()).or_default() += 1;
            return;
        };
        let expect = &record["_expect"];
        if let Some(reason) = expect["drop"].as_str() {
            *self.drops.entry(reason.into()).or_default() += 1;
            return;
        }
        let tweet = if record.get("tweet").is_some() {
            &record["tweet"]
        } else {
            &record
        };
        let created_at: DateTime<Utc> = tweet["created_at"].as_str().expect("created_at").parse().expect("time");
        let local = created_at.with_timezone(&FixedOffset::east_opt(JAKARTA_OFFSET_SECONDS).expect("offset"));
        let row = Expected {
            id: tweet["id"].as_str().expect("id").into(),
            created_at,
            local_date: local.date_naive(),
            local_hour: local.hour(),
            username: record["author_username"].as_str().map(str::to_owned),
            text: tweet["text"].as_str().expect("text").into(),
            text_clean: expect["text_clean"].as_str().expect("text_clean").into(),
            keywords: serde_json::from_value(expect["keywords"].clone()).expect("keywords"),
        };
        assert!(
            self.rows.insert(row.id.clone(), row).is_none(),
            "two kept copies in the fixture"
        );
    }

    fn drop_count(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }

    fn tweets_in(&self) -> u64 {
        self.rows.len() as u64
            + self
                .drops
                .iter()
                .filter(|(r, _)| *r != "rejected")
                .map(|(_, n)| n)
                .sum::<u64>()
    }
}

fn pipeline_config(dir: &FsPath, lake_uri: &str, dataset: &str, marts: &str, alias: &str) -> PathBuf {
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    let search_url = service_env("CILVEST_ES_URL", "search");
    let config = json!({
        "pipeline": "demo",
        "namespace": "default",
        "kafkaBootstrap": "127.0.0.1:19092",
        "rawTopic": "cilvest.demo.raw",
        "consumerGroup": "cilvest.demo.lake",
        "searchUrl": search_url,
        "spec": {
            "keywords": [
                {"name": "saham", "terms": ["saham", "#saham"]},
                {"name": "reksadana", "terms": ["reksadana", "reksa dana"]},
                {"name": "sukuk", "terms": ["sukuk"]},
                {"name": "obligasi", "terms": ["obligasi", "SBN"]},
            ],
            "language": "in",
            "schedule": {"timeZone": "Asia/Jakarta"},
            "targets": {
                "lake": {"uri": lake_uri},
                "bigquery": {"project": project, "dataset": dataset, "martsDataset": marts},
                "elasticsearch": {"external": {"url": search_url}, "index": alias},
            },
        },
    });
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config json")).expect("write config");
    path
}

/// One test's pipeline: a lake where the BigQuery emulator reads `gs://` URIs, fresh datasets and a fresh alias.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    lake_uri: String,
    lake: Arc<dyn ObjectStore>,
    dataset: String,
    marts: String,
    alias: String,
}

impl Setup {
    async fn new() -> Self {
        init_test_logs();
        // The emulator's load jobs read gs://BUCKET/PATH from $CILVEST_BQ_GCS_LOCAL_ROOT/BUCKET/PATH, so the job
        // writes the lake there (`--lake`, like a gcsfuse mount) while the spec names the gs:// bucket.
        let root = service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery");
        let bucket = unique("daily-lake");
        let lake_uri = format!("file://{root}/{bucket}/lake");
        let dir = std::env::temp_dir().join(unique("cilvest-daily"));
        let dataset = unique("daily").replace('-', "_");
        let marts = format!("{dataset}_marts");
        let alias = unique("daily-tweets");
        let config = pipeline_config(&dir, &format!("gs://{bucket}/lake"), &dataset, &marts, &alias);
        let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
        for (path, body) in raw_objects() {
            lake.put(&Path::from(path), PutPayload::from(body))
                .await
                .expect("put raw");
        }
        Self {
            dir,
            config,
            lake_uri,
            lake,
            dataset,
            marts,
            alias,
        }
    }

    /// Remove what the test made; called only after it passed, so a failure leaves everything to look at.
    async fn clean_up(&self) {
        let index = search::monthly_index(&self.alias, DAY1.parse().expect("date"));
        let _ = self
            .search()
            .indices()
            .delete(elasticsearch::indices::IndicesDeleteParts::Index(&[&index]))
            .send()
            .await;
        support::clean_warehouse_and_lake(&[&self.dataset, &self.marts], &self.lake_uri).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn termination_log(&self) -> PathBuf {
        self.dir.join("termination-log")
    }

    async fn run(&self, date: &str, extra: &[&str]) -> Result<Report, daily::DailyError> {
        let bigquery = service_env("CILVEST_BQ_URL", "bigquery");
        let config = self.config.display().to_string();
        let log = self.termination_log().display().to_string();
        let mut argv = vec![
            "daily",
            "--config",
            &config,
            "--date",
            date,
            "--lake",
            &self.lake_uri,
            "--termination-log",
            &log,
        ];
        if !extra.contains(&"--bigquery-endpoint") {
            argv.extend(["--bigquery-endpoint", &bigquery]);
        }
        argv.extend_from_slice(extra);
        daily::run(daily::Args::parse_from(argv)).await
    }

    async fn warehouse(&self) -> Warehouse {
        support::warehouse().await
    }

    fn search(&self) -> Elasticsearch {
        search::client(&service_env("CILVEST_ES_URL", "search"), None, None).expect("search client")
    }

    async fn curated(&self, date: &str) -> Vec<CuratedTweet> {
        let date: NaiveDate = date.parse().expect("date");
        let body = self
            .lake
            .get(&curated::part_path(date))
            .await
            .expect("curated object")
            .bytes()
            .await
            .expect("curated bytes");
        curated::decode(body).expect("decode curated")
    }
}

fn assert_report(report: &Report, expected: &ExpectedDay, date: &str) {
    assert_eq!(report.date, date);
    assert_eq!(report.result, "Succeeded");
    assert_eq!(report.tweets_kept, expected.rows.len() as u64, "{report:#?}");
    assert_eq!(report.tweets_in, expected.tweets_in(), "{report:#?}");
    assert_eq!(report.rejected, expected.drop_count("rejected"), "{report:#?}");
    assert_eq!(report.dropped.retweets, expected.drop_count("retweet"));
    assert_eq!(report.dropped.other_language, expected.drop_count("language"));
    assert_eq!(report.dropped.duplicates, expected.drop_count("duplicate"));
    assert_eq!(report.dropped.other_day, expected.drop_count("other_day"));
    let mut per_keyword: BTreeMap<String, u64> = ["saham", "reksadana", "sukuk", "obligasi"]
        .into_iter()
        .map(|k| (k.to_owned(), 0))
        .collect();
    for row in expected.rows.values() {
        for keyword in &row.keywords {
            *per_keyword.entry(keyword.clone()).or_default() += 1;
        }
    }
    assert_eq!(report.per_keyword, per_keyword);
    assert_eq!(
        report.unmatched,
        expected.rows.values().filter(|r| r.keywords.is_empty()).count() as u64
    );
}

fn assert_curated(rows: &[CuratedTweet], expected: &ExpectedDay) {
    let by_id: BTreeMap<&str, &CuratedTweet> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        expected.rows.keys().map(String::as_str).collect::<Vec<_>>(),
        "kept ids"
    );
    for (id, want) in &expected.rows {
        let got = by_id[id.as_str()];
        let got = Expected {
            id: got.id.to_string(),
            created_at: got.created_at,
            local_date: got.local_date,
            local_hour: got.local_hour,
            username: got.username.as_ref().map(ToString::to_string),
            text: got.text.clone(),
            text_clean: got.text_clean.clone(),
            keywords: got.keywords.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(&got, want, "row {id}");
        assert_eq!(by_id[id.as_str()].lang, "id", "row {id}");
    }
    let order: Vec<_> = rows
        .iter()
        .map(|r| (r.created_at, r.id.parse::<u64>().expect("id")))
        .collect();
    assert!(order.is_sorted(), "rows are ordered by created_at, id");
}

fn text(row: &Row, column: &str) -> String {
    match &row[column] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(row: &Row, column: &str) -> i64 {
    text(row, column)
        .parse()
        .unwrap_or_else(|_| panic!("{column} of {row:?} is not an integer"))
}

fn float(row: &Row, column: &str) -> f64 {
    text(row, column)
        .parse()
        .unwrap_or_else(|_| panic!("{column} of {row:?} is not a number"))
}

async fn select(warehouse: &Warehouse, dataset: &str, table: &str) -> Vec<Row> {
    warehouse
        .query(
            &format!("read {table}"),
            &format!("SELECT * FROM {}", warehouse.table_sql(dataset, table)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Rows in a stable order, for comparing two reads of a table.
fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|row| serde_json::to_string(row).unwrap_or_default());
    rows
}
