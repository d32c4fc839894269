//! `cilvest daily` against the real services of `scripts/testenv`: the BigQuery emulator, the search server and the
//! GCS emulator (or a local lake where the BigQuery emulator reads it).
//!
//! The fixtures under `fixtures/daily/` carry the expected outcome of every line in an `_expect` field (`keywords`
//! and `text_clean` of a kept tweet, or the reason it is dropped), which the transform ignores. The tests compute
//! every expected row, count and mart from those annotations and the tweets' timestamps, without the code under test.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path as FsPath, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Days, FixedOffset, NaiveDate, Timelike, Utc};
use cilvest_crds::DailyRun;
use cilvest_workers::{
    google::bigquery::{Row, Warehouse},
    jobs::daily::{self, Report, curated},
    search::{self, BulkRetry, ItemFailure},
    transform::CuratedTweet,
};
use clap::Parser;
use elasticsearch::{Elasticsearch, SearchParts};
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::{Value, json};
use support::{gcs_lake, init_test_logs, service_env, unique};

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

fn assert_warehouse_tweets(rows: &[Row], expected: &BTreeMap<String, Expected>) {
    let by_id: BTreeMap<String, &Row> = rows.iter().map(|r| (text(r, "id"), r)).collect();
    assert_eq!(rows.len(), by_id.len(), "no duplicate ids in tweets");
    assert_eq!(by_id.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (id, want) in expected {
        let row = by_id[id];
        assert_eq!(
            int(row, "created_at"),
            want.created_at.timestamp_micros(),
            "created_at of {id}"
        );
        assert_eq!(
            text(row, "local_date"),
            want.local_date.to_string(),
            "local_date of {id}"
        );
        assert_eq!(int(row, "local_hour"), i64::from(want.local_hour), "local_hour of {id}");
        assert_eq!(row["username"].as_str(), want.username.as_deref(), "username of {id}");
        assert_eq!(text(row, "text"), want.text, "text of {id}");
        assert_eq!(text(row, "text_clean"), want.text_clean, "text_clean of {id}");
        assert_eq!(text(row, "lang"), "id", "lang of {id}");
        assert_eq!(row["keywords"], json!(want.keywords), "keywords of {id}");
    }
}

/// `(keyword, row)` for every keyword of every row: how keyword marts count.
fn mentions(rows: &BTreeMap<String, Expected>) -> impl Iterator<Item = (&str, &Expected)> {
    rows.values()
        .flat_map(|row| row.keywords.iter().map(move |k| (k.as_str(), row)))
}

/// Rank by count, descending, with ties sharing a rank (SQL RANK()), keeping ranks up to 10.
fn top10(counts: &BTreeMap<String, i64>) -> BTreeMap<String, (i64, i64)> {
    counts
        .iter()
        .map(|(user, n)| {
            (
                user.clone(),
                (*n, 1 + counts.values().filter(|m| *m > n).count() as i64),
            )
        })
        .filter(|(_, (_, rank))| *rank <= 10)
        .collect()
}

/// docs/looker-studio.md names only tables and fields the daily job builds: each `| `table` | `field`, ... |` row
/// of its table list, against the columns the marts dataset returns.
async fn looker_studio_doc_names_real_fields(warehouse: &Warehouse, marts: &str) {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/looker-studio.md"))
        .expect("docs/looker-studio.md");
    let ticked = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut tables = 0;
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        let table = ticked(cells[1]).remove(0);
        let rows = select(warehouse, marts, &table).await;
        let columns: BTreeSet<&String> = rows.first().map(|r| r.keys().collect()).unwrap_or_default();
        assert!(!columns.is_empty(), "{table}: no rows to read columns from");
        for field in ticked(cells[2]) {
            assert!(
                columns.contains(&field),
                "docs/looker-studio.md names {table}.{field}; it has {columns:?}"
            );
        }
        tables += 1;
    }
    assert_eq!(tables, 7, "every mart and view is in the doc's table");
}

async fn assert_marts(warehouse: &Warehouse, marts: &str, expected: &BTreeMap<String, Expected>) {
    let authors = |rows: &mut dyn Iterator<Item = &Expected>| -> i64 {
        rows.filter_map(|r| r.username.clone()).collect::<BTreeSet<_>>().len() as i64
    };

    let total = select(warehouse, marts, "mart_total_tweets").await;
    assert_eq!(total.len(), 1);
    assert_eq!(int(&total[0], "tweets"), expected.len() as i64);
    assert_eq!(int(&total[0], "authors"), authors(&mut expected.values()));
    assert_eq!(text(&total[0], "first_day"), DAY1);
    assert_eq!(text(&total[0], "last_day"), DAY2);

    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for keyword in mentions(expected).map(|(k, _)| k).collect::<BTreeSet<_>>() {
        let rows: Vec<&Expected> = mentions(expected)
            .filter(|(k, _)| *k == keyword)
            .map(|(_, r)| r)
            .collect();
        want.insert(
            keyword.to_owned(),
            (rows.len() as i64, authors(&mut rows.iter().copied())),
        );
    }
    let got: BTreeMap<String, (i64, i64)> = select(warehouse, marts, "mart_tweets_per_keyword")
        .await
        .iter()
        .map(|r| (text(r, "keyword"), (int(r, "tweets"), int(r, "authors"))))
        .collect();
    assert_eq!(got, want, "mart_tweets_per_keyword");
    // What a chart reading v_keyword_daily adds up per keyword: the distinct kept tweets that mention it.
    let mut charted: BTreeMap<String, i64> = BTreeMap::new();
    for row in select(warehouse, marts, "v_keyword_daily").await {
        assert_eq!(text(&row, "source"), "read", "{row:?}");
        *charted.entry(text(&row, "keyword")).or_default() += int(&row, "tweets");
    }
    let distinct: BTreeMap<String, i64> = want.iter().map(|(k, (tweets, _))| (k.clone(), *tweets)).collect();
    assert_eq!(
        charted, distinct,
        "v_keyword_daily: one number per keyword and day, summing to the kept tweets"
    );

    let mut daily: BTreeMap<(String, NaiveDate), Vec<&Expected>> = BTreeMap::new();
    for (keyword, row) in mentions(expected) {
        daily.entry((keyword.to_owned(), row.local_date)).or_default().push(row);
    }
    let day_totals: BTreeMap<NaiveDate, usize> = expected.values().fold(BTreeMap::new(), |mut totals, row| {
        *totals.entry(row.local_date).or_default() += 1;
        totals
    });
    let got: BTreeMap<(String, NaiveDate), Row> = select(warehouse, marts, "mart_keyword_daily")
        .await
        .into_iter()
        .map(|r| ((text(&r, "keyword"), text(&r, "local_date").parse().expect("date")), r))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        daily.keys().collect::<Vec<_>>(),
        "mart_keyword_daily keys"
    );
    for ((keyword, date), rows) in &daily {
        let row = &got[&(keyword.clone(), *date)];
        assert_eq!(int(row, "tweets"), rows.len() as i64, "tweets of {keyword} on {date}");
        assert_eq!(
            int(row, "authors"),
            authors(&mut rows.iter().copied()),
            "authors of {keyword} on {date}"
        );
        let week: usize = (0..7)
            .filter_map(|back| date.checked_sub_days(Days::new(back)))
            .map(|day| daily.get(&(keyword.clone(), day)).map_or(0, Vec::len))
            .sum();
        assert!(
            (float(row, "tweets_7d_avg") - week as f64 / 7.0).abs() < 1e-9,
            "7-day average of {keyword} on {date}"
        );
        let share = rows.len() as f64 / day_totals[date] as f64;
        assert!(
            (float(row, "share_of_day") - share).abs() < 1e-9,
            "share of {keyword} on {date}"
        );
    }

    let mut hourly: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for (keyword, row) in mentions(expected) {
        *hourly
            .entry((
                keyword.to_owned(),
                row.local_date.to_string(),
                i64::from(row.local_hour),
            ))
            .or_default() += 1;
    }
    let got: BTreeMap<(String, String, i64), i64> = select(warehouse, marts, "mart_keyword_hourly")
        .await
        .iter()
        .map(|r| {
            (
                (text(r, "keyword"), text(r, "local_date"), int(r, "local_hour")),
                int(r, "tweets"),
            )
        })
        .collect();
    assert_eq!(got, hourly, "mart_keyword_hourly");

    let mut per_user: BTreeMap<String, i64> = BTreeMap::new();
    for username in expected.values().filter_map(|r| r.username.clone()) {
        *per_user.entry(username).or_default() += 1;
    }
    let want = top10(&per_user);
    assert!(want.len() < per_user.len(), "the fixture has users below the top 10");
    let got: BTreeMap<String, (i64, i64)> = select(warehouse, marts, "mart_top_users")
        .await
        .iter()
        .map(|r| (text(r, "username"), (int(r, "tweets"), int(r, "rank"))))
        .collect();
    assert_eq!(got, want, "mart_top_users");

    let mut want: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for keyword in mentions(expected).map(|(k, _)| k).collect::<BTreeSet<_>>() {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for (_, row) in mentions(expected).filter(|(k, _)| *k == keyword) {
            if let Some(username) = &row.username {
                *counts.entry(username.clone()).or_default() += 1;
            }
        }
        for (username, value) in top10(&counts) {
            want.insert((keyword.to_owned(), username), value);
        }
    }
    let got: BTreeMap<(String, String), (i64, i64)> = select(warehouse, marts, "mart_top_users_per_keyword")
        .await
        .iter()
        .map(|r| {
            (
                (text(r, "keyword"), text(r, "username")),
                (int(r, "tweets"), int(r, "rank")),
            )
        })
        .collect();
    assert_eq!(got, want, "mart_top_users_per_keyword");
}

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
async fn search_documents(es: &Elasticsearch, alias: &str) -> BTreeMap<String, Value> {
    let found = search_json(es, alias, json!({"size": 10_000, "query": {"match_all": {}}})).await;
    found["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| (hit["_id"].as_str().expect("_id").to_owned(), hit["_source"].clone()))
        .collect()
}

async fn assert_search(es: &Elasticsearch, alias: &str, expected: &BTreeMap<String, Expected>) {
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

#[tokio::test]
async fn a_fixture_day_lands_in_the_lake_warehouse_marts_and_search_and_reruns_change_nothing() {
    let setup = Setup::new().await;
    let day1 = ExpectedDay::from_fixtures(&["2026-11-01.a.ndjson", "2026-11-01.b.ndjson"]);
    let day2 = ExpectedDay::from_fixtures(&["2026-11-02.ndjson"]);
    let mut all = day1.rows.clone();
    all.extend(day2.rows.clone());

    let report = setup.run(DAY1, &[]).await.unwrap_or_else(|e| panic!("day 1: {e}"));
    assert_report(&report, &day1, DAY1);
    let termination: DailyRun =
        serde_json::from_slice(&std::fs::read(setup.termination_log()).expect("termination log")).expect("DailyRun");
    assert_eq!(termination.result, "Succeeded");
    assert_eq!(termination.tweets_kept, day1.rows.len() as i64);
    assert_eq!(termination.rejected, day1.drop_count("rejected") as i64);
    let lake_report: Report = serde_json::from_slice(
        &setup
            .lake
            .get(&Path::from(format!("reports/dt={DAY1}.json")))
            .await
            .expect("report object")
            .bytes()
            .await
            .expect("report bytes"),
    )
    .expect("report json");
    assert_eq!(lake_report.per_keyword, report.per_keyword);
    assert_curated(&setup.curated(DAY1).await, &day1);

    let report = setup.run(DAY2, &[]).await.unwrap_or_else(|e| panic!("day 2: {e}"));
    assert_report(&report, &day2, DAY2);
    assert_curated(&setup.curated(DAY2).await, &day2);

    let warehouse = setup.warehouse().await;
    let tweets = select(&warehouse, &setup.dataset, "tweets").await;
    assert_warehouse_tweets(&tweets, &all);
    assert_marts(&warehouse, &setup.marts, &all).await;
    looker_studio_doc_names_real_fields(&warehouse, &setup.marts).await;
    let es = setup.search();
    assert_search(&es, &setup.alias, &all).await;

    // Running day 1 again changes nothing anywhere.
    let mart_names = [
        "mart_total_tweets",
        "mart_tweets_per_keyword",
        "mart_keyword_daily",
        "mart_keyword_hourly",
        "mart_top_users",
        "mart_top_users_per_keyword",
    ];
    let mut before = vec![sorted(tweets)];
    for mart in mart_names {
        before.push(sorted(select(&warehouse, &setup.marts, mart).await));
    }
    let documents_before = search_documents(&es, &setup.alias).await;
    let curated_before = setup.curated(DAY1).await;

    setup
        .run(DAY1, &[])
        .await
        .unwrap_or_else(|e| panic!("day 1 again: {e}"));
    let mut after = vec![sorted(select(&warehouse, &setup.dataset, "tweets").await)];
    for mart in mart_names {
        after.push(sorted(select(&warehouse, &setup.marts, mart).await));
    }
    assert_eq!(after, before, "the warehouse and marts after a rerun");
    assert_eq!(
        search_documents(&es, &setup.alias).await,
        documents_before,
        "the index after a rerun"
    );
    assert_eq!(
        setup.curated(DAY1).await,
        curated_before,
        "the curated day after a rerun"
    );
    let counts = warehouse
        .query(
            "count ids",
            &format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {}",
                warehouse.table_sql(&setup.dataset, "tweets")
            ),
        )
        .await
        .expect("count");
    assert_eq!(int(&counts[0], "n"), all.len() as i64);
    assert_eq!(int(&counts[0], "ids"), all.len() as i64);

    // A rerun after raw data went away (e.g. moved to quarantine) leaves none of its tweets behind.
    setup
        .lake
        .delete(&Path::from(format!("raw/dt={DAY1}/cilvest.demo.raw-1-200.ndjson")))
        .await
        .expect("delete raw object");
    let report = setup
        .run(DAY1, &[])
        .await
        .unwrap_or_else(|e| panic!("day 1 without part b: {e}"));
    let curated_ids: BTreeSet<String> = setup
        .curated(DAY1)
        .await
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(curated_ids.len() as u64, report.tweets_kept);
    let warehouse_ids: BTreeSet<String> = warehouse
        .query(
            "read day 1 ids",
            &format!(
                "SELECT id FROM {} WHERE local_date = DATE '{DAY1}'",
                warehouse.table_sql(&setup.dataset, "tweets")
            ),
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| text(r, "id"))
        .collect();
    let search_ids: BTreeSet<String> = search_documents(&es, &setup.alias)
        .await
        .into_iter()
        .filter(|(_, doc)| doc["local_date"] == json!(DAY1))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(warehouse_ids, curated_ids);
    assert_eq!(search_ids, curated_ids);
    for only_in_b in ["1009", "1011", "1012", "1013"] {
        assert!(!curated_ids.contains(only_in_b), "{only_in_b} lingers");
    }
    let day2_rows = warehouse
        .query(
            "count day 2",
            &format!(
                "SELECT COUNT(*) AS n FROM {} WHERE local_date = DATE '{DAY2}'",
                warehouse.table_sql(&setup.dataset, "tweets")
            ),
        )
        .await
        .expect("day 2");
    assert_eq!(
        int(&day2_rows[0], "n"),
        day2.rows.len() as i64,
        "other days are untouched"
    );

    setup.clean_up().await;
}

#[tokio::test]
async fn the_daily_job_reads_raw_and_writes_curated_through_the_gcs_emulator() {
    init_test_logs();
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let (lake_uri, lake) = gcs_lake("daily-gcs").await;
    for (path, body) in raw_objects() {
        lake.put(&Path::from(path), PutPayload::from(body))
            .await
            .expect("put raw");
    }
    // A leftover part of an older layout must not survive the run.
    let stale = Path::from(format!("curated/dt={DAY1}/part-00001.parquet"));
    lake.put(&stale, PutPayload::from(curated::encode(&[]).expect("empty parquet")))
        .await
        .expect("put stale part");

    let dir = std::env::temp_dir().join(unique("cilvest-daily-gcs"));
    let config = pipeline_config(&dir, &lake_uri, "unused", "unused", "unused");
    let log = dir.join("termination-log");
    let args = daily::Args::parse_from([
        "daily",
        "--config",
        &config.display().to_string(),
        "--date",
        DAY1,
        "--gcs-endpoint",
        &endpoint,
        "--termination-log",
        &log.display().to_string(),
        "--skip-warehouse",
        "--skip-search",
    ]);
    let report = daily::run(args).await.unwrap_or_else(|e| panic!("daily: {e}"));
    let expected = ExpectedDay::from_fixtures(&["2026-11-01.a.ndjson", "2026-11-01.b.ndjson"]);
    assert_report(&report, &expected, DAY1);
    assert_eq!(report.objects, 2);
    assert_eq!(report.outputs.warehouse, None);
    assert_eq!(report.outputs.search_index, None);

    let body = lake
        .get(&curated::part_path(DAY1.parse().expect("date")))
        .await
        .expect("curated object")
        .bytes()
        .await
        .expect("bytes");
    assert_curated(&curated::decode(body).expect("decode"), &expected);
    assert!(lake.head(&stale).await.is_err(), "the stale part was deleted");
    assert!(lake.head(&Path::from(format!("reports/dt={DAY1}.json"))).await.is_ok());
    let run: DailyRun = serde_json::from_slice(&std::fs::read(&log).expect("termination log")).expect("DailyRun");
    assert_eq!(run.tweets_in, expected.tweets_in() as i64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_step_is_reported_as_failed_in_the_termination_message() {
    let setup = Setup::new().await;
    // Nothing listens on port 1: the warehouse step fails after the lake step succeeded.
    let err = setup
        .run(DAY1, &["--bigquery-endpoint", "http://127.0.0.1:1", "--skip-search"])
        .await
        .expect_err("the warehouse is unreachable");
    assert!(err.to_string().contains("bigquery"), "{err}");
    let run: DailyRun =
        serde_json::from_slice(&std::fs::read(setup.termination_log()).expect("termination log")).expect("DailyRun");
    assert_eq!(run.result, "Failed");
    assert_eq!(run.date, DAY1);
    assert!(
        run.message.as_deref().is_some_and(|m| m.contains("bigquery")),
        "{run:?}"
    );
    let report: Report = serde_json::from_slice(
        &setup
            .lake
            .get(&Path::from(format!("reports/dt={DAY1}.json")))
            .await
            .expect("report")
            .bytes()
            .await
            .expect("bytes"),
    )
    .expect("report json");
    assert_eq!(report.result, "Failed");
    assert!(report.outputs.curated.is_some(), "the lake step ran before the failure");
    setup.clean_up().await;
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

/// Not a benchmark with assertions: prints how long a day of 100,000 tweets takes through read, transform and the
/// curated Parquet on a local lake (BigQuery and search excluded).
#[tokio::test]
async fn a_day_of_100000_tweets_timing() {
    init_test_logs();
    const TWEETS: usize = 100_000;
    const OBJECTS: usize = 10;
    let dir = std::env::temp_dir().join(unique("cilvest-daily-100k"));
    let lake_uri = format!("file://{}/lake", dir.display());
    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("lake");
    let texts = [
        "Hari ini beli #saham BBCA lagi, semoga cuan 🚀 https://t.co/abcdef",
        "Reksa dana pasar uang atau sukuk ritel ya buat dana darurat?\nbingung",
        "@teman obligasi negara SBN seri terbaru kuponnya berapa?",
        "RT @akun: saham bank lagi diskon besar",
        "Makan siang dulu baru mikir investasi",
    ];
    let start: DateTime<Utc> = "2026-10-31T17:00:00Z".parse().expect("start");
    let generated = Instant::now();
    let mut lines: Vec<String> = Vec::with_capacity(TWEETS);
    for i in 0..TWEETS {
        // Every 50th line is a second copy of the line before it, as a producer restart would leave.
        if i % 50 == 49 {
            let copy = lines[i - 1].clone();
            lines.push(copy);
            continue;
        }
        let id = 1_850_000_000_000_000_000 + i as u64;
        let created_at = start + chrono::Duration::milliseconds((i as i64) * 86_399_000 / TWEETS as i64);
        lines.push(
            json!({
                "tweet": {"id": id.to_string(), "text": texts[i % texts.len()], "created_at": created_at,
                          "lang": if i % 10 == 0 { "en" } else { "in" }, "author_id": (i % 5000).to_string()},
                "author_username": format!("user{}", i % 5000),
                "fetched_at": "2026-11-02T00:00:00Z",
            })
            .to_string(),
        );
    }
    let mut raw_bytes = 0;
    for (n, chunk) in lines.chunks(TWEETS / OBJECTS).enumerate() {
        let body = gzip(&(chunk.join("\n") + "\n"));
        raw_bytes += body.len();
        lake.put(
            &Path::from(format!("raw/dt={DAY1}/cilvest.bench.raw-{n}-0.ndjson.gz")),
            PutPayload::from(body),
        )
        .await
        .expect("put");
    }
    let generated = generated.elapsed();
    let config = pipeline_config(&dir, "gs://cilvest-bench/lake", "unused", "unused", "unused");
    let args = daily::Args::parse_from([
        "daily",
        "--config",
        &config.display().to_string(),
        "--date",
        DAY1,
        "--lake",
        &lake_uri,
        "--termination-log",
        &dir.join("termination-log").display().to_string(),
        "--skip-warehouse",
        "--skip-search",
    ]);
    let report = daily::run(args).await.unwrap_or_else(|e| panic!("daily: {e}"));
    assert_eq!(report.tweets_in, TWEETS as u64);
    let curated_size = lake
        .head(&curated::part_path(DAY1.parse().expect("date")))
        .await
        .expect("curated")
        .size;
    eprintln!(
        "100k tweets ({} build): {:.2}s total = read {:.2}s + transform {:.2}s + parquet {:.2}s; \
         {} kept, {} KiB gzip in, {} KiB parquet out (fixture generation {:.1}s)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        report.durations.total,
        report.durations.read,
        report.durations.transform,
        report.durations.lake,
        report.tweets_kept,
        raw_bytes / 1024,
        curated_size / 1024,
        generated.as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A BigQuery emulator of one test's own, on free ports with its own persistent data directory, so that stopping it
/// disturbs no other test. It reads load jobs' `gs://` URIs from the shared emulator's local root, as `Setup` expects.
struct PrivateBigQuery {
    process: Option<std::process::Child>,
    rest_port: u16,
    grpc_port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PrivateBigQuery {
    async fn start() -> Self {
        let mut emulator = Self {
            process: None,
            rest_port: free_port(),
            grpc_port: free_port(),
            dir: std::env::temp_dir().join(unique("cilvest-private-bq")),
        };
        emulator.restart().await;
        emulator
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// Start the emulator (again) on the same ports and data, and wait until it answers `/readyz`.
    async fn restart(&mut self) {
        // `scripts/testenv.d/bigquery.sh` runs bqemulator from the venv whose python it exports.
        let python = PathBuf::from(service_env("CILVEST_PYTHON", "bigquery"));
        let bqemulator = python.with_file_name("bqemulator");
        for sub in ["data", "uploads"] {
            std::fs::create_dir_all(self.dir.join(sub)).expect("emulator dir");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bqemulator.log"))
            .expect("emulator log");
        let child = std::process::Command::new(bqemulator)
            .current_dir(&self.dir)
            .env(
                "BQEMU_GCS_LOCAL_ROOT",
                service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery"),
            )
            .env("BQEMU_UPLOAD_STAGING_DIR", self.dir.join("uploads"))
            .args(["start", "--rest-host", "127.0.0.1", "--rest-port"])
            .arg(self.rest_port.to_string())
            .args(["--grpc-host", "127.0.0.1", "--grpc-port"])
            .arg(self.grpc_port.to_string())
            .args([
                "--project",
                &service_env("CILVEST_BQ_PROJECT", "bigquery"),
                "--persistent",
            ])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start bqemulator");
        self.process = Some(child);
        let ready = format!("{}/readyz", self.url());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private bqemulator did not start: see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn warehouse(&self) -> Warehouse {
        let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
        Warehouse::connect(Some(&self.url()), &project, "asia-southeast2")
            .await
            .expect("warehouse")
    }
}

impl Drop for PrivateBigQuery {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::test]
async fn bigquery_down_during_daily_fails_clearly_and_the_rerun_leaves_one_copy_of_each_tweet() {
    let setup = Setup::new().await;
    let mut bigquery = PrivateBigQuery::start().await;
    let endpoint = bigquery.url();
    let day1 = ExpectedDay::from_fixtures(&["2026-11-01.a.ndjson", "2026-11-01.b.ndjson"]);
    let args = ["--bigquery-endpoint", endpoint.as_str(), "--skip-search"];

    // A first run loads the day; then the warehouse goes away and the day is run again.
    setup
        .run(DAY1, &args)
        .await
        .unwrap_or_else(|e| panic!("first run: {e}"));
    let warehouse = bigquery.warehouse().await;
    let marts_before = sorted(select(&warehouse, &setup.marts, "mart_tweets_per_keyword").await);
    bigquery.stop();
    let err = setup.run(DAY1, &args).await.expect_err("BigQuery is down");
    let message = err.to_string();
    assert!(
        message.contains("bigquery") && message.contains(&endpoint),
        "the error names neither BigQuery nor its endpoint: {message}"
    );
    let run: DailyRun =
        serde_json::from_slice(&std::fs::read(setup.termination_log()).expect("termination log")).expect("DailyRun");
    assert_eq!(run.result, "Failed");

    // Back up (its data survives), the rerun succeeds and leaves exactly one row per tweet.
    bigquery.restart().await;
    let report = setup.run(DAY1, &args).await.unwrap_or_else(|e| panic!("rerun: {e}"));
    assert_report(&report, &day1, DAY1);
    let warehouse = bigquery.warehouse().await;
    let counts = warehouse
        .query(
            "count ids",
            &format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {}",
                warehouse.table_sql(&setup.dataset, "tweets")
            ),
        )
        .await
        .expect("count");
    assert_eq!(int(&counts[0], "n"), day1.rows.len() as i64, "rows after the rerun");
    assert_eq!(
        int(&counts[0], "ids"),
        day1.rows.len() as i64,
        "distinct ids after the rerun"
    );
    assert_warehouse_tweets(&select(&warehouse, &setup.dataset, "tweets").await, &day1.rows);
    assert_eq!(
        sorted(select(&warehouse, &setup.marts, "mart_tweets_per_keyword").await),
        marts_before,
        "the marts after the rerun"
    );
    drop(bigquery);
    // The datasets went to the private emulator, which is gone; this removes the lake and the config.
    setup.clean_up().await;
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
