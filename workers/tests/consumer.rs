//! `cilvest consumer` against the test environment's Kafka and GCS emulator, run as the built binary: every tweet
//! lands in the lake exactly once through repeated SIGKILLs, a rebalance between two members and a 30 s lake outage;
//! malformed records land under `rejected/`; objects are gzip NDJSON in the documented layout. The throughput test
//! prints tweets/s into a local lake and into the GCS emulator.
//!
//! Needs `scripts/testenv up kafka gcs` and `eval "$(scripts/testenv env kafka gcs)"`.

mod support;

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
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use support::{count_lines, create_topic, gcs_lake, kafka_bootstrap, lake_files, service_env, unique};

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

/// A small deterministic PRNG (SplitMix64), so a failing kill schedule can be replayed with its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tweet_lands_exactly_once_through_ten_sigkills() {
    const N: u64 = 50_000;
    const KILLS: usize = 10;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-kill");
    let group = unique("consumer-kill-group");
    create_topic(&bootstrap, &topic, 3).await;
    let dir = temp_dir("consumer-kill");
    let lake_dir = dir.join("lake");
    let lake_uri = format!("file://{}", lake_dir.display());
    let seed = std::env::var("CILVEST_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros().unsigned_abs());
    eprintln!(
        "kill schedule seed {seed} (replay with CILVEST_TEST_SEED={seed}); logs in {}",
        dir.display()
    );
    let mut random = SplitMix(seed);

    // Tweets arrive while the consumer is being killed: 25 chunks over about 20 s.
    let producing = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap);
            let mut produced = Produced::new();
            for chunk in 0..25 {
                produced.extend(produce(&producer, &topic, chunk * N / 25..(chunk + 1) * N / 25).await);
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            produced
        })
    };
    // Small batches and a short flush interval, so kills land between writing objects and committing them. Static
    // membership lets the restarted process take its partitions back at once instead of waiting out the session of
    // the killed one; the rebalance path is the two-consumer test's.
    let instance = unique("consumer-kill-instance");
    let membership = format!("group.instance.id={instance}");
    let extra = [
        "--flush-records",
        "1000",
        "--flush-interval",
        "300ms",
        "--kafka-option",
        &membership,
    ];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let committed = Committed::new(&group, &topic, 3);
    // Kill as long as tweets keep coming; only kills that leave records uncommitted count towards the ten. Every
    // other kill is aimed: right after a new object appears, which is most likely before its batch is committed.
    let mut kills = 0;
    let mut kills_between_write_and_commit = 0;
    let mut run = 0;
    while !producing.is_finished() {
        run += 1;
        let mut consumer = ConsumerProcess::spawn(&args, dir.join(format!("run-{run}.log")));
        let life = random.millis(300, 2_000);
        let aimed = run % 2 == 0;
        if aimed {
            tokio::time::sleep(life / 2).await;
            let before = count_objects(&lake_dir);
            let give_up = Instant::now() + Duration::from_secs(3);
            while count_objects(&lake_dir) <= before && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            tokio::time::sleep(life).await;
        }
        consumer.kill9().await;
        let done = committed.total().await;
        if done < N as i64 {
            kills += 1;
        }
        // More tweets in the lake than committed: the killed process wrote objects it never committed, which the
        // next one must overwrite rather than duplicate.
        let in_lake = count_lines(&lake_dir);
        if in_lake > done {
            kills_between_write_and_commit += 1;
        }
        let how = if aimed { "at a new object" } else { "at random" };
        eprintln!("SIGKILL {run} {how}: {done} of {N} committed, {in_lake} records in the lake");
    }
    let produced = producing.await.expect("producer task");
    assert_eq!(produced.len() as u64, N);
    assert!(
        kills >= KILLS,
        "only {kills} SIGKILLs hit a consumer with work left; produce more slowly"
    );
    eprintln!("{kills_between_write_and_commit} of {run} SIGKILLs left objects whose records were not committed");
    assert!(
        kills_between_write_and_commit > 0,
        "no SIGKILL landed between writing objects and committing them, so no replay was tested"
    );

    let mut last = ConsumerProcess::spawn(&args, dir.join("final.log"));
    committed
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut last])
        .await;
    assert!(last.terminate(Duration::from_secs(15)).await.success());

    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    let objects = read_lake(&lake).await;
    assert_exactly_once(&objects, &topic, &produced);
    assert!(objects.keys().all(|path| path.starts_with("raw/")), "nothing rejected");
    eprintln!("{N} tweets in {} objects after {kills} SIGKILLs", objects.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_split_the_partitions_and_write_every_record_once() {
    const N: u64 = 20_000;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-pair");
    let group = unique("consumer-pair-group");
    create_topic(&bootstrap, &topic, 4).await;
    let dir = temp_dir("consumer-pair");
    let lake_uri = format!("file://{}", dir.join("lake").display());
    let producing = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap);
            let mut produced = Produced::new();
            for chunk in 0..10 {
                produced.extend(produce(&producer, &topic, chunk * N / 10..(chunk + 1) * N / 10).await);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            produced
        })
    };
    let extra = ["--flush-records", "2000", "--flush-interval", "1s"];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let mut first = ConsumerProcess::spawn(&args, dir.join("first.log"));
    // The second member joins while the first holds unflushed records of every partition: the rebalance must flush
    // and commit them before the partitions move.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut second = ConsumerProcess::spawn(&args, dir.join("second.log"));
    let produced = producing.await.expect("producer task");
    Committed::new(&group, &topic, 4)
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut first, &mut second])
        .await;

    let mut written = Vec::new();
    for consumer in [&first, &second] {
        let out = consumer.metric("cilvest_consumer_records_out_total").await;
        let assigned = consumer.metric("cilvest_consumer_assigned_partitions").await;
        eprintln!("member wrote {out} tweets, owns {assigned} partitions");
        assert_eq!(assigned, 2.0, "four partitions split two and two");
        assert!(out > 0.0, "both members write");
        written.push(out);
    }
    assert_eq!(
        written.iter().sum::<f64>(),
        N as f64,
        "the revoked partitions' records were committed by the member that read them, so none was read twice"
    );
    assert!(first.terminate(Duration::from_secs(15)).await.success());
    assert!(second.terminate(Duration::from_secs(15)).await.success());

    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_land_under_rejected_with_their_reason() {
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-rejects");
    let group = unique("consumer-rejects-group");
    create_topic(&bootstrap, &topic, 1).await;
    let producer = producer(&bootstrap);
    // 2026-11-03T20:00:00Z: already 2026-11-04 in Jakarta, which is the day rejected records are filed under.
    let rejected_at = DateTime::parse_from_rfc3339("2026-11-03T20:00:00Z")
        .expect("time")
        .timestamp_millis();
    let send = |payload: Option<Vec<u8>>, key: String| {
        let producer = &producer;
        let topic = &topic;
        async move {
            let mut record = FutureRecord::<String, Vec<u8>>::to(topic)
                .key(&key)
                .timestamp(rejected_at);
            if let Some(payload) = &payload {
                record = record.payload(payload);
            }
            let delivery = producer.send(record, Duration::from_secs(30)).await.expect("delivery");
            (delivery.partition, delivery.offset)
        }
    };
    let bad: Vec<(Option<Vec<u8>>, &str)> = vec![
        (Some(b"not json".to_vec()), "not valid JSON"),
        (Some(b"[1,2]".to_vec()), "not a tweet"),
        (Some(br#"{"tweet":{"id":"1"}}"#.to_vec()), "not a tweet"),
        (
            Some(br#"{"id":"12a","text":"x","created_at":"2026-11-01T00:00:00Z"}"#.to_vec()),
            "is not a decimal number",
        ),
        (Some(vec![0xff, 0xfe, b'{']), "not valid JSON"),
        (None, "no value"),
    ];
    let mut produced = Produced::new();
    let mut bad_offsets = BTreeMap::new();
    for (i, (payload, reason)) in bad.iter().enumerate() {
        // A good tweet between bad ones: the rejected object is named by the first bad record's offset.
        let n = i as u64;
        let (partition, offset) = send(Some(envelope(n).into_bytes()), (FIRST_ID + n).to_string()).await;
        produced.insert(FIRST_ID + n, (partition, offset));
        let (_, offset) = send(payload.clone(), format!("bad-{i}")).await;
        bad_offsets.insert(offset, (payload.clone(), *reason));
    }
    // Tweets on either side of midnight in Jakarta (UTC+7).
    let edges = [
        ("2026-11-01T16:59:59.000Z", "2026-11-01"),
        ("2026-11-01T17:00:00.000Z", "2026-11-02"),
    ];
    for (i, (at, _)) in edges.iter().enumerate() {
        let id = FIRST_ID + 100 + i as u64;
        let payload = json!({"tweet": {"id": id.to_string(), "text": "sukuk", "created_at": at}}).to_string();
        produced.insert(id, send(Some(payload.into_bytes()), id.to_string()).await);
    }

    let dir = temp_dir("consumer-rejects");
    let lake_uri = format!("file://{}", dir.join("lake").display());
    let extra = ["--flush-interval", "500ms"];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let mut consumer = ConsumerProcess::spawn(&args, dir.join("consumer.log"));
    let total = (produced.len() + bad_offsets.len()) as i64;
    Committed::new(&group, &topic, 1)
        .wait_for(total, Duration::from_secs(30), &mut [&mut consumer])
        .await;
    assert_eq!(
        consumer.metric("cilvest_consumer_rejected_total").await,
        bad.len() as f64
    );
    assert_eq!(
        consumer.metric("cilvest_consumer_records_out_total").await,
        produced.len() as f64
    );
    let exposition = consumer.get("/metrics").await.text().await.expect("metrics text");
    for name in support::alerts::alerted_series("cilvest_consumer_") {
        assert!(
            support::alerts::declares(&exposition, &name),
            "the chart alerts on {name}, which the consumer does not serve"
        );
    }
    assert!(consumer.terminate(Duration::from_secs(15)).await.success());

    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    let objects = read_lake(&lake).await;
    assert_exactly_once(&objects, &topic, &produced);
    for (at, day) in edges {
        let id = FIRST_ID + 100 + edges.iter().position(|(a, _)| *a == at).expect("edge") as u64;
        assert!(
            objects
                .iter()
                .any(|(path, text)| path.starts_with(&format!("raw/dt={day}/")) && text.contains(&id.to_string())),
            "tweet created {at} is filed under dt={day}"
        );
    }
    let rejected: Vec<(&String, &String)> = objects.iter().filter(|(p, _)| p.starts_with("rejected/")).collect();
    let first_bad = *bad_offsets.keys().next().expect("bad records");
    assert_eq!(
        rejected.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        [format!("rejected/dt=2026-11-04/{topic}-0-{first_bad}.ndjson.gz")],
        "one object, under the day of the records' Kafka timestamp, named by the first one's offset"
    );
    let lines: Vec<Value> = rejected[0]
        .1
        .lines()
        .map(|line| serde_json::from_str(line).expect("rejected line is JSON"))
        .collect();
    assert_eq!(lines.len(), bad.len());
    for line in &lines {
        let offset = line["offset"].as_i64().expect("offset");
        let (payload, reason) = &bad_offsets[&offset];
        assert_eq!(line["partition"], 0);
        let said = line["reason"].as_str().expect("reason");
        assert!(
            said.contains(reason),
            "offset {offset}: reason {said:?} should say {reason:?}"
        );
        match payload {
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => assert_eq!(line["record"], text, "the original record, as text"),
                Err(_) => assert_eq!(line["record_hex"], "fffe7b", "a non-UTF-8 record, as hex"),
            },
            None => assert_eq!(line["record"], Value::Null),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run `script` with the test environment's GCS functions loaded (scripts/testenv.d/gcs.sh).
fn testenv_gcs(script: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = std::process::Command::new("bash")
        .current_dir(root)
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source scripts/testenv.d/common.sh; source scripts/testenv.d/gcs.sh; {script}"
        ))
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "{script} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the GCS emulator (keeping its data on disk) and starts it again when dropped, even if the test fails.
struct GcsOutage;

impl GcsOutage {
    fn begin() -> Self {
        testenv_gcs("stop_bg gcs");
        Self
    }
}

impl Drop for GcsOutage {
    fn drop(&mut self) {
        testenv_gcs("gcs_start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_lake_outage_pauses_consumption_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let topic = unique("consumer-outage");
    let group = unique("consumer-outage-group");
    create_topic(&bootstrap, &topic, 2).await;
    let (lake_uri, lake) = gcs_lake("consumer-outage").await;
    let dir = temp_dir("consumer-outage");
    let extra = [
        "--gcs-endpoint",
        &endpoint,
        "--flush-records",
        "500",
        "--flush-interval",
        "300ms",
    ];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let producer = producer(&bootstrap);
    let committed = Committed::new(&group, &topic, 2);
    let mut consumer = ConsumerProcess::spawn(&args, dir.join("consumer.log"));
    let mut produced = produce(&producer, &topic, 0..5_000).await;
    committed
        .wait_for(5_000, Duration::from_secs(30), &mut [&mut consumer])
        .await;

    let outage = GcsOutage::begin();
    let down_since = Instant::now();
    produced.extend(produce(&producer, &topic, 5_000..15_000).await);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;
    consumer.assert_running();
    let during = committed.total().await;
    assert!(
        during < 15_000,
        "nothing is committed while the lake is down ({during} of 15000)"
    );
    assert!(!consumer.is_ready().await, "/readyz reports the lake outage");
    assert_eq!(
        consumer.metric("cilvest_consumer_paused").await,
        1.0,
        "consumption is paused while a full batch waits"
    );
    assert!(consumer.metric("cilvest_consumer_lake_errors_total").await > 0.0);
    assert!(
        consumer.metric("cilvest_consumer_lag").await > 0.0,
        "the lag shows what waits"
    );
    eprintln!(
        "after {:?} without the lake: {during} records committed",
        down_since.elapsed()
    );
    drop(outage);

    committed
        .wait_for(15_000, Duration::from_secs(60), &mut [&mut consumer])
        .await;
    assert!(consumer.is_ready().await, "ready again once writes succeed");
    assert!(consumer.terminate(Duration::from_secs(15)).await.success());
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_into_a_local_lake_and_the_gcs_emulator() {
    const N: u64 = 50_000;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let topic = unique("consumer-throughput");
    create_topic(&bootstrap, &topic, 3).await;
    let produced = produce(&producer(&bootstrap), &topic, 0..N).await;
    let dir = temp_dir("consumer-throughput");

    let local_uri = format!("file://{}", dir.join("lake").display());
    let local = cilvest_workers::lake::open(&local_uri, None).expect("open lake");
    let (gcs_uri, gcs) = gcs_lake("consumer-throughput").await;
    let mut report = Vec::new();
    for (name, uri, lake, extra) in [
        ("local lake", &local_uri, &local, vec![]),
        (
            "GCS emulator",
            &gcs_uri,
            &gcs,
            vec!["--gcs-endpoint", endpoint.as_str()],
        ),
    ] {
        let group = unique("consumer-throughput-group");
        // Default batch limits; a short interval only so the last partial batch does not wait a minute.
        let mut extra = extra;
        extra.extend(["--flush-interval", "1s"]);
        let args = ConsumerArgs {
            topic: &topic,
            group: &group,
            lake: uri,
            extra: &extra,
        };
        let started = Instant::now();
        let mut consumer = ConsumerProcess::spawn(&args, dir.join(format!("{}.log", name.replace(' ', "-"))));
        // The clock for the rate starts at the first record read, leaving out process start and group join.
        consumer.wait_live().await;
        while consumer.metric("cilvest_consumer_records_in_total").await == 0.0 {
            consumer.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no record read:\n{}",
                consumer.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reading = Instant::now();
        Committed::new(&group, &topic, 3)
            .wait_for(N as i64, Duration::from_secs(120), &mut [&mut consumer])
            .await;
        let (total, moving) = (started.elapsed().as_secs_f64(), reading.elapsed().as_secs_f64());
        assert!(consumer.terminate(Duration::from_secs(15)).await.success());
        assert_exactly_once(&read_lake(lake).await, &topic, &produced);
        report.push(format!(
            "{name}: {N} tweets in {moving:.2} s from first read to last commit = {:.0} tweets/s \
             ({total:.2} s = {:.0} tweets/s from process start)",
            N as f64 / moving,
            N as f64 / total
        ));
    }
    let binary = std::env::var("CILVEST_CONSUMER_BIN").unwrap_or_else(|_| "the test profile's build".to_owned());
    eprintln!("consumer throughput of {binary}:\n  {}", report.join("\n  "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tweets_of_the_test_span_several_jakarta_days() {
    let days: BTreeSet<NaiveDate> = (0..1_000)
        .map(|n| created_at(n).with_timezone(&chrono_tz::Asia::Jakarta).date_naive())
        .collect();
    assert_eq!(days.len(), 3, "{days:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-broker-restart");
    let group = unique("consumer-broker-restart-group");
    create_topic(&bootstrap, &topic, 2).await;
    let dir = temp_dir("consumer-broker-restart");
    let lake_dir = dir.join("lake");
    let lake_uri = format!("file://{}", lake_dir.display());
    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    let extra = ["--flush-records", "500", "--flush-interval", "300ms"];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let producer = producer(&bootstrap);
    let committed = Committed::new(&group, &topic, 2);
    let mut consumer = ConsumerProcess::spawn(&args, dir.join("consumer.log"));
    let mut produced = produce(&producer, &topic, 0..5_000).await;
    committed
        .wait_for(5_000, Duration::from_secs(30), &mut [&mut consumer])
        .await;

    // The broker goes down and comes back (same data) while the consumer runs; more records follow.
    tokio::task::spawn_blocking(support::restart_kafka)
        .await
        .expect("restart kafka");
    consumer.assert_running();
    produced.extend(produce(&producer, &topic, 5_000..10_000).await);
    committed
        .wait_for(10_000, Duration::from_secs(90), &mut [&mut consumer])
        .await;
    assert!(consumer.terminate(Duration::from_secs(15)).await.success());
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every object under the bucket's lake prefix with its GCS generation (the JSON API's own count of writes).
async fn generations(bucket: &str) -> BTreeMap<String, String> {
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let listed: Value = reqwest::get(format!("{endpoint}/storage/v1/b/{bucket}/o?prefix=lake/"))
        .await
        .expect("list objects")
        .json()
        .await
        .expect("list json");
    listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| (o["name"].to_string(), o["generation"].to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stalled_past_a_rebalance_overwrites_nothing_and_loses_nothing() {
    const N: u64 = 3_000;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-zombie");
    let group = unique("consumer-zombie-group");
    create_topic(&bootstrap, &topic, 2).await;
    let (lake_uri, lake) = gcs_lake("consumer-zombie").await;
    let bucket = lake_uri
        .trim_start_matches("gs://")
        .split('/')
        .next()
        .expect("bucket")
        .to_owned();
    let dir = temp_dir("consumer-zombie");
    let committed = Committed::new(&group, &topic, 2);
    // The zombie-to-be holds its whole batch for 20 s; its group session lasts 6 s.
    let slow = [
        "--flush-records",
        "100000",
        "--flush-interval",
        "20s",
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=1000",
    ];
    let mut zombie = ConsumerProcess::spawn(
        &ConsumerArgs {
            topic: &topic,
            group: &group,
            lake: &lake_uri,
            extra: &slow,
        },
        dir.join("zombie.log"),
    );
    zombie.wait_live().await;
    let produced = produce(&producer(&bootstrap), &topic, 0..N).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while zombie.metric("cilvest_consumer_records_in_total").await < N as f64 {
        assert!(Instant::now() < deadline, "the first member did not read every record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGSTOP: a GC pause or a partition as the group sees it. Its partitions move once the session expires.
    let pid = zombie.child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let quick = ["--flush-interval", "1s", "--flush-records", "700"];
    let mut owner = ConsumerProcess::spawn(
        &ConsumerArgs {
            topic: &topic,
            group: &group,
            lake: &lake_uri,
            extra: &quick,
        },
        dir.join("owner.log"),
    );
    committed
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut owner])
        .await;
    let landed = generations(&bucket).await;
    assert!(!landed.is_empty(), "the new owner wrote objects");

    // SIGCONT: the stalled member wakes with its batch of the same offsets and tries to land it.
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    while !std::fs::read_to_string(dir.join("zombie.log"))
        .unwrap_or_default()
        .contains("exists already")
    {
        assert!(
            Instant::now() < deadline,
            "the woken member never tried to land its stale batch:\n{}",
            zombie.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = generations(&bucket).await;
    for (name, generation) in &landed {
        assert_eq!(after.get(name), Some(generation), "{name} was overwritten");
    }
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    assert_eq!(committed.total().await, N as i64);
    let _ = std::fs::remove_dir_all(&dir);
}
