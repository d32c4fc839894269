//! `cilvest consumer` against the test environment's Kafka and GCS emulator, run as the built binary: every tweet
//! lands in the lake exactly once through repeated SIGKILLs, a rebalance between two members and a 30 s lake outage;
//! malformed records land under `rejected/`; objects are gzip NDJSON in the documented layout. The throughput test
//! prints tweets/s into a local lake and into the GCS emulator.
//!
//! Needs `scripts/testenv up kafka gcs` and `eval "$(scripts/testenv env kafka gcs)"`.

mod exactly_once;
mod outages;
mod rejected;
#[path = "../support/mod.rs"]
mod support;
mod throughput;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use flate2::read::GzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio::process::{Child, Command};

use support::{kafka_bootstrap, lake_files, unique};

/// The tests share two CPU cores, and one of them stops the GCS emulator: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tweet ids are `FIRST_ID + n`.
const FIRST_ID: u64 = 1_850_000_000_000_000_000;

/// Where a produced tweet went: tweet id -> (partition, offset).
type Produced = BTreeMap<u64, (i32, i64)>;

/// Tweets spread over three Jakarta days, in no particular order, so that every batch spans several `dt=` days.
fn created_at(n: u64) -> DateTime<Utc> {
    let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00+07:00")
        .expect("start")
        .to_utc();
    start + TimeDelta::seconds(i64::try_from(n * 7919 % 259_200).expect("small"))
}

fn envelope(n: u64) -> String {
    json!({
        "tweet": {
            "id": (FIRST_ID + n).to_string(),
            "text": format!("beli saham bbca hari ini #{n}"),
            "created_at": created_at(n).to_rfc3339_opts(SecondsFormat::Millis, true),
            "lang": "in",
            "author_id": (n % 977).to_string(),
        },
        "author_username": format!("investor{}", n % 977),
        "fetched_at": "2026-11-04T00:00:00.000Z",
    })
    .to_string()
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("kafka producer")
}

/// Produce tweets `range` (keyed by id) and return where each landed.
async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<u64>) -> Produced {
    futures::stream::iter(range)
        .map(|n| async move {
            let id = (FIRST_ID + n).to_string();
            let payload = envelope(n);
            let delivery = producer
                .send(
                    FutureRecord::to(topic).key(&id).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .expect("delivery");
            (FIRST_ID + n, (delivery.partition, delivery.offset))
        })
        .buffer_unordered(5_000)
        .collect()
        .await
}

/// A `cilvest consumer` process, logging to a file.
struct ConsumerProcess {
    child: Child,
    metrics_port: u16,
    log: PathBuf,
}

struct ConsumerArgs<'a> {
    topic: &'a str,
    group: &'a str,
    lake: &'a str,
    extra: &'a [&'a str],
}

impl ConsumerProcess {
    fn spawn(args: &ConsumerArgs<'_>, log: PathBuf) -> Self {
        let metrics_port = free_port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("consumer log file");
        // CILVEST_CONSUMER_BIN runs another build of `cilvest`, e.g. a release build for the throughput figures.
        let binary = std::env::var("CILVEST_CONSUMER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cilvest").to_owned());
        let child = Command::new(binary)
            .arg("consumer")
            .args(["--kafka-bootstrap", &kafka_bootstrap()])
            .args(["--topic", args.topic, "--group", args.group, "--lake", args.lake])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(args.extra)
            .env("CILVEST_LOG_FORMAT", "text")
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start cilvest consumer");
        Self {
            child,
            metrics_port,
            log,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Panic, with its log, if the process has exited on its own.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the consumer exited on its own with {status}; log {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }

    async fn kill9(&mut self) {
        self.assert_running();
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait after SIGKILL");
    }

    /// Wait until the process serves `/livez`, which it does only after installing its SIGTERM handler.
    async fn wait_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://127.0.0.1:{}/livez", self.metrics_port);
        while !reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the consumer did not come up:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as Kubernetes sends it, and wait up to `within` for the exit.
    async fn terminate(mut self, within: Duration) -> ExitStatus {
        self.wait_live().await;
        let pid = self.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {pid}");
        let started = Instant::now();
        let exit = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the consumer did not exit within {within:?} of SIGTERM:\n{}",
                    self.log_tail()
                )
            })
            .expect("wait");
        eprintln!("consumer exited {exit} {:?} after SIGTERM", started.elapsed());
        exit
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.metrics_port))
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}\n{}", self.log_tail()))
    }

    /// The sum of every series of metric `name` (all label sets).
    async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.expect("metrics text");
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn is_ready(&self) -> bool {
        self.get("/readyz").await.status().is_success()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

fn count_objects(dir: &std::path::Path) -> usize {
    lake_files(dir).len()
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The group's committed offsets on `topic`, read like any client would.
struct Committed {
    consumer: Arc<BaseConsumer>,
    topic: String,
    partitions: Vec<i32>,
}

impl Committed {
    fn new(group: &str, topic: &str, partitions: i32) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset reader");
        Self {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            partitions: (0..partitions).collect(),
        }
    }

    /// The sum over partitions of the committed offsets (the records a group has durably handled). Retries for a
    /// while: other tests restart the broker, and the group coordinator then moves for a few seconds.
    async fn total(&self) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (consumer, topic, partitions) = (self.consumer.clone(), self.topic.clone(), self.partitions.clone());
            let committed = tokio::task::spawn_blocking(move || {
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    tpl.add_partition(&topic, p);
                }
                consumer.committed_offsets(tpl, Duration::from_secs(10))
            })
            .await
            .expect("offset reader task");
            match committed {
                Ok(committed) => {
                    return committed
                        .elements()
                        .iter()
                        .map(|e| match e.offset() {
                            Offset::Offset(o) => o,
                            _ => 0,
                        })
                        .sum();
                }
                Err(err) if Instant::now() < deadline => {
                    eprintln!("reading committed offsets failed, retrying: {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => panic!("committed offsets of {}: {err}", self.topic),
            }
        }
    }

    /// Wait until `total` records are committed, checking that the consumers keep running.
    async fn wait_for(&self, total: i64, timeout: Duration, consumers: &mut [&mut ConsumerProcess]) {
        let deadline = Instant::now() + timeout;
        loop {
            let committed = self.total().await;
            if committed >= total {
                assert_eq!(committed, total, "committed past the end of the topic");
                return;
            }
            for consumer in consumers.iter_mut() {
                consumer.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "{committed} of {total} records committed after {timeout:?}; last consumer log:\n{}",
                consumers.last().map(|c| c.log_tail()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every object in the lake, decompressed: path -> text.
async fn read_lake(lake: &Arc<dyn ObjectStore>) -> BTreeMap<String, String> {
    let metas: Vec<_> = lake.list(None).try_collect().await.expect("list lake");
    let mut objects = BTreeMap::new();
    for meta in metas {
        let path = meta.location.to_string();
        let body = lake
            .get(&meta.location)
            .await
            .expect("get object")
            .bytes()
            .await
            .expect("object bytes");
        let mut text = String::new();
        GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|err| panic!("{path} is not gzip text: {err}"));
        objects.insert(path, text);
    }
    objects
}

/// `<tree>/dt=YYYY-MM-DD/<topic>-<partition>-<firstOffset>.ndjson.gz` -> (tree, day, partition, first offset).
fn parse_object_path<'a>(path: &'a str, topic: &str) -> (&'a str, NaiveDate, i32, i64) {
    let bad = || -> ! { panic!("{path} is not <tree>/dt=YYYY-MM-DD/{topic}-<partition>-<offset>.ndjson.gz") };
    let mut parts = path.split('/');
    let (Some(tree), Some(dt), Some(file), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        bad()
    };
    let day = dt
        .strip_prefix("dt=")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or_else(|| bad());
    let (partition, offset) = file
        .strip_suffix(".ndjson.gz")
        .and_then(|stem| stem.strip_prefix(topic))
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split_once('-'))
        .unwrap_or_else(|| bad());
    (
        tree,
        day,
        partition.parse().unwrap_or_else(|_| bad()),
        offset.parse().unwrap_or_else(|_| bad()),
    )
}

/// Every produced tweet is in exactly one `raw/` object, as one NDJSON line, under its Jakarta day, in the object of
/// its partition named by that object's first offset; nothing else is under `raw/`.
fn assert_exactly_once(objects: &BTreeMap<String, String>, topic: &str, produced: &Produced) {
    let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
    for (path, text) in objects.iter().filter(|(path, _)| path.starts_with("raw/")) {
        let (_, day, partition, first_offset) = parse_object_path(path, topic);
        assert!(text.ends_with('\n'), "{path}: NDJSON ends each line with a newline");
        let mut offsets = Vec::new();
        for line in text.lines() {
            let parsed = cilvest_workers::tweet::parse(line.as_bytes())
                .unwrap_or_else(|err| panic!("{path}: line is not a tweet envelope ({err}): {line}"));
            let local_day = parsed
                .tweet
                .created_at
                .with_timezone(&chrono_tz::Asia::Jakarta)
                .date_naive();
            assert_eq!(local_day, day, "{path}: tweet {} is of another day", parsed.tweet.id);
            let id: u64 = parsed.tweet.id.parse().expect("numeric id");
            let &(at_partition, offset) = produced
                .get(&id)
                .unwrap_or_else(|| panic!("{path}: tweet {id} was never produced"));
            assert_eq!(
                at_partition, partition,
                "{path}: tweet {id} is from partition {at_partition}"
            );
            offsets.push(offset);
            if let Some(other) = seen.insert(id, path) {
                panic!("tweet {id} is in the lake twice: {other} and {path}");
            }
        }
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{path}: records out of offset order"
        );
        assert_eq!(
            offsets.first(),
            Some(&first_offset),
            "{path}: named by its first record's offset"
        );
    }
    let missing: Vec<_> = produced.keys().filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} tweets are missing from the lake, e.g. {:?}",
        missing.len(),
        produced.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), produced.len());
}

#[test]
fn tweets_of_the_test_span_several_jakarta_days() {
    let days: BTreeSet<NaiveDate> = (0..1_000)
        .map(|n| created_at(n).with_timezone(&chrono_tz::Asia::Jakarta).date_naive())
        .collect();
    assert_eq!(days.len(), 3, "{days:?}");
}
