//! Malformed records land under `rejected/` with their reason and the original record, while the good tweets between
//! them, and on either side of midnight in Jakarta, land under their `dt=` day.

use std::{collections::BTreeMap, time::Duration};

use chrono::DateTime;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

use super::{
    Committed, ConsumerArgs, ConsumerProcess, FIRST_ID, Produced, SERIAL, assert_exactly_once, envelope, producer,
    read_lake, temp_dir,
};
use crate::support;
use crate::support::{create_topic, kafka_bootstrap, unique};

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
