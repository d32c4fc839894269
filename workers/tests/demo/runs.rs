//! Generated runs: deterministic with every table printed, the same report over the Kafka bus, and embedded marts equal
//! to the BigQuery marts.

use std::{collections::BTreeMap, path::PathBuf};

use clap::Parser;
use serde_json::Value;

use super::{demo, demo_json, num, service_env, temp_dir, text, unique};

#[test]
fn generated_runs_are_deterministic_and_print_every_table() {
    let args = ["--tweets", "3000", "--days", "3", "--seed", "42"];
    let mut first = demo_json(&args);
    let mut second = demo_json(&args);
    first["seconds"] = Value::Null;
    second["seconds"] = Value::Null;
    assert_eq!(first, second);
    let t = &first["transform"];
    assert_eq!(first["records"], 3000);
    assert_eq!(first["days"].as_array().map(Vec::len), Some(3));
    for field in ["duplicates", "retweets", "otherLanguage", "kept", "unmatched"] {
        assert!(num(&t[field]) > 0, "{field}: {t:#}");
    }
    assert_eq!(first["marts"]["topUsers"].as_array().map(|u| u.len() >= 10), Some(true));

    let table = demo(&args);
    let first_line = table.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("Data: generated, not real posts") && first_line.contains("seed 42"),
        "{first_line}"
    );
    for heading in [
        "Mentions per keyword",
        "Mentions per keyword per day",
        "Mentions per keyword per local hour",
        "Top users",
    ] {
        assert!(table.contains(heading), "{heading} missing:\n{table}");
    }
    assert!(table.contains("23:00") && table.contains("2026-11-03"), "{table}");
}

/// `--kafka`: the producer's publisher, a real topic and the real consumer give the same report as the in-process
/// bus.
#[test]
fn the_kafka_bus_gives_the_same_report_as_the_in_process_bus() {
    let bootstrap = service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka");
    let args = ["--tweets", "2000", "--days", "2", "--seed", "7"];
    let mut in_process = demo_json(&args);
    let mut with_kafka = demo_json(&[&args[..], &["--kafka", &bootstrap]].concat());
    for report in [&mut in_process, &mut with_kafka] {
        report["seconds"] = Value::Null;
    }
    assert_eq!(with_kafka["records"], 2000);
    assert_eq!(in_process, with_kafka);
}

/// The embedded marts and BigQuery's (the warehouse's SQL on the emulator) over the same lake: run the demo into
/// a lake the emulator reads, then `cilvest daily` for every day of it, and compare every mart table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_marts_agree_with_the_bigquery_marts() {
    let root = service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery");
    let endpoint = service_env("CILVEST_BQ_URL", "bigquery");
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    let bucket = unique("demo-lake");
    let lake_dir = PathBuf::from(&root).join(&bucket).join("lake");
    let report = demo_json(&[
        "--tweets",
        "4000",
        "--days",
        "9",
        "--lake",
        lake_dir.to_str().expect("utf-8"),
    ]);

    let dataset = unique("demo").replace('-', "_");
    let marts_dataset = format!("{dataset}_marts");
    let mut config = cilvest_workers::jobs::demo::pipeline_config(None).expect("embedded pipeline");
    config.spec.targets.lake.uri = format!("gs://{bucket}/lake");
    config.spec.targets.bigquery.project = project.clone();
    config.spec.targets.bigquery.dataset = dataset.clone();
    config.spec.targets.bigquery.marts_dataset = Some(marts_dataset.clone());
    config.spec.targets.elasticsearch = None;
    config.search_url = None;
    let dir = temp_dir("cilvest-demo-bq");
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("config")).expect("write config");
    let lake_uri = format!("file://{}", lake_dir.display());
    let log = dir.join("termination-log");
    for day in report["days"].as_array().expect("days") {
        let day = text(day);
        let args = cilvest_workers::jobs::daily::Args::parse_from([
            "daily",
            "--config",
            config_path.to_str().expect("utf-8"),
            "--date",
            &day,
            "--lake",
            &lake_uri,
            "--bigquery-endpoint",
            &endpoint,
            "--skip-search",
            "--termination-log",
            log.to_str().expect("utf-8"),
        ]);
        cilvest_workers::jobs::daily::run(args).await.expect("daily run");
    }

    let warehouse = cilvest_workers::google::bigquery::Warehouse::connect(Some(&endpoint), &project, "asia-southeast2")
        .await
        .expect("warehouse");
    let embedded = &report["marts"];
    for (mart, key) in [
        ("mart_total_tweets", "total"),
        ("mart_tweets_per_keyword", "perKeyword"),
        ("mart_keyword_daily", "keywordDaily"),
        ("mart_keyword_hourly", "keywordHourly"),
        ("mart_top_users", "topUsers"),
        ("mart_top_users_per_keyword", "topUsersPerKeyword"),
    ] {
        let sql = format!("SELECT * FROM {}", warehouse.table_sql(&marts_dataset, mart));
        let bigquery_rows: Vec<Value> = warehouse
            .query(&format!("read {mart}"), &sql)
            .await
            .expect("read mart")
            .into_iter()
            .map(|row| Value::Object(row.into_iter().collect()))
            .collect();
        let embedded_rows = match &embedded[key] {
            Value::Array(rows) => rows.clone(),
            one => vec![one.clone()],
        };
        assert!(!bigquery_rows.is_empty(), "{mart} is empty in bigquery");
        assert_eq!(normalize(&bigquery_rows), normalize(&embedded_rows), "{mart} differs");
    }

    for dataset in [&dataset, &marts_dataset] {
        warehouse
            .client()
            .dataset()
            .delete_if_exists(warehouse.project(), dataset, true)
            .await;
    }
    let _ = std::fs::remove_dir_all(PathBuf::from(&root).join(&bucket));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows as sorted lists of `column=value` strings. BigQuery returns every scalar as a string; numbers are compared
/// as numbers rounded to 9 decimals (`share_of_day` is a float division on both sides).
fn normalize(rows: &[Value]) -> Vec<BTreeMap<String, String>> {
    let scalar = |value: &Value| match value {
        Value::Null => "null".to_owned(),
        Value::Number(n) => format!("{:.9}", n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => match s.parse::<f64>() {
            Ok(n) => format!("{n:.9}"),
            Err(_) => s.clone(),
        },
        other => other.to_string(),
    };
    let mut out: Vec<BTreeMap<String, String>> = rows
        .iter()
        .map(|row| {
            row.as_object()
                .expect("row object")
                .iter()
                .map(|(k, v)| (k.clone(), scalar(v)))
                .collect()
        })
        .collect();
    out.sort();
    out
}
