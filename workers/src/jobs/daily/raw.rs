//! Reading one day of the lake's raw tree: every `raw/dt=D/` object, gzip NDJSON (`.ndjson.gz`, what the consumer
//! writes) or plain NDJSON (`.ndjson`).

use std::{
    io::{BufRead, BufReader},
    sync::Arc,
};

use bytes::Bytes;
use chrono::NaiveDate;
use flate2::read::MultiGzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use super::DailyError;
use crate::transform::{Day, Rules};

/// Objects fetched at once: a day of consumer flushes is thousands of small objects, and one GET at a time would
/// spend minutes waiting on GCS round trips.
const CONCURRENT_READS: usize = 16;

/// `raw/dt=YYYY-MM-DD`, the folder of one day.
pub fn day_prefix(date: NaiveDate) -> Path {
    Path::from(format!("raw/dt={date}"))
}

/// The day's objects in name order. Objects of other kinds (markers, temporary files) are skipped with a warning.
async fn day_objects(lake: &Arc<dyn ObjectStore>, date: NaiveDate) -> Result<Vec<Path>, DailyError> {
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
    Ok(paths)
}

/// One object's bytes as stored (gzip or not).
async fn fetch(lake: &Arc<dyn ObjectStore>, path: Path) -> Result<(Path, Bytes), DailyError> {
    let failed = |source| DailyError::Read {
        path: path.to_string(),
        source,
    };
    let body = lake.get(&path).await.map_err(failed)?.bytes().await.map_err(failed)?;
    Ok((path, body))
}

/// One object through the transform: decompressed as a stream, every line fed to a day of its own.
fn transform_object(rules: Rules, date: NaiveDate, path: &Path, body: &[u8]) -> Result<Day, DailyError> {
    let mut day = Day::new(rules, date);
    let fed = if path.as_ref().ends_with(".gz") {
        // Multi-member: concatenated gzip streams are one valid file.
        feed(&mut day, BufReader::with_capacity(64 * 1024, MultiGzDecoder::new(body)))
    } else {
        feed(&mut day, body)
    };
    // Only decompression can fail: reading a plain body from memory cannot.
    fed.map_err(|source| DailyError::Gzip {
        path: path.to_string(),
        source,
    })?;
    Ok(day)
}

/// Read and transform day `date` as its objects arrive: up to [`CONCURRENT_READS`] GETs in flight, and each object
/// decompressed and fed to a day of its own on a blocking thread, one per core at a time, then merged into the
/// result (which does not depend on the order). Memory holds the kept rows, the compressed objects in flight and one
/// decompressed object per core, never the whole decompressed day. A corrupt gzip object fails the run rather than
/// silently losing its tweets. Returns the day and how many objects it read.
pub async fn transform_day(
    lake: &Arc<dyn ObjectStore>,
    rules: &Rules,
    date: NaiveDate,
) -> Result<(Day, u64), DailyError> {
    let paths = day_objects(lake, date).await?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut parts = futures::stream::iter(paths)
        .map(|path| fetch(lake, path))
        .buffered(CONCURRENT_READS)
        .map_ok(|(path, body)| {
            let rules = rules.clone();
            async move {
                let name = path.to_string();
                tokio::task::spawn_blocking(move || transform_object(rules, date, &path, &body))
                    .await
                    .map_err(|source| DailyError::Transform { path: name, source })?
            }
        })
        .try_buffer_unordered(cores);
    let mut day = Day::new(rules.clone(), date);
    let mut objects = 0;
    while let Some(part) = parts.try_next().await? {
        day.merge(part);
        objects += 1;
    }
    Ok((day, objects))
}

/// Feed every line of an NDJSON body to the day, one line in memory at a time (a whole decompressed object, a
/// megabyte or more per object and thread, left the allocator's heaps fragmented on a big day). Lines end at `\n`;
/// a `\r` before it is dropped.
fn feed(day: &mut Day, mut body: impl BufRead) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if body.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        day.push_line(text.strip_suffix(b"\r").unwrap_or(text));
    }
}
