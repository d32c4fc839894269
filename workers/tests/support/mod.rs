//! Helpers shared by the integration tests and benchmarks: service addresses, unique names, Kafka topics, the
//! worker configuration, and the fake X API (`fake_x`).
// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]

#[path = "../../../operator/tests/common/alerts.rs"]
pub mod alerts;
pub mod dataproc_fields;
pub mod fake_dataproc;
pub mod fake_kibana;
pub mod fake_x;
pub mod startup;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use std::{io::Read as _, net::SocketAddr};

use flate2::read::GzDecoder;

use cilvest_workers::{
    jobs::producer::{Args, Producer},
    telemetry::Telemetry,
};
use object_store::ObjectStore;

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer},
};
use serde_json::json;

/// The value of `var`, which `scripts/testenv env` exports; panics saying what to start when it is missing.
pub fn service_env(var: &str, service: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the service with `scripts/testenv up {service}` and \
             `eval \"$(scripts/testenv env)\"`"
        )
    })
}

/// A name no earlier run used, so tests never see each other's data.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}-{n}", nanos ^ u128::from(std::process::id()))
}

/// Send the code under test's logs to the test's output (shown for failing tests, or with `--nocapture`), filtered
/// by `RUST_LOG` (default: warnings).
pub fn init_test_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rdkafka=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The Kafka bootstrap address of the test environment.
pub fn kafka_bootstrap() -> String {
    service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka")
}

/// Create `topic` with `partitions` partitions (replication 1).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("kafka admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    assert!(created.iter().all(Result::is_ok), "create topic {topic}: {created:?}");
}

/// One record of a topic.
#[derive(Clone, Debug)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

/// Every record on `topic` right now, read from the beginning of each partition up to its end.
pub async fn topic_records(bootstrap: &str, topic: &str) -> Vec<TopicRecord> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_all(&bootstrap, &topic))
        .await
        .expect("topic reader task")
}

fn read_all(bootstrap: &str, topic: &str) -> Vec<TopicRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .expect("watermarks");
        if high > low {
            ends.insert(partition, high - 1);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .expect("assignment");
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} took over {timeout:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("kafka message");
        records.push(TopicRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: message.payload().unwrap_or_default().to_vec(),
        });
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    records
}

/// Wait until `topic` holds at least `count` records, then return them all.
pub async fn wait_for_records(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Vec<TopicRecord> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let records = topic_records(bootstrap, topic).await;
        if records.len() >= count {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} has {} records after {timeout:?}, expected {count}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restart the test environment's Kafka broker on the same data and wait until it is healthy again.
pub fn restart_kafka() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testenv.d/kafka.sh");
    let output = std::process::Command::new("bash")
        .arg(script)
        .arg("restart")
        .output()
        .expect("run scripts/testenv.d/kafka.sh restart");
    assert!(
        output.status.success(),
        "kafka restart failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A worker configuration (`pipeline.json`) for Cilvest's keywords, written to a fresh temporary directory.
pub fn write_worker_config(bootstrap: &str, topic: &str, language: &str, backfill: Option<&str>) -> PathBuf {
    let mut x = json!({"pollInterval": "60s"});
    if let Some(backfill) = backfill {
        x["backfill"] = json!(backfill);
    }
    let config = json!({
        "pipeline": "cilvest",
        "namespace": "default",
        "kafkaBootstrap": bootstrap,
        "rawTopic": topic,
        "consumerGroup": "cilvest.cilvest.lake",
        "spec": {
            "keywords": [
                {"name": "saham", "terms": ["saham", "#saham"]},
                {"name": "reksadana", "terms": ["reksadana", "reksa dana", "#reksadana"]},
                {"name": "sukuk", "terms": ["sukuk", "#sukuk"]}
            ],
            "language": language,
            "dropRetweets": true,
            "source": {"x": x},
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {"raw": {"name": topic, "partitions": 3}},
            "targets": {
                "lake": {"uri": "gs://cilvest-lake/tweets"},
                "bigquery": {"project": "cilvest-test", "dataset": "cilvest"}
            }
        }
    });
    let dir = std::env::temp_dir().join(unique("cilvest-config"));
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config json")).expect("write config");
    path
}

/// A new bucket in the GCS emulator and the lake under `gs://<bucket>/lake`: its URI and the lake.
pub async fn gcs_lake(name: &str) -> (String, Arc<dyn ObjectStore>) {
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let bucket = unique(name);
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=cilvest-test"))
        .json(&json!({"name": bucket}))
        .send()
        .await
        .expect("create bucket request");
    assert!(response.status().is_success(), "create bucket: {}", response.status());
    let uri = format!("gs://{bucket}/lake");
    let lake = cilvest_workers::lake::open(&uri, Some(&endpoint)).expect("open lake");
    (uri, lake)
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Run a producer to completion (`--once`), returning its telemetry.
pub async fn run_once(args: Args) -> Telemetry {
    init_test_logs();
    let telemetry = Telemetry::new("cilvest_producer");
    let producer = Producer::new(args, telemetry.clone()).expect("producer");
    tokio::time::timeout(Duration::from_secs(60), producer.run(std::future::pending()))
        .await
        .expect("producer --once finishes within 60 s")
        .expect("producer run");
    telemetry
}

/// The BigQuery emulator of `scripts/testenv up bigquery`.
pub async fn warehouse() -> cilvest_workers::google::bigquery::Warehouse {
    let endpoint = service_env("CILVEST_BQ_URL", "bigquery");
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    cilvest_workers::google::bigquery::Warehouse::connect(Some(&endpoint), &project, "asia-southeast2")
        .await
        .expect("warehouse")
}

/// Delete a test's datasets and a local lake's bucket directory (`file://<root>/<bucket>/lake`).
pub async fn clean_warehouse_and_lake(datasets: &[&str], lake_uri: &str) {
    let warehouse = warehouse().await;
    for dataset in datasets {
        warehouse
            .client()
            .dataset()
            .delete_if_exists(warehouse.project(), dataset, true)
            .await;
    }
    if let Some(bucket) = lake_uri.strip_prefix("file://").and_then(|l| l.strip_suffix("/lake")) {
        let _ = std::fs::remove_dir_all(bucket);
    }
}

/// Serve a fake's `app` on `address` (port 0: any free port): the address it listens on, and the server's task
/// (the fakes abort it when dropped).
pub async fn serve(app: axum::Router, address: &str, what: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("bind the fake {what} on {address}: {e}"));
    let addr = listener.local_addr().expect("the fake's address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

/// Lake objects under a local lake directory (object_store writes a temporary file, then renames it).
pub fn lake_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().ends_with(".ndjson.gz") {
                files.push(path);
            }
        }
    }
    files
}

/// Records (lines) in every object of a local lake.
pub fn count_lines(dir: &std::path::Path) -> i64 {
    lake_files(dir)
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .map(|body| {
            let mut text = String::new();
            // A file replaced while being read counts as empty; this is only a progress figure.
            let _ = GzDecoder::new(&body[..]).read_to_string(&mut text);
            text.lines().count() as i64
        })
        .sum()
}
