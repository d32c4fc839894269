//! What a bus record becomes in the lake, decided in one place for every path into it (the Kafka consumer, the
//! Pub/Sub consumer, the demo's in-process bus):
//!
//! ```text
//!  record ─ none or empty ─────────────────────▶ rejected/dt=<day of the record's bus time>/  kind "empty"
//!         ─ over MAX_RECORD_BYTES ─────────────▶ rejected/…                                    kind "size"
//!         ─ not a tweet envelope (tweet::parse) ▶ rejected/…                                   kind json | tweet | id
//!         ─ a tweet ───────────────────────────▶ raw/dt=<tweet's created_at, local day>/      the record, one line
//! ```
//! Tree, day and line depend on the record alone, never on when it is read, so a batch replayed after a crash lands
//! in the same objects. A rejected line keeps where the record came from, when, why, and the record exactly (as
//! text when it is UTF-8, else as hex).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use crate::tweet::{self, EnvelopeError};

/// The largest record that can be a tweet envelope: Kafka's default `max.message.bytes`. A tweet with its
/// longest text and every expansion is a few kilobytes, so a bigger record is a mistake or an attack, and parsing
/// it into `raw/` would make every daily run pay for it. It goes to `rejected/` whole, like any other reject.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The two trees of the lake a bus writes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    Raw,
    Rejected,
}

impl Tree {
    pub fn as_str(self) -> &'static str {
        match self {
            Tree::Raw => "raw",
            Tree::Rejected => "rejected",
        }
    }
}

/// Why a record went to `rejected/`: a low-cardinality label for metrics, beside the full reason in the object.
pub type RejectKind = &'static str;

/// Where a record came from, for its rejected line: its coordinates on the bus (`topic`, `partition`, `offset`, or
/// `subscription`, `message_id`) and the bus's time for it, which dates a reject.
pub struct Origin {
    pub fields: Map<String, Value>,
    pub at: DateTime<Utc>,
}

/// One record, classified.
#[derive(Debug)]
pub struct Classified {
    pub tree: Tree,
    /// The local day (in the pipeline's time zone) whose folder the line goes to.
    pub day: NaiveDate,
    /// One NDJSON line, with its `\n`.
    pub line: Vec<u8>,
    pub reject: Option<RejectKind>,
}

/// Classify `payload`. `origin` is only asked for when the record is rejected.
pub fn classify(payload: Option<&[u8]>, time_zone: Tz, origin: impl FnOnce() -> Origin) -> Classified {
    let day = |at: DateTime<Utc>| at.with_timezone(&time_zone).date_naive();
    let reject = |kind: RejectKind, reason: String| {
        let Origin { mut fields, at } = origin();
        fields.insert(
            "timestamp".to_owned(),
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        fields.insert("reason".to_owned(), json!(reason));
        match payload.map(std::str::from_utf8) {
            Some(Ok(text)) => fields.insert("record".to_owned(), json!(text)),
            Some(Err(_)) => fields.insert("record_hex".to_owned(), json!(hex(payload.unwrap_or_default()))),
            None => fields.insert("record".to_owned(), Value::Null),
        };
        let mut line = Value::Object(fields).to_string().into_bytes();
        line.push(b'\n');
        Classified {
            tree: Tree::Rejected,
            day: day(at),
            line,
            reject: Some(kind),
        }
    };
    let Some(payload) = payload else {
        return reject("empty", "record has no value".to_owned());
    };
    if payload.len() > MAX_RECORD_BYTES {
        return reject(
            "size",
            format!(
                "record of {} bytes is over the {MAX_RECORD_BYTES}-byte limit of a tweet envelope",
                payload.len()
            ),
        );
    }
    match tweet::parse(payload) {
        Ok(parsed) => Classified {
            tree: Tree::Raw,
            day: day(parsed.tweet.created_at),
            line: ndjson_line(payload),
            reject: None,
        },
        Err(err) => {
            let kind = match err {
                EnvelopeError::Json(_) if payload.is_empty() => "empty",
                EnvelopeError::Json(_) => "json",
                EnvelopeError::Tweet(_) => "tweet",
                EnvelopeError::Id(_) => "id",
            };
            reject(kind, format!("not a tweet envelope: {err}"))
        }
    }
}

/// The record as one NDJSON line, byte for byte except for line breaks. A valid JSON document can only hold raw CR
/// or LF as whitespace between tokens (inside strings they must be escaped), so turning them into spaces keeps the
/// document equal while making it one line.
pub fn ndjson_line(payload: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(payload.len() + 1);
    line.extend(payload.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    line.push(b'\n');
    line
}

/// Lowercase hex, for records that are not UTF-8.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWEET: &str = r#"{"tweet":{"id":"1850000000000000001","text":"beli saham\nBBCA","created_at":"2026-11-01T17:30:00Z","lang":"in"},"author_username":"budi"}"#;

    fn origin() -> Origin {
        let mut fields = Map::new();
        fields.insert("topic".to_owned(), json!("raw"));
        Origin {
            fields,
            at: "2026-11-04T01:00:00Z".parse().expect("time"),
        }
    }

    fn jakarta() -> Tz {
        chrono_tz::Asia::Jakarta
    }

    #[test]
    fn a_tweet_goes_to_raw_under_its_local_day_as_one_line() {
        let classified = classify(Some(TWEET.as_bytes()), jakarta(), || panic!("origin asked for a tweet"));
        assert_eq!((classified.tree, classified.reject), (Tree::Raw, None));
        // 17:30 UTC on the 1st is 00:30 on the 2nd in Jakarta.
        assert_eq!(classified.day.to_string(), "2026-11-02");
        assert_eq!(classified.line.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn every_kind_of_reject_keeps_its_origin_reason_and_record() {
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        for (payload, kind) in [
            (None, "empty"),
            (Some(&b""[..]), "empty"),
            (Some(&b"not json"[..]), "json"),
            (Some(&br#"{"tweet":{"id":"1"}}"#[..]), "tweet"),
            (Some(&b"\xff\xfe"[..]), "json"),
            (Some(&big[..]), "size"),
        ] {
            let classified = classify(payload, jakarta(), origin);
            assert_eq!(
                (classified.tree, classified.reject),
                (Tree::Rejected, Some(kind)),
                "{payload:?}"
            );
            assert_eq!(classified.day.to_string(), "2026-11-04");
            let line: Value = serde_json::from_slice(&classified.line).expect("json line");
            assert_eq!(line["topic"], "raw");
            assert_eq!(line["timestamp"], "2026-11-04T01:00:00.000Z");
            assert!(line["reason"].as_str().is_some_and(|r| !r.is_empty()));
            match payload.map(std::str::from_utf8) {
                Some(Ok(text)) => assert_eq!(line["record"], text),
                Some(Err(_)) => assert_eq!(line["record_hex"], "fffe"),
                None => assert!(line["record"].is_null()),
            }
        }
    }
}
