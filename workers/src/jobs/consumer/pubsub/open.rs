//! The open batch of the Pub/Sub consumer: pulled lines grouped by tree and day with their ack ids, sealed into
//! content-named gzip objects, so a redelivered batch becomes the same objects.

use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant as StdInstant},
};

use bytes::Bytes;
use chrono::NaiveDate;
use flate2::{Compression, write::GzEncoder};
use object_store::path::Path;
use ring::digest;

use super::super::{batch::SealedObject, writer::Limits};
use crate::lake::record::{Classified, RejectKind, Tree, hex};

/// The lines pulled since the last flush and the ack ids they came with.
#[derive(Default)]
pub(super) struct OpenBatch {
    objects: BTreeMap<(Tree, NaiveDate), Vec<Vec<u8>>>,
    pub(super) ack_ids: Vec<String>,
    bytes: u64,
    since: Option<StdInstant>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
}

/// A batch taken out for writing.
pub(super) struct SealedBatch {
    pub(super) objects: Vec<SealedObject>,
    pub(super) ack_ids: Vec<String>,
    pub(super) raw_records: u64,
    pub(super) rejected: BTreeMap<RejectKind, u64>,
    pub(super) since: StdInstant,
}

impl OpenBatch {
    pub(super) fn push(&mut self, line: Classified, ack_id: String, bytes: u64, now: StdInstant) {
        self.objects.entry((line.tree, line.day)).or_default().push(line.line);
        self.ack_ids.push(ack_id);
        self.bytes += bytes;
        self.since.get_or_insert(now);
        match line.reject {
            None => self.raw_records += 1,
            Some(kind) => *self.rejected.entry(kind).or_default() += 1,
        }
    }

    pub(super) fn records(&self) -> usize {
        self.ack_ids.len()
    }

    pub(super) fn is_full(&self, limits: &Limits) -> bool {
        self.records() >= limits.max_records || self.bytes >= limits.max_bytes
    }

    pub(super) fn deadline(&self, max_age: Duration) -> Option<StdInstant> {
        self.since.map(|since| since + max_age)
    }

    /// Take everything out as content-named objects (see the module docs).
    pub(super) fn seal(&mut self, subscription: &str) -> Result<Option<SealedBatch>, std::io::Error> {
        let Some(since) = self.since else {
            return Ok(None);
        };
        let taken = std::mem::take(self);
        let mut objects = Vec::with_capacity(taken.objects.len());
        for ((tree, day), mut lines) in taken.objects {
            lines.sort_unstable();
            lines.dedup();
            let mut hash = digest::Context::new(&digest::SHA256);
            let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
            for line in &lines {
                hash.update(line);
                encoder.write_all(line)?;
            }
            let body = encoder.finish()?;
            objects.push(SealedObject {
                path: object_path(tree, day, subscription, hash.finish().as_ref()),
                body: Bytes::from(body),
                remainder: None,
            });
        }
        Ok(Some(SealedBatch {
            objects,
            ack_ids: taken.ack_ids,
            raw_records: taken.raw_records,
            rejected: taken.rejected,
            since,
        }))
    }
}

/// `<tree>/dt=YYYY-MM-DD/<subscription>-<first 128 bits of the content hash>.ndjson.gz`.
pub(super) fn object_path(tree: Tree, day: NaiveDate, subscription: &str, sha256: &[u8]) -> Path {
    let short = &sha256[..sha256.len().min(16)];
    Path::from(format!(
        "{}/dt={}/{subscription}-{}.ndjson.gz",
        tree.as_str(),
        day.format("%Y-%m-%d"),
        hex(short)
    ))
}
