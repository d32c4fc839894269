//! Outages under the consumer: 30 s without the lake (the GCS emulator stopped) and a broker restart mid-stream.

use std::time::{Duration, Instant};

use super::{
    Committed, ConsumerArgs, ConsumerProcess, SERIAL, assert_exactly_once, produce, producer, read_lake, temp_dir,
};
use crate::support;
use crate::support::{create_topic, gcs_lake, kafka_bootstrap, service_env, unique};

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
