//! Unit tests of `batch`.

use std::io::Read;

use flate2::read::GzDecoder;

use super::*;
use crate::lake::record::{MAX_RECORD_BYTES, ndjson_line};

fn layout() -> Layout {
    Layout {
        topic: "cilvest.demo.raw".to_owned(),
        time_zone: chrono_tz::Asia::Jakarta,
    }
}

fn tweet(id: u64, created_at: &str) -> Vec<u8> {
    format!(r#"{{"tweet":{{"id":"{id}","text":"beli saham","created_at":"{created_at}"}},"author_username":"budi"}}"#)
        .into_bytes()
}

fn record(partition: i32, offset: i64, payload: Option<Vec<u8>>) -> Incoming {
    Incoming {
        partition,
        offset,
        // 2026-11-03T20:00:00Z, which is 2026-11-04 in Jakarta.
        timestamp_ms: Some(1_793_736_000_000),
        payload,
    }
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    GzDecoder::new(body).read_to_string(&mut text).expect("gzip");
    text
}

#[test]
fn groups_records_by_partition_tree_and_local_day_named_by_first_offset() {
    let layout = layout();
    let mut batch = Batch::default();
    let now = Instant::now();
    let records = [
        record(2, 700, Some(tweet(1, "2026-11-01T10:00:00Z"))),
        // 17:30 UTC is already the next day in Jakarta (UTC+7).
        record(2, 701, Some(tweet(2, "2026-11-01T17:30:00Z"))),
        record(2, 702, Some(tweet(3, "2026-11-01T16:59:59Z"))),
        record(2, 704, Some(b"not json".to_vec())),
        record(2, 705, None),
        record(0, 9, Some(tweet(4, "2026-11-01T00:00:00Z"))),
    ];
    for r in records {
        batch.push(&layout, r, now).expect("push");
    }
    assert!(batch.is_full(6, u64::MAX) && !batch.is_full(7, u64::MAX));
    let sealed = batch.seal_all(&layout).expect("seal").expect("records");
    assert!(batch.is_empty());
    let mut names: Vec<_> = sealed.objects.iter().map(|o| o.path.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "raw/dt=2026-11-01/cilvest.demo.raw-0-9.ndjson.gz",
            "raw/dt=2026-11-01/cilvest.demo.raw-2-700.ndjson.gz",
            "raw/dt=2026-11-02/cilvest.demo.raw-2-701.ndjson.gz",
            "rejected/dt=2026-11-04/cilvest.demo.raw-2-704.ndjson.gz",
        ]
    );
    assert_eq!(
        sealed.commits,
        [
            Commit {
                partition: 0,
                next_offset: 10
            },
            Commit {
                partition: 2,
                next_offset: 706
            }
        ]
    );
    assert_eq!(sealed.raw_records, 4);
    assert_eq!(sealed.rejected, BTreeMap::from([("empty", 1), ("json", 1)]));

    let body = |name: &str| {
        let object = sealed
            .objects
            .iter()
            .find(|o| o.path.as_ref().ends_with(name))
            .expect(name);
        gunzip(&object.body)
    };
    let day1 = body("2-700.ndjson.gz");
    assert_eq!(day1.lines().count(), 2);
    assert_eq!(
        day1.lines().next().map(str::as_bytes),
        Some(&tweet(1, "2026-11-01T10:00:00Z")[..]),
        "records are written as sent"
    );
    let rejected: Vec<serde_json::Value> = body("2-704.ndjson.gz")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rejected[0]["offset"], 704);
    assert_eq!(rejected[0]["partition"], 2);
    assert_eq!(rejected[0]["record"], "not json");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not valid JSON"))
    );
    assert_eq!(rejected[1]["record"], serde_json::Value::Null);
}

#[test]
fn an_oversized_record_goes_to_rejected_whole() {
    let layout = layout();
    let mut batch = Batch::default();
    let text = "saham ".repeat(MAX_RECORD_BYTES / 6 + 1);
    let oversized = format!(
        r#"{{"tweet":{{"id":"1","text":"{text}","created_at":"2026-11-01T00:00:00Z"}},"author_username":"budi"}}"#
    );
    // Padded with trailing spaces, which JSON allows, to exactly the limit.
    let mut at_limit = r#"{"id":"2","text":"x","created_at":"2026-11-01T00:00:00Z"}"#.to_owned();
    at_limit.push_str(&" ".repeat(MAX_RECORD_BYTES - at_limit.len()));
    assert_eq!(at_limit.len(), MAX_RECORD_BYTES);
    let now = Instant::now();
    batch
        .push(&layout, record(3, 1, Some(oversized.clone().into_bytes())), now)
        .expect("push");
    batch
        .push(&layout, record(3, 2, Some(at_limit.into_bytes())), now)
        .expect("push");
    let sealed = batch.seal_all(&layout).expect("seal").expect("records");
    assert_eq!(sealed.rejected, BTreeMap::from([("size", 1)]));
    assert_eq!(sealed.raw_records, 1);
    let rejected = sealed
        .objects
        .iter()
        .find(|o| o.path.as_ref().starts_with("rejected/"))
        .expect("rejected object");
    let line: serde_json::Value = serde_json::from_str(gunzip(&rejected.body).trim_end()).expect("one JSON line");
    assert_eq!(line["record"], oversized.as_str());
    assert_eq!(
        line["reason"],
        format!(
            "record of {} bytes is over the 1048576-byte limit of a tweet envelope",
            oversized.len()
        )
    );
}

#[test]
fn keeps_each_record_on_one_line() {
    let pretty = b"{\r\n \"id\": \"5\",\n \"text\": \"a\\nb\", \"created_at\": \"2026-11-01T00:00:00Z\"\n}";
    let line = ndjson_line(pretty);
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    let value: serde_json::Value = serde_json::from_slice(&line).expect("still JSON");
    assert_eq!(value["text"], "a\nb");
}

#[test]
fn refuses_to_go_back_in_a_partition() {
    let layout = layout();
    let mut batch = Batch::default();
    let now = Instant::now();
    batch
        .push(&layout, record(1, 10, Some(tweet(1, "2026-11-01T00:00:00Z"))), now)
        .expect("push");
    let err = batch
        .push(&layout, record(1, 10, Some(tweet(1, "2026-11-01T00:00:00Z"))), now)
        .expect_err("rewind");
    assert!(matches!(err, BatchError::Rewind { partition: 1, .. }), "{err}");
}

#[test]
fn seals_only_revoked_partitions_and_flushes_by_age() {
    let layout = layout();
    let mut batch = Batch::default();
    let start = Instant::now();
    batch
        .push(&layout, record(0, 1, Some(tweet(1, "2026-11-01T00:00:00Z"))), start)
        .expect("push");
    batch
        .push(
            &layout,
            record(1, 5, Some(tweet(2, "2026-11-01T00:00:00Z"))),
            start + Duration::from_secs(3),
        )
        .expect("push");
    assert_eq!(
        batch.deadline(Duration::from_secs(60)),
        Some(start + Duration::from_secs(60))
    );
    let sealed = batch.seal(&layout, &[0, 7]).expect("seal").expect("partition 0");
    assert_eq!(sealed.commits.iter().map(|c| c.partition).collect::<Vec<_>>(), [0]);
    assert_eq!(batch.records(), 1);
    assert_eq!(
        batch.deadline(Duration::from_secs(60)),
        Some(start + Duration::from_secs(63))
    );
    assert!(batch.seal(&layout, &[0]).expect("seal").is_none());
    batch.discard(&[1]);
    assert!(batch.is_empty() && batch.records() == 0 && !batch.is_full(1, 1));
}
