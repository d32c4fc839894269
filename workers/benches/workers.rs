//! The workers' side of `scripts/bench` (run by hand, never in CI): helpers the driver cannot do from the shell.
//! Each subcommand prints one JSON object on stdout; `scripts/bench` stores it and renders BENCHMARKS.md.
//!
//! ```text
//!  configs   pipeline.json for `cilvest daily` and the transform.py config for the same day and pipeline
//!  ceiling   bare serde_json parsing of a raw day's lines: the practical bytes/s ceiling on this machine
//!  consumer  N tweets pre-produced to a fresh topic, then `cilvest consumer` timed until every one is written
//!  latency   tweets produced at a steady rate, each timed until an object holding it is visible in the lake
//!  producer  `cilvest producer` against the fake X API: CPU and peak memory per 1,000 tweets published
//! ```
//!
//! Needs the release `cilvest` binary and, for Kafka, GCS and X, `eval "$(scripts/testenv env)"`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path as FsPath, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use chrono::{NaiveDate, SecondsFormat, Utc};
use cilvest_workers::{google::dataproc, jobs::demo};
use clap::{Parser, Subcommand};
use flate2::read::MultiGzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde_json::{Value, json};

use support::{create_topic, fake_x::FakeX, gcs_lake, kafka_bootstrap, service_env, unique, write_worker_config};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// cargo bench passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Cmd {
    Configs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        date: NaiveDate,
        /// The lake directory (its raw/dt=D is the input of both engines).
        #[arg(long)]
        lake: PathBuf,
        /// Where Spark writes its output.
        #[arg(long)]
        spark_out: PathBuf,
    },
    Ceiling {
        /// A raw day folder: *.ndjson.gz and *.ndjson.
        #[arg(long)]
        raw: PathBuf,
        #[arg(long, default_value_t = 3)]
        passes: u32,
    },
    Consumer {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long)]
        tweets: u64,
        /// `local` or `gcs`.
        #[arg(long)]
        lake: String,
        #[arg(long, default_value_t = 10_000)]
        flush_records: u64,
        /// Run the consumer under `taskset -c CPU`.
        #[arg(long)]
        cpu: Option<u32>,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// The consumer's `--flush-interval`: short, so that a batch left partial at the end (a slow lake write
        /// lets the next batch cut early) does not add the default 60 s to the run.
        #[arg(long, default_value = "1s")]
        flush_interval: String,
    },
    /// The original design's consumer: one object per tweet, one put at a time, in this process.
    PerTweet {
        #[arg(long)]
        tweets: u64,
        #[arg(long)]
        lake: String,
    },
    Latency {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long)]
        lake: String,
        /// Tweets per second, produced evenly.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 150)]
        seconds: u64,
    },
    Producer {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        tweets: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Cmd::Configs {
            out,
            date,
            lake,
            spark_out,
        } => configs(&out, date, &lake, &spark_out),
        Cmd::Ceiling { raw, passes } => ceiling(&raw, passes),
        Cmd::Consumer {
            cilvest,
            tweets,
            lake,
            flush_records,
            cpu,
            partitions,
            flush_interval,
        } => runtime().block_on(consumer(
            &cilvest,
            tweets,
            &lake,
            (flush_records, &flush_interval),
            cpu,
            partitions,
        )),
        Cmd::PerTweet { tweets, lake } => runtime().block_on(per_tweet(tweets, &lake)),
        Cmd::Latency {
            cilvest,
            lake,
            rate,
            seconds,
        } => runtime().block_on(latency(&cilvest, &lake, rate, seconds)),
        Cmd::Producer { cilvest, tweets } => runtime().block_on(producer(&cilvest, tweets)),
    };
    println!("{result}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `cilvest daily`'s pipeline.json for the demo's embedded pipeline (the one `cilvest demo` generated the day
/// for), and transform.py's config for the same rules and day.
fn configs(out: &FsPath, date: NaiveDate, lake: &FsPath, spark_out: &FsPath) -> Value {
    std::fs::create_dir_all(out).expect("config dir");
    let mut config = demo::pipeline_config(None).expect("embedded pipeline");
    config.spec.targets.lake.uri = format!("file://{}", lake.display());
    let pipeline = out.join("pipeline.json");
    std::fs::write(&pipeline, serde_json::to_vec_pretty(&config).expect("json")).expect("write pipeline.json");
    let spark = dataproc::transform_config(
        &config.spec,
        date,
        &format!("file://{}/raw/dt={date}", lake.display()),
        &format!("file://{}", spark_out.display()),
    );
    let spark_path = out.join("spark.json");
    std::fs::write(&spark_path, &spark).expect("write spark.json");
    let script = out.join("transform.py");
    std::fs::write(&script, dataproc::TRANSFORM_PY).expect("write transform.py");
    json!({"pipeline": pipeline, "spark_config": spark_path, "transform_py": script})
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

fn raw_lines(raw: &FsPath) -> (Vec<Vec<u8>>, u64) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(raw)
        .expect("raw dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let mut bodies = Vec::new();
    let mut compressed = 0;
    for path in paths {
        let bytes = std::fs::read(&path).expect("read raw object");
        compressed += bytes.len() as u64;
        let name = path.to_string_lossy();
        if name.ends_with(".ndjson.gz") {
            let mut out = Vec::new();
            MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).expect("gunzip");
            bodies.push(out);
        } else if name.ends_with(".ndjson") {
            bodies.push(bytes);
        }
    }
    (bodies, compressed)
}

/// Bare serde_json over the same decompressed lines the native engine reads: into `IgnoredAny` (tokenising and
/// validating only) and into `Value` (a full tree). Times are this process's CPU seconds, best of `passes`.
fn ceiling(raw: &FsPath, passes: u32) -> Value {
    let (bodies, compressed) = raw_lines(raw);
    let bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let me = std::process::id().to_string();
    let mut best = BTreeMap::new();
    for _ in 0..passes {
        for kind in ["ignored_any", "value", "gunzip"] {
            let start = cpu_seconds(&me);
            let wall = Instant::now();
            let mut lines = 0u64;
            if kind == "gunzip" {
                // What reading the .gz objects costs before any parsing.
                let (again, _) = raw_lines(raw);
                lines = again.len() as u64;
            } else {
                for body in &bodies {
                    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        lines += 1;
                        if kind == "value" {
                            let _ = std::hint::black_box(serde_json::from_slice::<Value>(line));
                        } else {
                            let _ = std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(line));
                        }
                    }
                }
            }
            let cpu = (cpu_seconds(&me) - start).max(wall.elapsed().as_secs_f64().min(0.01));
            let entry = best.entry(kind).or_insert((f64::MAX, 0u64));
            if cpu < entry.0 {
                *entry = (cpu, lines);
            }
        }
    }
    let result: serde_json::Map<String, Value> = best
        .into_iter()
        .map(|(kind, (cpu, lines))| {
            (
                kind.to_owned(),
                json!({"cpu_s": cpu, "lines": lines, "bytes_per_cpu_s": bytes as f64 / cpu}),
            )
        })
        .collect();
    json!({"raw_bytes": bytes, "compressed_bytes": compressed, "results": result})
}

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

/// The sum of every series of metric `name`; None while the endpoint is not up.
async fn metric(http: &reqwest::Client, port: u16, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pre-produce `tweets` generated v2 envelopes, then time the consumer from its first record read to the last
/// one committed (so group join and start-up are excluded), and its CPU seconds over the same span.
async fn consumer(
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
async fn per_tweet(tweets: u64, lake_kind: &str) -> Value {
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
async fn latency(cilvest: &FsPath, lake_kind: &str, rate: u64, seconds: u64) -> Value {
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

/// The fake X API holding `tweets` fresh tweets; `cilvest producer` (backfill 1h) publishes them all. CPU is the
/// producer process's user+system seconds up to the last record on the topic; memory is its peak RSS.
async fn producer(cilvest: &FsPath, tweets: usize) -> Value {
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
