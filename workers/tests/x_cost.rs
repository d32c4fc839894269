//! Cost control of `cilvest producer` against the fake X API (`support::fake_x`), the test environment's Kafka,
//! its Kubernetes API server (the usage ConfigMap) and a local lake: the read counter is what the fake served, a
//! budget below the fake's volume stops reads at the budget and leaves nothing unread for good, and counts mode
//! makes no search request and stores the fake's hourly counts.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use cilvest_crds::{WorkerConfig, query::x_keyword_query, usage::UsageRecord};
use cilvest_workers::{
    jobs::producer::{Args, Producer},
    lake::counts,
    telemetry::Telemetry,
};
use clap::Parser;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use serde_json::json;
use support::{fake_x::FakeX, kafka_bootstrap, path_str, run_once, unique, write_worker_config};

struct Setup {
    topic: String,
    config: PathBuf,
    token_file: PathBuf,
    fake: FakeX,
}

/// A topic, a worker configuration changed by `edit`, a token file and a fake X API.
async fn setup(edit: impl FnOnce(&mut serde_json::Value)) -> Setup {
    let bootstrap = kafka_bootstrap();
    let topic = unique("x-cost");
    support::create_topic(&bootstrap, &topic, 3).await;
    let config = write_worker_config(&bootstrap, &topic, "id", Some("2h"));
    rewrite_config(&config, edit);
    let token = format!("AAAAAAAAAAAAAAAAAAAAA{}", unique("secret").replace('-', "x"));
    let token_file = config.with_file_name("bearer-token");
    std::fs::write(&token_file, &token).expect("token file");
    let fake = FakeX::start(&token).await;
    Setup {
        topic,
        config,
        token_file,
        fake,
    }
}

fn rewrite_config(config: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut worker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).expect("config")).expect("config json");
    edit(&mut worker);
    std::fs::write(config, worker.to_string()).expect("write config");
}

impl Setup {
    fn args(&self, extra: &[&str]) -> Args {
        let url = self.fake.url();
        let mut argv = vec![
            "producer",
            "--config",
            path_str(&self.config),
            "--x-api-url",
            url.as_str(),
            "--bearer-token-file",
            path_str(&self.token_file),
            "--retry-initial",
            "100ms",
            "--retry-max",
            "1s",
            "--once",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("producer flags")
    }
}

fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

fn ids_on_topic(records: &[support::TopicRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r.key.as_deref().expect("key").parse().expect("numeric key"))
        .collect()
}

/// A usage ConfigMap in `default` on the test API server, with metadata only (as the operator creates it).
async fn usage_configmap() -> (Api<ConfigMap>, String) {
    support::service_env("KUBECONFIG", "k8s");
    let client = Client::try_default().await.expect("kube client from KUBECONFIG");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let name = unique("cilvest-x-usage");
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &map)
        .await
        .expect("create the usage ConfigMap");
    (api, name)
}

async fn stored_usage(api: &Api<ConfigMap>, name: &str) -> UsageRecord {
    let map = api.get(name).await.expect("usage ConfigMap");
    UsageRecord::from_data(&map.data.unwrap_or_default()).expect("a usage record")
}

#[tokio::test]
async fn the_read_counter_matches_what_the_fake_served() {
    let setup = setup(|_| {}).await;
    setup.fake.add_tweets_at(230, Utc::now() - TimeDelta::minutes(30));
    setup.fake.add_noise(20);
    let telemetry = run_once(setup.args(&[])).await;

    let text = telemetry.encode();
    let served = setup.fake.posts_served();
    assert_eq!(served, 230, "three pages of the matching tweets");
    assert_eq!(
        metric(&text, "cilvest_producer_x_posts_read_total"),
        Some(served as f64)
    );
    assert_eq!(
        metric(&text, "cilvest_producer_x_month_posts_read"),
        Some(served as f64)
    );
    assert_eq!(
        metric(&text, "cilvest_producer_x_month_requests"),
        Some(setup.fake.search_request_count() as f64)
    );
    let spend = metric(&text, "cilvest_producer_x_month_estimated_spend_usd").expect("spend metric");
    assert!((spend - served as f64 * 0.005).abs() < 1e-9, "{spend}");
    assert_eq!(metric(&text, "cilvest_producer_x_budget_state"), Some(0.0));
}

#[tokio::test]
async fn a_budget_below_the_volume_stops_reads_at_the_budget_and_reads_the_rest_later() {
    let setup = setup(|worker| {
        worker["spec"]["source"]["x"]["monthlyReadBudget"] = json!({"posts": 150});
    })
    .await;
    let (api, name) = usage_configmap().await;
    let expected: BTreeSet<u64> = setup
        .fake
        .add_tweets_at(320, Utc::now() - TimeDelta::minutes(30))
        .into_iter()
        .collect();
    let telemetry = run_once(setup.args(&["--x-usage-configmap", &name])).await;

    // 100 + 50: the last request asks for what is left, so the budget is met exactly.
    assert_eq!(setup.fake.posts_served(), 150);
    let asked: Vec<String> = setup
        .fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == "search")
        .filter_map(|r| r.param("max_results").map(str::to_owned))
        .collect();
    assert_eq!(asked, ["100", "50"]);
    let text = telemetry.encode();
    assert_eq!(metric(&text, "cilvest_producer_x_budget_state"), Some(2.0), "spent");
    assert_eq!(metric(&text, "cilvest_producer_x_read_budget_posts"), Some(150.0));
    let usage = stored_usage(&api, &name).await;
    assert_eq!(usage.posts_read, 150);
    assert_eq!(usage.requests, 2);
    assert_eq!(usage.month, Utc::now().format("%Y-%m").to_string());
    let unread = usage.unread.expect("the older posts are recorded as unread");
    let on_topic = ids_on_topic(&support::topic_records(&kafka_bootstrap(), &setup.topic).await);
    assert_eq!(on_topic.len(), 150, "what was read is published");
    assert_eq!(on_topic.iter().min().copied(), Some(unread.until_id));

    // A spent budget makes no request at all, even after a restart (the record is in the ConfigMap).
    run_once(setup.args(&["--x-usage-configmap", &name])).await;
    assert_eq!(setup.fake.search_request_count(), 2);

    // With room again (here: a larger budget; in production: the next month), the unread posts come first and
    // nothing is read twice or left out.
    rewrite_config(&setup.config, |worker| {
        worker["spec"]["source"]["x"]["monthlyReadBudget"] = json!({"posts": 1000});
    });
    run_once(setup.args(&["--x-usage-configmap", &name])).await;
    assert_eq!(setup.fake.posts_served(), 320, "every post read once");
    let on_topic: Vec<u64> = ids_on_topic(&support::topic_records(&kafka_bootstrap(), &setup.topic).await);
    assert_eq!(on_topic.len(), 320, "no duplicates");
    assert_eq!(on_topic.into_iter().collect::<BTreeSet<_>>(), expected);
    let usage = stored_usage(&api, &name).await;
    assert_eq!(usage.posts_read, 320);
    assert_eq!(usage.unread, None);
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete the usage ConfigMap");
}

#[tokio::test]
async fn counts_mode_makes_no_search_request_and_stores_the_fakes_hourly_counts() {
    let setup = setup(|worker| {
        for keyword in worker["spec"]["keywords"].as_array_mut().expect("keywords") {
            keyword["mode"] = json!("counts");
        }
        worker["spec"]["schedule"] = json!({"timeZone": "Asia/Jakarta"});
    })
    .await;
    let now = Utc::now();
    for hours_ago in [3, 5, 26, 50] {
        setup
            .fake
            .add_tweets_at(7 * hours_ago as usize, now - TimeDelta::hours(hours_ago));
    }
    setup.fake.add_noise(12);
    // The lake is a folder the BigQuery emulator serves as `gs://<bucket>`, so the daily job can load it.
    let root = support::service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery");
    let endpoint = support::service_env("CILVEST_BQ_URL", "bigquery");
    let project = support::service_env("CILVEST_BQ_PROJECT", "bigquery");
    let bucket = unique("counts-lake");
    let lake_dir = PathBuf::from(&root).join(&bucket).join("lake");
    let lake_uri = format!("file://{}", lake_dir.display());
    run_once(setup.args(&["--lake", &lake_uri])).await;

    assert_eq!(setup.fake.search_request_count(), 0, "no post is read");
    assert_eq!(setup.fake.counts_request_count(), 3, "one counts request per keyword");
    assert_eq!(setup.fake.posts_served(), 0);

    let worker: WorkerConfig =
        serde_json::from_slice(&std::fs::read(&setup.config).expect("config")).expect("config json");
    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("lake");
    let jakarta: chrono_tz::Tz = "Asia/Jakarta".parse().expect("zone");
    let mut days: BTreeSet<String> = BTreeSet::new();
    for hours_ago in [3, 5, 26, 50] {
        days.insert(
            (now - TimeDelta::hours(hours_ago))
                .with_timezone(&jakarta)
                .format("%Y-%m-%d")
                .to_string(),
        );
    }
    for keyword in &worker.spec.keywords {
        let query = x_keyword_query(&worker.spec, keyword).expect("query");
        let want: BTreeMap<DateTime<Utc>, u64> = setup.fake.hourly_counts(&query);
        assert!(!want.is_empty(), "the fake has {} tweets", keyword.name);
        let mut got: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
        for day in &days {
            for hour in counts::read_day(lake.as_ref(), day).await.expect("read counts") {
                if hour.keyword == keyword.name && hour.tweet_count > 0 {
                    assert_eq!(hour.start.minute(), 0, "whole hours");
                    got.insert(hour.start, hour.tweet_count);
                }
            }
        }
        assert_eq!(got, want, "{}", keyword.name);
    }

    // The daily job of each day puts the counted hours into the keyword marts, marked `counted`.
    let dataset = unique("counts").replace('-', "_");
    rewrite_config(&setup.config, |worker| {
        worker["spec"]["targets"]["lake"]["uri"] = json!(format!("gs://{bucket}/lake"));
        worker["spec"]["targets"]["bigquery"] = json!({"project": project, "dataset": dataset});
    });
    for day in &days {
        let log = setup.config.with_file_name(format!("termination-log-{day}"));
        let args = cilvest_workers::jobs::daily::Args::parse_from([
            "daily",
            "--config",
            path_str(&setup.config),
            "--date",
            day,
            "--lake",
            &lake_uri,
            "--bigquery-endpoint",
            &endpoint,
            "--skip-search",
            "--termination-log",
            path_str(&log),
        ]);
        cilvest_workers::jobs::daily::run(args).await.expect("daily run");
    }
    let warehouse = cilvest_workers::google::bigquery::Warehouse::connect(Some(&endpoint), &project, "asia-southeast2")
        .await
        .expect("warehouse");
    let mut want: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for keyword in &worker.spec.keywords {
        let query = x_keyword_query(&worker.spec, keyword).expect("query");
        for (hour, count) in setup.fake.hourly_counts(&query) {
            let local = hour.with_timezone(&jakarta);
            let key = (
                keyword.name.clone(),
                local.format("%Y-%m-%d").to_string(),
                i64::from(local.hour()),
            );
            *want.entry(key).or_default() += count as i64;
        }
    }
    let sql = format!(
        "SELECT keyword, local_date, local_hour, tweets FROM {} WHERE source = 'counted' AND tweets > 0",
        warehouse.table_sql(&dataset, "mart_keyword_hourly")
    );
    let rows = warehouse
        .query("read the hourly mart", &sql)
        .await
        .expect("hourly mart");
    let cell = |row: &cilvest_workers::google::bigquery::Row, column: &str| -> String {
        match &row[column] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let got: BTreeMap<(String, String, i64), i64> = rows
        .iter()
        .map(|row| {
            (
                (
                    cell(row, "keyword"),
                    cell(row, "local_date"),
                    cell(row, "local_hour").parse().expect("hour"),
                ),
                cell(row, "tweets").parse().expect("tweets"),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "mart_keyword_hourly holds the fake's hourly counts as counted"
    );
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE source = 'read'",
        warehouse.table_sql(&dataset, "mart_keyword_hourly")
    );
    let read = warehouse.query("read rows", &sql).await.expect("read rows");
    assert_eq!(cell(&read[0], "n"), "0", "nothing was read");
    // A chart reading v_keyword_daily shows, per keyword, the counts endpoint's number.
    let sql = format!(
        "SELECT keyword, tweets, source FROM {}",
        warehouse.table_sql(&dataset, "v_keyword_daily")
    );
    let mut charted: BTreeMap<String, i64> = BTreeMap::new();
    for row in warehouse.query("read the daily view", &sql).await.expect("daily view") {
        assert_eq!(cell(&row, "source"), "counted");
        *charted.entry(cell(&row, "keyword")).or_default() += cell(&row, "tweets").parse::<i64>().expect("tweets");
    }
    let mut counted: BTreeMap<String, i64> = BTreeMap::new();
    for ((keyword, _, _), tweets) in &want {
        *counted.entry(keyword.clone()).or_default() += tweets;
    }
    charted.retain(|_, n| *n > 0);
    counted.retain(|_, n| *n > 0);
    assert_eq!(
        charted, counted,
        "v_keyword_daily: the counts endpoint's number per keyword"
    );
    warehouse
        .client()
        .dataset()
        .delete_if_exists(warehouse.project(), &dataset, true)
        .await;
    let _ = std::fs::remove_dir_all(PathBuf::from(&root).join(&bucket));
}

#[tokio::test]
async fn a_rejected_token_is_recorded_for_the_operator_and_cleared_once_x_answers() {
    let setup = setup(|_| {}).await;
    let (api, name) = usage_configmap().await;
    let token = std::fs::read_to_string(&setup.token_file).expect("token");
    setup.fake.set_token("a-token-the-producer-does-not-have");
    let producer = Producer::new(
        setup.args(&["--x-usage-configmap", &name]),
        Telemetry::new("cilvest_producer"),
    )
    .expect("producer");
    tokio::time::timeout(std::time::Duration::from_secs(60), producer.run(std::future::pending()))
        .await
        .expect("a one-shot run ends")
        .expect_err("a 401 ends a one-shot run");
    // What the operator turns into Degraded=True, reason XUnauthorized (operator/tests/it/health.rs).
    let rejection = stored_usage(&api, &name)
        .await
        .rejection
        .expect("the rejection is in the usage record");
    assert_eq!(rejection.kind, "unauthorized");
    assert!(rejection.message.contains("HTTP 401"), "{}", rejection.message);
    assert!(
        !rejection.message.contains(token.trim()),
        "the token leaked into the record"
    );

    setup.fake.set_token(token.trim());
    run_once(setup.args(&["--x-usage-configmap", &name])).await;
    assert_eq!(
        stored_usage(&api, &name).await.rejection,
        None,
        "cleared once X answers"
    );
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete the usage ConfigMap");
}
