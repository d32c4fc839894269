//! Consumer throughput (tweets/s) into a local lake and into the GCS emulator, printed.

use std::time::{Duration, Instant};

use super::{
    Committed, ConsumerArgs, ConsumerProcess, SERIAL, assert_exactly_once, produce, producer, read_lake, temp_dir,
};
use crate::support::{create_topic, gcs_lake, kafka_bootstrap, service_env, unique};

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
