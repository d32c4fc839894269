//! The consumer's subcommands: `consumer` (throughput of `cilvest consumer`), `per-tweet` (the original one-object-per-
//! tweet design) and `latency` (each tweet timed until it is visible in the lake).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path as FsPath, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use chrono::{NaiveDate, SecondsFormat, Utc};
use cilvest_workers::jobs::demo;
use flate2::read::MultiGzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde_json::{Value, json};

use super::{cpu_seconds, metric, status_kib, terminate};
use crate::support::{create_topic, gcs_lake, kafka_bootstrap, service_env, unique};

/// A lake for the consumer: a fresh local directory or a fresh bucket in the GCS emulator.
async fn open_lake(kind: &str) -> (String, Option<String>, Arc<dyn ObjectStore>, Option<PathBuf>) {
    match kind {
        "local" => {
            let dir = std::env::temp_dir().join(unique("cilvest-bench-lake"));
            let uri = format!("file://{}", dir.display());
            let lake = cilvest_workers::lake::open(&uri, None).expect("open lake");
            (uri, None, lake, Some(dir))
        }
        "gcs" => {
            let endpoint = service_env("CILVEST_GCS_URL", "gcs");
            let (uri, lake) = gcs_lake("bench").await;
            (uri, Some(endpoint), lake, None)
        }
        other => panic!("unknown lake {other:?}: local or gcs"),
    }
}

fn kafka_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("kafka producer")
}

fn start_consumer(
    cilvest: &FsPath,
    topic: &str,
    lake_uri: &str,
    gcs: Option<&str>,
    extra: &[String],
    cpu: Option<u32>,
) -> (Child, u16, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::env::temp_dir().join(format!("{topic}.consumer.log"));
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(cilvest);
            c
        }
        None => Command::new(cilvest),
    };
    command
        .args([
            "--log-format",
            "text",
            "consumer",
            "--kafka-bootstrap",
            &kafka_bootstrap(),
        ])
        .args([
            "--topic",
            topic,
            "--group",
            &format!("{topic}.lake"),
            "--lake",
            lake_uri,
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    if let Some(endpoint) = gcs {
        command.env(cilvest_workers::lake::GCS_ENDPOINT_ENV, endpoint);
    }
    (command.spawn().expect("start cilvest consumer"), port, log)
}

/// Pre-produce `tweets` generated v2 envelopes, then time the consumer from its first record read to the last
/// one committed (so group join and start-up are excluded), and its CPU seconds over the same span.
pub(super) async fn consumer(
    cilvest: &FsPath,
    tweets: u64,
    lake_kind: &str,
    (flush_records, flush_interval): (u64, &str),
    cpu: Option<u32>,
    partitions: i32,
) -> Value {
    let bootstrap = kafka_bootstrap();
    let topic = unique("bench-consumer");
    create_topic(&bootstrap, &topic, partitions).await;
    let records = demo::generate::generate(&demo::generate::Plan {
        seed: 2026,
        tweets,
        start: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
        days: 3,
        time_zone: chrono_tz::Asia::Jakarta,
    });
    let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
    let producer = kafka_producer(&bootstrap);
    let sends: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(n, value)| {
            let key = n.to_string();
            // Round robin, so that with `tweets` a multiple of partitions x flush_records every batch is cut by
            // its record count and none waits for the 60 s age limit.
            let partition = (n % partitions as usize) as i32;
            let producer = producer.clone();
            let topic = topic.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(value).partition(partition),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(drop)
                    .map_err(|(e, _)| e)
            }
        })
        .collect();
    futures::stream::iter(sends)
        .buffer_unordered(10_000)
        .try_collect::<Vec<()>>()
        .await
        .expect("produce");
    drop(records);

    let (lake_uri, gcs, _lake, dir) = open_lake(lake_kind).await;
    let extra = vec![
        format!("--flush-records={flush_records}"),
        format!("--flush-interval={flush_interval}"),
    ];
    let (mut child, port, log) = start_consumer(cilvest, &topic, &lake_uri, gcs.as_deref(), &extra, cpu);
    let pid = child.id().to_string();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    let (started, cpu_start) = loop {
        assert!(
            Instant::now() < deadline,
            "the consumer read nothing; log {}",
            log.display()
        );
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the consumer exited; log {}",
            log.display()
        );
        if metric(&http, port, "cilvest_consumer_records_in_total")
            .await
            .unwrap_or(0.0)
            > 0.0
        {
            break (Instant::now(), cpu_seconds(&pid));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "the consumer did not finish; log {}",
            log.display()
        );
        let out = metric(&http, port, "cilvest_consumer_records_out_total")
            .await
            .unwrap_or(0.0);
        if out >= tweets as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds(&pid) - cpu_start;
    let objects = metric(&http, port, "cilvest_consumer_objects_written_total")
        .await
        .unwrap_or(0.0);
    let peak_rss_kib = status_kib(&pid, "VmHWM");
    terminate(&mut child);
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    json!({
        "lake": lake_kind, "tweets": tweets, "value_bytes": bytes, "flush_records": flush_records, "cpu_pin": cpu,
        "flush_interval": flush_interval,
        "partitions": partitions, "wall_s": wall, "cpu_s": cpu_used, "objects": objects,
        "tweets_per_s": tweets as f64 / wall, "tweets_per_cpu_s": tweets as f64 / cpu_used.max(0.01),
        "peak_rss_kib": peak_rss_kib,
    })
}

/// `tweets` generated envelopes on a fresh topic of `partitions` partitions, spread round robin.
async fn fill_topic(tweets: u64, partitions: i32) -> (String, u64) {
    let bootstrap = kafka_bootstrap();
    let topic = unique("bench-per-tweet");
    create_topic(&bootstrap, &topic, partitions).await;
    let records = demo::generate::generate(&demo::generate::Plan {
        seed: 2026,
        tweets,
        start: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
        days: 3,
        time_zone: chrono_tz::Asia::Jakarta,
    });
    let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
    let producer = kafka_producer(&bootstrap);
    for (n, value) in records.iter().enumerate() {
        let key = n.to_string();
        let partition = (n % partitions as usize) as i32;
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(value).partition(partition),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    (topic, bytes)
}

/// The original design: read a record, write it as its own object, commit, next. Timed from the first record read
/// to the last object written; CPU is this process's (rdkafka's threads included).
pub(super) async fn per_tweet(tweets: u64, lake_kind: &str) -> Value {
    use rdkafka::{
        Message,
        consumer::{CommitMode, Consumer, StreamConsumer},
    };
    let (topic, bytes) = fill_topic(tweets, 1).await;
    let (_, _, lake, dir) = open_lake(lake_kind).await;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", format!("{topic}.lake"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("kafka consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let me = std::process::id().to_string();
    let mut started = None;
    for n in 0..tweets {
        let message = consumer.recv().await.expect("record");
        if n == 0 {
            started = Some((Instant::now(), cpu_seconds(&me)));
        }
        let path =
            object_store::path::Path::from(format!("raw/{topic}-{}-{}.json", message.partition(), message.offset()));
        let payload = message.payload().unwrap_or_default().to_vec();
        lake.put(&path, payload.into()).await.expect("put");
        consumer.commit_message(&message, CommitMode::Async).expect("commit");
    }
    let (started, cpu_start) = started.expect("at least one tweet");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&me) - cpu_start;
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    json!({
        "lake": lake_kind, "tweets": tweets, "value_bytes": bytes, "flush_records": 1, "partitions": 1,
        "wall_s": wall, "cpu_s": cpu, "objects": tweets, "tweets_per_s": tweets as f64 / wall,
        "tweets_per_cpu_s": tweets as f64 / cpu.max(0.01), "peak_rss_kib": status_kib(&me, "VmHWM"),
    })
}

/// Tweets at `rate` per second for `seconds`, each stamped with its send time; the lake is listed every 100 ms and
/// each tweet's latency is the time its object first became visible minus its send time.
pub(super) async fn latency(cilvest: &FsPath, lake_kind: &str, rate: u64, seconds: u64) -> Value {
    let bootstrap = kafka_bootstrap();
    let topic = unique("bench-latency");
    create_topic(&bootstrap, &topic, 3).await;
    let (lake_uri, gcs, lake, dir) = open_lake(lake_kind).await;
    let (mut child, port, log) = start_consumer(cilvest, &topic, &lake_uri, gcs.as_deref(), &[], None);
    let http = reqwest::Client::new();
    // Wait until the member owns its partitions, so the first tweets do not wait for the group join.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&http, port, "cilvest_consumer_assigned_partitions")
        .await
        .unwrap_or(0.0)
        < 3.0
    {
        assert!(Instant::now() < deadline, "no assignment; log {}", log.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = rate * seconds;
    let producer = kafka_producer(&bootstrap);
    let produce_topic = topic.clone();
    let sender = tokio::spawn(async move {
        let start = Instant::now();
        let mut sent = BTreeMap::new();
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let id = 1_990_000_000_000_000_000u64 + n;
            let now = Utc::now();
            let value = json!({
                "tweet": {"id": id.to_string(), "text": format!("beli saham bbca #{n}"), "lang": "in",
                          "created_at": now.to_rfc3339_opts(SecondsFormat::Millis, true), "author_id": "1"},
                "author_username": "bench", "fetched_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .to_string();
            let at = SystemTime::now();
            let key = id.to_string();
            let delivery = producer.send_result(FutureRecord::to(&produce_topic).key(&key).payload(&value));
            sent.insert(id, at);
            if let Ok(delivery) = delivery {
                drop(delivery);
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        sent
    });
    let mut seen_objects = BTreeSet::new();
    let mut visible: BTreeMap<u64, SystemTime> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 240);
    while (visible.len() as u64) < total && Instant::now() < deadline {
        let listed: Vec<_> = lake.list(Some(&"raw".into())).try_collect().await.unwrap_or_default();
        let now = SystemTime::now();
        for meta in listed {
            if !seen_objects.insert(meta.location.clone()) {
                continue;
            }
            let body = lake
                .get(&meta.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            let mut text = String::new();
            MultiGzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .expect("gunzip");
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).expect("line");
                if let Some(id) = v["tweet"]["id"].as_str().and_then(|s| s.parse().ok()) {
                    visible.entry(id).or_insert(now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = sender.await.expect("sender");
    terminate(&mut child);
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| visible.get(id)?.duration_since(*at).ok().map(|d| d.as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
    };
    json!({
        "lake": lake_kind, "rate": rate, "seconds": seconds, "sent": sent.len(), "visible": latencies.len(),
        "objects": seen_objects.len(), "p50_s": pct(0.50), "p99_s": pct(0.99), "max_s": latencies.last(),
        "flush": "defaults: 10000 records / 16MiB / 60s per partition batch",
    })
}
