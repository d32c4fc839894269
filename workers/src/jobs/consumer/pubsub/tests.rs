//! Unit tests of `pubsub`.

use std::io::Read;

use flate2::read::GzDecoder;

use super::{open::SealedBatch, *};
use chrono::{DateTime, Utc};

fn message(id: &str, data: &[u8]) -> Received {
    Received {
        ack_id: format!("ack-{id}"),
        message_id: id.to_owned(),
        data: data.to_vec(),
        attributes: BTreeMap::new(),
        publish_time: DateTime::parse_from_rfc3339("2026-11-03T20:00:00Z")
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

fn tweet(id: u64, created_at: &str) -> Vec<u8> {
    format!(r#"{{"tweet":{{"id":"{id}","text":"beli saham","created_at":"{created_at}"}},"author_username":"budi"}}"#)
        .into_bytes()
}

fn sealed(messages: &[Received]) -> SealedBatch {
    let mut batch = OpenBatch::default();
    for m in messages {
        let line = classify(m, "cilvest-demo-lake", chrono_tz::Asia::Jakarta);
        batch.push(line, m.ack_id.clone(), m.data.len() as u64, StdInstant::now());
    }
    batch.seal("cilvest-demo-lake").expect("seal").expect("not empty")
}

fn names(batch: &SealedBatch) -> Vec<String> {
    let mut names: Vec<String> = batch.objects.iter().map(|o| o.path.to_string()).collect();
    names.sort();
    names
}

#[test]
fn objects_are_named_by_content_so_a_redelivered_batch_overwrites_itself() {
    let a = message("1", &tweet(1, "2026-11-01T10:00:00Z"));
    // 17:30 UTC is the next day in Jakarta.
    let b = message("2", &tweet(2, "2026-11-01T17:30:00Z"));
    let c = message("3", &tweet(3, "2026-11-01T11:00:00Z"));
    let bad = message("4", b"not json");
    let first = sealed(&[a.clone(), b.clone(), c.clone(), bad.clone()]);
    assert_eq!(first.ack_ids, ["ack-1", "ack-2", "ack-3", "ack-4"]);
    assert_eq!((first.raw_records, first.rejected.get("json").copied()), (3, Some(1)));
    let first_names = names(&first);
    assert_eq!(first_names.len(), 3);
    assert!(first_names[0].starts_with("raw/dt=2026-11-01/cilvest-demo-lake-"));
    assert!(first_names[1].starts_with("raw/dt=2026-11-02/cilvest-demo-lake-"));
    assert!(first_names[2].starts_with("rejected/dt=2026-11-04/cilvest-demo-lake-"));
    assert!(first_names[0].ends_with(".ndjson.gz"));
    // The same messages in another order (and one delivered twice) make the same objects.
    let again = sealed(&[c.clone(), bad, b.clone(), a.clone(), c.clone()]);
    assert_eq!(names(&again), first_names);
    // A different set of messages for a day (only `a` of day 1's `a` and `c`) never reuses a name.
    let other = sealed(&[a]);
    assert_ne!(names(&other)[0], first_names[0]);

    let day1 = first
        .objects
        .iter()
        .find(|o| o.path.as_ref().starts_with("raw/dt=2026-11-01"))
        .expect("day 1");
    let mut text = String::new();
    GzDecoder::new(&day1.body[..]).read_to_string(&mut text).expect("gzip");
    assert_eq!(text.lines().count(), 2);
    let rejected = first
        .objects
        .iter()
        .find(|o| o.path.as_ref().starts_with("rejected/"))
        .expect("rejected");
    let mut text = String::new();
    GzDecoder::new(&rejected.body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    assert_eq!(
        (line["message_id"].as_str(), line["record"].as_str()),
        (Some("4"), Some("not json"))
    );
}

#[test]
fn an_empty_batch_seals_to_nothing_and_backoff_grows() {
    assert!(OpenBatch::default().seal("s").expect("seal").is_none());
    assert_eq!(pull_backoff(0), Duration::ZERO);
    assert!(pull_backoff(2) > pull_backoff(1));
    // The cap, with the one backoff's equal jitter.
    assert!(pull_backoff(40) <= MAX_PULL_BACKOFF && pull_backoff(40) >= MAX_PULL_BACKOFF / 2);
}
