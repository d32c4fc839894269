//! Catch-up and late data (`jobs::daily::catch_up`), against the BigQuery emulator of `scripts/testenv up bigquery`:
//! the scheduled `cilvest daily` (no `--date`) after a suspended week processes each missed day once and yesterday;
//! a run after it redoes only yesterday; tweets that land late in an old day reach the lake's curated Parquet and
//! BigQuery on the next run; a day that fails is tried again by every run until it succeeds; `--from`/`--to`
//! backfills a range whatever was done before.
//!
//! The days are the real clock's (the job's "yesterday" is today's date in Asia/Jakarta minus one), so the data is
//! made for them: a few tweets per day, created at local noon, every one matching `saham`.

mod support;

use std::{collections::BTreeMap, io::Write, path::PathBuf, sync::Arc};

use chrono::{Days, NaiveDate, Utc};
use cilvest_crds::DailyRun;
use cilvest_workers::jobs::daily::{self, curated};
use clap::Parser;
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::{Value, json};
use support::{init_test_logs, service_env, unique};

/// One pipeline's lake (where the BigQuery emulator reads `gs://` URIs), config and datasets.
struct Lake {
    dir: PathBuf,
    config: PathBuf,
    lake_uri: String,
    lake: Arc<dyn ObjectStore>,
    dataset: String,
    marts: String,
    /// Jakarta's yesterday, as the job computes it.
    yesterday: NaiveDate,
}

impl Lake {
    fn new() -> Self {
        init_test_logs();
        let root = service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery");
        let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
        let bucket = unique("catch-up");
        let lake_uri = format!("file://{root}/{bucket}/lake");
        let dir = std::env::temp_dir().join(unique("cilvest-catch-up"));
        let dataset = unique("catch_up").replace('-', "_");
        let marts = format!("{dataset}_marts");
        let config = json!({
            "pipeline": "catch-up",
            "namespace": "default",
            "kafkaBootstrap": "127.0.0.1:19092",
            "rawTopic": "cilvest.catch-up.raw",
            "consumerGroup": "cilvest.catch-up.lake",
            "spec": {
                "keywords": [{"name": "saham", "terms": ["saham"]}],
                "language": "in",
                "schedule": {"timeZone": "Asia/Jakarta"},
                "targets": {
                    "lake": {"uri": format!("gs://{bucket}/lake")},
                    "bigquery": {"project": project, "dataset": dataset, "martsDataset": marts},
                },
            },
        });
        std::fs::create_dir_all(&dir).expect("config dir");
        let config_path = dir.join("pipeline.json");
        std::fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("write config");
        let jakarta = chrono::FixedOffset::east_opt(7 * 3600).expect("offset");
        let today = Utc::now().with_timezone(&jakarta).date_naive();
        Self {
            lake: cilvest_workers::lake::open(&lake_uri, None).expect("open lake"),
            dir,
            config: config_path,
            lake_uri,
            dataset,
            marts,
            yesterday: today.checked_sub_days(Days::new(1)).expect("yesterday"),
        }
    }

    fn day(&self, back: u64) -> NaiveDate {
        self.yesterday.checked_sub_days(Days::new(back)).expect("day")
    }

    /// `count` tweets of `day` from id `first`, as one gzip object of the consumer's naming.
    async fn land(&self, day: NaiveDate, first: u64, count: u64) {
        let mut lines = String::new();
        for id in first..first + count {
            let tweet = json!({
                "tweet": {"id": id.to_string(), "text": format!("saham hari ini {id}"),
                          "created_at": format!("{day}T05:00:00.000Z"), "author_id": "9", "lang": "in"},
                "fetched_at": format!("{day}T06:00:00Z"),
                "author_username": "budi",
            });
            lines.push_str(&format!("{tweet}\n"));
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(lines.as_bytes()).expect("gzip");
        let path = Path::from(format!("raw/dt={day}/cilvest.catch-up.raw-0-{first}.ndjson.gz"));
        self.lake
            .put(&path, PutPayload::from(gz.finish().expect("gzip")))
            .await
            .expect("put raw");
    }

    /// The scheduled run, or a backfill with `extra`; returns the days the termination message lists, each with its
    /// result and kept tweets, and whether the run succeeded.
    async fn run(&self, extra: &[&str]) -> (Vec<DailyRun>, bool) {
        let bigquery = service_env("CILVEST_BQ_URL", "bigquery");
        let log = self.dir.join("termination-log");
        let _ = std::fs::remove_file(&log);
        let (config, log_arg) = (self.config.display().to_string(), log.display().to_string());
        let mut argv = vec![
            "daily",
            "--config",
            &config,
            "--lake",
            &self.lake_uri,
            "--bigquery-endpoint",
            &bigquery,
            "--skip-search",
            "--termination-log",
            &log_arg,
        ];
        argv.extend_from_slice(extra);
        let outcome = daily::main(daily::Args::parse_from(argv)).await;
        let message = std::fs::read_to_string(&log).expect("termination message");
        let runs: Vec<DailyRun> = serde_json::from_str(&message).unwrap_or_else(|e| panic!("{e}: {message}"));
        if let Ok(reports) = &outcome {
            assert_eq!(reports.len(), runs.len(), "one report per day");
        }
        (runs, outcome.is_ok())
    }

    async fn curated_ids(&self, day: NaiveDate) -> Vec<String> {
        let body = self
            .lake
            .get(&curated::part_path(day))
            .await
            .expect("curated object")
            .bytes()
            .await
            .expect("bytes");
        curated::decode(body)
            .expect("decode")
            .into_iter()
            .map(|t| t.id.to_string())
            .collect()
    }

    /// Remove what the test made; called only after it passed, so a failure leaves everything to look at.
    async fn clean_up(&self) {
        support::clean_warehouse_and_lake(&[&self.dataset, &self.marts], &self.lake_uri).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Tweets per local day in BigQuery's `tweets` table.
    async fn warehouse_days(&self) -> BTreeMap<String, u64> {
        let warehouse = support::warehouse().await;
        let rows = warehouse
            .query(
                "tweets per day",
                &format!(
                    "SELECT local_date, id FROM {}",
                    warehouse.table_sql(&self.dataset, "tweets")
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut days = BTreeMap::new();
        for row in rows {
            let day = match &row["local_date"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            *days.entry(day).or_default() += 1;
        }
        days
    }
}

fn days(runs: &[DailyRun]) -> Vec<(String, String)> {
    runs.iter().map(|r| (r.date.clone(), r.result.clone())).collect()
}

#[tokio::test]
async fn a_suspended_week_is_caught_up_once_late_tweets_arrive_failures_are_retried_and_ranges_backfill() {
    let lake = Lake::new();
    // A week without runs: days D-6 .. D-1 (yesterday) have tweets, 3 a day; D-9 has some too but is outside the
    // default window of 7 days before yesterday.
    for back in 0..=6 {
        lake.land(lake.day(back), 1000 * (back + 1), 3).await;
    }
    lake.land(lake.day(9), 90_000, 2).await;
    let succeeded = |back: u64| (lake.day(back).to_string(), "Succeeded".to_owned());

    let (runs, ok) = lake.run(&[]).await;
    assert!(ok, "{runs:?}");
    assert_eq!(
        days(&runs),
        (0..=6).rev().map(succeeded).collect::<Vec<_>>(),
        "oldest first, each once"
    );
    assert!(runs.iter().all(|r| r.tweets_kept == 3), "{runs:?}");
    let in_warehouse = lake.warehouse_days().await;
    assert_eq!(in_warehouse.len(), 7, "{in_warehouse:?}");
    assert!(in_warehouse.values().all(|n| *n == 3), "{in_warehouse:?}");

    // Nothing changed: only yesterday is done again.
    let (runs, ok) = lake.run(&[]).await;
    assert!(ok);
    assert_eq!(days(&runs), [succeeded(0)]);

    // Two tweets land late in D-3: the next run redoes D-3, and they reach the curated Parquet and BigQuery.
    lake.land(lake.day(3), 50_000, 2).await;
    let (runs, ok) = lake.run(&[]).await;
    assert!(ok);
    assert_eq!(days(&runs), [succeeded(3), succeeded(0)]);
    assert_eq!(runs[0].tweets_kept, 5);
    let ids = lake.curated_ids(lake.day(3)).await;
    assert!(
        ids.contains(&"50000".to_owned()) && ids.contains(&"50001".to_owned()),
        "{ids:?}"
    );
    assert_eq!(lake.warehouse_days().await.get(&lake.day(3).to_string()), Some(&5));

    // A corrupt object fails D-5: every run tries it again (and still does the rest) until it is fixed.
    let corrupt = Path::from(format!("raw/dt={}/cilvest.catch-up.raw-1-7.ndjson.gz", lake.day(5)));
    lake.lake
        .put(&corrupt, PutPayload::from(b"not gzip".to_vec()))
        .await
        .expect("put corrupt");
    for _ in 0..2 {
        let (runs, ok) = lake.run(&[]).await;
        assert!(!ok, "a failed day fails the run");
        assert_eq!(
            days(&runs),
            [(lake.day(5).to_string(), "Failed".to_owned()), succeeded(0)]
        );
        assert!(
            runs[0].message.as_deref().is_some_and(|m| m.contains("decompress")),
            "{runs:?}"
        );
    }
    lake.lake.delete(&corrupt).await.expect("delete corrupt");
    let (runs, ok) = lake.run(&[]).await;
    assert!(ok);
    assert_eq!(days(&runs), [succeeded(5), succeeded(0)]);

    // A backfill does its whole range, processed before or not: D-9 (outside the window) gets its tweets in.
    let (from, to) = (lake.day(9).to_string(), lake.day(8).to_string());
    let (runs, ok) = lake.run(&["--from", &from, "--to", &to]).await;
    assert!(ok);
    assert_eq!(days(&runs), [succeeded(9), succeeded(8)]);
    assert_eq!(lake.warehouse_days().await.get(&from), Some(&2));

    lake.clean_up().await;
}

#[test]
fn a_backfill_needs_both_ends_and_excludes_a_single_date() {
    let parse = |args: &[&str]| daily::Args::try_parse_from([&["daily"], args].concat());
    assert!(parse(&["--from", "2026-11-01"]).is_err());
    assert!(parse(&["--to", "2026-11-01"]).is_err());
    assert!(parse(&["--from", "2026-11-01", "--to", "2026-11-02", "--date", "2026-11-01"]).is_err());
    assert!(parse(&["--from", "2026-11-01", "--to", "2026-11-02"]).is_ok());
}
