//! Reading one day of the lake's raw tree: every `raw/dt=D/` object, gzip NDJSON (`.ndjson.gz`, what the consumer
//! writes) or plain NDJSON (`.ndjson`).

use std::{io::Read, sync::Arc};

use bytes::Bytes;
use chrono::NaiveDate;
use flate2::read::MultiGzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use super::DailyError;
use crate::transform::Day;

/// Objects fetched at once: a day of consumer flushes is thousands of small objects, and one GET at a time would
/// spend minutes waiting on GCS round trips.
const CONCURRENT_READS: usize = 16;

/// `raw/dt=YYYY-MM-DD`, the folder of one day.
pub fn day_prefix(date: NaiveDate) -> Path {
    Path::from(format!("raw/dt={date}"))
}

/// The day's objects, decompressed, in name order. Objects of other kinds (markers, temporary files) are skipped
/// with a warning. A corrupt gzip object fails the run rather than silently losing its tweets.
pub async fn read_day(lake: &Arc<dyn ObjectStore>, date: NaiveDate) -> Result<Vec<(Path, Bytes)>, DailyError> {
    let prefix = day_prefix(date);
    let mut paths = crate::lake::list_paths(lake.as_ref(), &prefix)
        .await
        .map_err(|source| DailyError::List {
            prefix: prefix.to_string(),
            source,
        })?;
    paths.sort();
    paths.retain(|path| {
        let name = path.as_ref();
        let known = name.ends_with(".ndjson.gz") || name.ends_with(".ndjson");
        if !known {
            tracing::warn!(object = %path, "skipping an object that is neither .ndjson nor .ndjson.gz");
        }
        known
    });
    futures::stream::iter(paths)
        .map(|path| async move {
            let body = lake
                .get(&path)
                .await
                .map_err(|source| DailyError::Read {
                    path: path.to_string(),
                    source,
                })?
                .bytes()
                .await
                .map_err(|source| DailyError::Read {
                    path: path.to_string(),
                    source,
                })?;
            let lines = if path.as_ref().ends_with(".gz") {
                gunzip(&body).map_err(|source| DailyError::Gzip {
                    path: path.to_string(),
                    source,
                })?
            } else {
                body
            };
            Ok((path, lines))
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await
}

fn gunzip(body: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(body.len() * 6);
    // Multi-member: concatenated gzip streams are one valid file.
    MultiGzDecoder::new(body).read_to_end(&mut out)?;
    Ok(Bytes::from(out))
}

/// Feed every line of an NDJSON body to the day. Lines end at `\n`; a `\r` before it is dropped.
pub fn feed(day: &mut Day, body: &[u8]) {
    for line in body.split(|&b| b == b'\n') {
        day.push_line(line.strip_suffix(b"\r").unwrap_or(line));
    }
}
