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

#[cfg(test)]
mod tests;

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
