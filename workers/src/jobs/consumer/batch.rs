//! One batch: the records consumed since the last flush, grouped into the lake objects they will become and
//! compressed as they arrive. Pure: no Kafka, no lake.
//!
//! A batch holds one segment per partition (a run of consecutive offsets starting where the previous flush of that
//! partition ended). A segment's records go to one object per (tree, day), where the tree is `raw` for tweet
//! envelopes and `rejected` for everything else, and each object is named by the first offset it holds:
//!
//! ```text
//!  partition 2, offsets 700..=705          objects of this segment
//!   700 tweet of 2026-11-01  ─┐            raw/dt=2026-11-01/<topic>-2-700.ndjson.gz   700, 702, 705
//!   701 tweet of 2026-11-02  ─┼──────────▶ raw/dt=2026-11-02/<topic>-2-701.ndjson.gz   701, 703
//!   702 tweet of 2026-11-01  ─┤            rejected/dt=<kafka timestamp's day>/<topic>-2-704.ndjson.gz   704
//!   703 tweet of 2026-11-02  ─┤
//!   704 "not json"           ─┤
//!   705 tweet of 2026-11-01  ─┘
//! ```

use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use flate2::{Compression, write::GzEncoder};
use object_store::path::Path;
use serde_json::json;

use crate::lake::record::{self, Classified, Origin, RejectKind, Tree};

/// One Kafka record as the poll thread hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp in milliseconds, when the broker gave one.
    pub timestamp_ms: Option<i64>,
    pub payload: Option<Vec<u8>>,
}

/// Where objects go and which day a record belongs to.
#[derive(Clone, Debug)]
pub struct Layout {
    pub topic: String,
    pub time_zone: Tz,
}

impl Layout {
    /// `<tree>/dt=YYYY-MM-DD/<topic>-<partition>-<firstOffset>.ndjson.gz`, relative to the lake's root.
    pub fn object_path(&self, tree: Tree, day: NaiveDate, partition: i32, first_offset: i64) -> Path {
        Path::from(format!(
            "{}{first_offset}.ndjson.gz",
            self.object_stem(tree, day, partition)
        ))
    }

    fn object_stem(&self, tree: Tree, day: NaiveDate, partition: i32) -> String {
        format!(
            "{}/dt={}/{}-{partition}-",
            tree.as_str(),
            day.format("%Y-%m-%d"),
            self.topic
        )
    }

    /// The tree, day and NDJSON line of one record (see [`crate::lake::record`]). A rejected record is dated by its
    /// Kafka timestamp, never by when it is consumed: a batch replayed after a crash lands in the same objects.
    fn classify(&self, record: &Incoming, received_at: DateTime<Utc>) -> Classified {
        record::classify(record.payload.as_deref(), self.time_zone, || {
            let mut fields = serde_json::Map::new();
            fields.insert("topic".to_owned(), json!(self.topic));
            fields.insert("partition".to_owned(), json!(record.partition));
            fields.insert("offset".to_owned(), json!(record.offset));
            Origin {
                fields,
                at: record
                    .timestamp_ms
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .unwrap_or(received_at),
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "partition {partition} went back from offset {last} to {offset}: the consumer only moves forward, so \
         restart from the committed offset"
    )]
    Rewind { partition: i32, last: i64, offset: i64 },
    #[error("failed to compress records of partition {partition}: {source}")]
    Compress {
        partition: i32,
        #[source]
        source: std::io::Error,
    },
}

/// What a flush commits for one partition: everything before `next_offset` is in the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub partition: i32,
    pub next_offset: i64,
}

/// One finished object, ready to write. Objects are create-only: when its name is taken (another writer of the same
/// partition landed it first, say a consumer that stalled past a rebalance), `flush` compares lines and writes only
/// what is missing, under the name of the first missing record's offset (`remainder`).
#[derive(Clone, Debug)]
pub struct SealedObject {
    pub path: Path,
    pub body: Bytes,
    /// How to name part of this object: present for offset-named objects (Kafka), absent for content-named ones
    /// (Pub/Sub), whose name already says their whole content.
    pub remainder: Option<Remainder>,
}

/// The offsets of an offset-named object's lines, in order, and the path stem before the offset.
#[derive(Clone, Debug)]
pub struct Remainder {
    /// `<tree>/dt=YYYY-MM-DD/<topic>-<partition>-`
    pub stem: String,
    pub offsets: Vec<i64>,
}

impl Remainder {
    /// The object path for a part that starts at `offset`.
    pub fn path(&self, offset: i64) -> Path {
        Path::from(format!("{}{offset}.ndjson.gz", self.stem))
    }
}

/// A batch taken out for writing.
#[derive(Debug)]
pub struct Sealed {
    pub objects: Vec<SealedObject>,
    pub commits: Vec<Commit>,
    pub raw_records: u64,
    pub rejected: BTreeMap<RejectKind, u64>,
    /// When the oldest of these records arrived: the batch latency runs from here to the commit.
    pub since: Instant,
}

struct ObjectBuffer {
    offsets: Vec<i64>,
    encoder: GzEncoder<Vec<u8>>,
}

struct Segment {
    next_offset: i64,
    since: Instant,
    records: usize,
    bytes: u64,
    objects: BTreeMap<(Tree, NaiveDate), ObjectBuffer>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
}

/// The records consumed and not yet flushed, per partition.
#[derive(Default)]
pub struct Batch {
    segments: BTreeMap<i32, Segment>,
    records: usize,
    bytes: u64,
}

/// What `push` did with a record, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Raw,
    Rejected(RejectKind),
}

impl Batch {
    /// Add one record. Offsets of a partition must grow: a smaller one means the consumer's position moved back,
    /// and a segment that does not start at the committed offset would break the naming guarantee.
    pub fn push(&mut self, layout: &Layout, record: Incoming, now: Instant) -> Result<Pushed, BatchError> {
        let partition = record.partition;
        if let Some(segment) = self.segments.get(&partition)
            && record.offset < segment.next_offset
        {
            return Err(BatchError::Rewind {
                partition,
                last: segment.next_offset - 1,
                offset: record.offset,
            });
        }
        let classified = layout.classify(&record, Utc::now());
        let segment = self.segments.entry(partition).or_insert_with(|| Segment {
            next_offset: record.offset,
            since: now,
            records: 0,
            bytes: 0,
            objects: BTreeMap::new(),
            raw_records: 0,
            rejected: BTreeMap::new(),
        });
        let object = segment
            .objects
            .entry((classified.tree, classified.day))
            .or_insert_with(|| ObjectBuffer {
                offsets: Vec::new(),
                encoder: GzEncoder::new(Vec::new(), Compression::default()),
            });
        object
            .encoder
            .write_all(&classified.line)
            .map_err(|source| BatchError::Compress { partition, source })?;
        object.offsets.push(record.offset);
        let bytes = record.payload.as_ref().map_or(0, |p| p.len() as u64);
        segment.next_offset = record.offset + 1;
        segment.records += 1;
        segment.bytes += bytes;
        self.records += 1;
        self.bytes += bytes;
        Ok(match classified.reject {
            None => {
                segment.raw_records += 1;
                Pushed::Raw
            }
            Some(kind) => {
                *segment.rejected.entry(kind).or_default() += 1;
                Pushed::Rejected(kind)
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// True once the batch holds `max_records` records or `max_bytes` bytes of record values.
    pub fn is_full(&self, max_records: usize, max_bytes: u64) -> bool {
        self.records >= max_records || self.bytes >= max_bytes
    }

    /// When the batch must be flushed by age: `max_age` after its oldest record arrived.
    pub fn deadline(&self, max_age: Duration) -> Option<Instant> {
        self.segments
            .values()
            .map(|s| s.since)
            .min()
            .map(|since| since + max_age)
    }

    /// Drop what `partitions` hold, unwritten. For partitions whose previous batch was not committed: the next
    /// batch must start at the committed offset, so these records are read again rather than written now.
    pub fn discard(&mut self, partitions: &[i32]) {
        for partition in partitions {
            if let Some(segment) = self.segments.remove(partition) {
                self.records -= segment.records;
                self.bytes -= segment.bytes;
            }
        }
    }

    /// Take every partition out for writing.
    pub fn seal_all(&mut self, layout: &Layout) -> Result<Option<Sealed>, BatchError> {
        let partitions: Vec<i32> = self.segments.keys().copied().collect();
        self.seal(layout, &partitions)
    }

    /// Take `partitions` out for writing (a rebalance revoked them); the others stay.
    pub fn seal(&mut self, layout: &Layout, partitions: &[i32]) -> Result<Option<Sealed>, BatchError> {
        let mut sealed = Sealed {
            objects: Vec::new(),
            commits: Vec::new(),
            raw_records: 0,
            rejected: BTreeMap::new(),
            since: Instant::now(),
        };
        for &partition in partitions {
            let Some(segment) = self.segments.remove(&partition) else {
                continue;
            };
            for ((tree, day), object) in segment.objects {
                let body = object
                    .encoder
                    .finish()
                    .map_err(|source| BatchError::Compress { partition, source })?;
                let first_offset = object.offsets.first().copied().unwrap_or(segment.next_offset);
                sealed.objects.push(SealedObject {
                    path: layout.object_path(tree, day, partition, first_offset),
                    body: Bytes::from(body),
                    remainder: Some(Remainder {
                        stem: layout.object_stem(tree, day, partition),
                        offsets: object.offsets,
                    }),
                });
            }
            self.records -= segment.records;
            self.bytes -= segment.bytes;
            sealed.commits.push(Commit {
                partition,
                next_offset: segment.next_offset,
            });
            sealed.raw_records += segment.raw_records;
            for (kind, n) in segment.rejected {
                *sealed.rejected.entry(kind).or_default() += n;
            }
            sealed.since = sealed.since.min(segment.since);
        }
        Ok((!sealed.commits.is_empty()).then_some(sealed))
    }
}

#[cfg(test)]
mod tests {
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
        format!(
            r#"{{"tweet":{{"id":"{id}","text":"beli saham","created_at":"{created_at}"}},"author_username":"budi"}}"#
        )
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
}
