//! The `producer` subcommand: `cilvest producer` against the fake X API, CPU and peak memory per 1,000 tweets.

use std::{
    path::Path as FsPath,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{cpu_seconds, metric, status_kib, terminate};
use crate::support::{create_topic, fake_x::FakeX, kafka_bootstrap, unique, write_worker_config};

/// The fake X API holding `tweets` fresh tweets; `cilvest producer` (backfill 1h) publishes them all. CPU is the
/// producer process's user+system seconds up to the last record on the topic; memory is its peak RSS.
pub(super) async fn producer(cilvest: &FsPath, tweets: usize) -> Value {
    let bootstrap = kafka_bootstrap();
    let topic = unique("bench-producer");
    create_topic(&bootstrap, &topic, 3).await;
    let config = write_worker_config(&bootstrap, &topic, "id", Some("1h"));
    let token = format!("AAAAAAAAAAAAAAAAAAAAA{}", unique("bench").replace('-', "x"));
    let fake = FakeX::start(&token).await;
    fake.add_tweets(tweets);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = config.with_file_name("producer.log");
    let started = Instant::now();
    let mut child = Command::new(cilvest)
        .args(["--log-format", "text", "producer", "--config"])
        .arg(&config)
        .args(["--x-api-url", &fake.url(), "--poll-interval", "1s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("CILVEST_X_BEARER_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start cilvest producer");
    let pid = child.id().to_string();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            Instant::now() < deadline,
            "the producer did not publish everything; log {}",
            log.display()
        );
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the producer exited; log {}",
            log.display()
        );
        let published = metric(&http, port, "cilvest_producer_records_published_total")
            .await
            .unwrap_or(0.0);
        if published >= tweets as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pid);
    let peak = status_kib(&pid, "VmHWM");
    // Ten idle seconds: polls that find nothing new.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = cpu_seconds(&pid) - cpu;
    let rss = status_kib(&pid, "VmRSS");
    terminate(&mut child);
    json!({
        "tweets": tweets, "requests": fake.request_count(), "wall_s": wall, "cpu_s": cpu,
        "cpu_ms_per_1000": cpu * 1000.0 / (tweets as f64 / 1000.0), "peak_rss_kib": peak,
        "idle_cpu_s_per_10s": idle_cpu, "idle_rss_kib": rss,
    })
}
