//! Whole runs of `cilvest daily` over the fixture days: every target and rerun, the GCS emulator, a failed step, and a
//! 100,000-tweet day timed.

use std::{collections::BTreeSet, time::Instant};

use chrono::{DateTime, Utc};
use cilvest_crds::DailyRun;
use cilvest_workers::jobs::daily::{self, Report, curated};
use clap::Parser;
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use serde_json::json;

use super::indexing::{assert_search, search_documents};
use super::marts::{assert_marts, assert_warehouse_tweets, looker_studio_doc_names_real_fields};
use super::{
    DAY1, DAY2, ExpectedDay, Setup, assert_curated, assert_report, gzip, int, pipeline_config, raw_objects, select,
    sorted, text,
};
use crate::support::{gcs_lake, init_test_logs, service_env, unique};

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
