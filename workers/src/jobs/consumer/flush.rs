//! Writing a sealed batch's objects to the lake, retrying until they are all written or the writer gives up.
//!
//! Failed writes are retried without limit, with backoff: an unreachable lake stalls the flush, and the writer
//! pauses consumption behind it, rather than dropping records or crashing. Only the writer can end the retries
//! (a rebalance or shutdown deadline), and it can only do so between requests: a flush never returns while one of
//! its requests is still on the wire, so nothing it sent can land after the partition has a new owner.
//!
//! Every object is create-only (GCS `ifGenerationMatch=0`, `PutMode::Create`): nothing in the lake is ever
//! overwritten. A name that is taken means another writer landed (part of) this batch first: a consumer that stalled
//! past its group session and woke up after the partition moved, or this writer's own earlier attempt whose answer
//! was lost. The existing object is read and compared line by line (a record is one line, the same whoever writes
//! it); what it already holds is not written again, and what it lacks goes into a new object named by the offset of
//! its first missing record. What the existing object holds beyond this batch (the other writer's batch was longer)
//! is remembered in [`Landed`], so that the next batches of this writer leave those lines out too instead of
//! landing them a second time under another name.

use std::{
    collections::HashMap,
    io::{Read, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};
use futures::{StreamExt, stream};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::Instant,
};

use super::{
    batch::{Remainder, SealedObject},
    metrics::Metrics,
};
use crate::{retry::Backoff, telemetry::Telemetry};

/// Objects of one batch written at the same time.
const CONCURRENT_WRITES: usize = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Lines another writer landed ahead of this one, by object stem (`<tree>/dt=D/<topic>-<partition>-`), with their
/// counts: found in an existing object beyond what this writer's batch held, and not to be written again.
pub type Landed = Arc<Mutex<HashMap<String, HashMap<Vec<u8>, usize>>>>;

/// The writer gave up before every object was written; the batch's offsets must not be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

/// Write every object, retrying failures until they succeed or `give_up` turns true.
pub async fn write_objects(
    lake: Arc<dyn ObjectStore>,
    objects: Vec<SealedObject>,
    landed: Landed,
    give_up: watch::Receiver<bool>,
    metrics: Metrics,
    telemetry: Telemetry,
) -> Result<(), GaveUp> {
    let results: Vec<Result<(), GaveUp>> = stream::iter(objects)
        .map(|object| write_one(&*lake, object, &landed, give_up.clone(), &metrics, &telemetry))
        .buffer_unordered(CONCURRENT_WRITES)
        // Collect rather than stop at the first failure: returning would drop writes that are still in flight.
        .collect()
        .await;
    results.into_iter().collect()
}

async fn write_one(
    lake: &dyn ObjectStore,
    object: SealedObject,
    landed: &Landed,
    mut give_up: watch::Receiver<bool>,
    metrics: &Metrics,
    telemetry: &Telemetry,
) -> Result<(), GaveUp> {
    let mut object = match without_landed(&object, landed) {
        Ok(Some(part)) => part,
        Ok(None) => return Ok(()),
        Err(err) => {
            // Our own gzip could not be read back (it cannot happen): write it whole rather than lose it.
            tracing::warn!(object = %object.path, error = %err, "failed to leave landed lines out of a lake object");
            object
        }
    };
    let mut delays = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF).delays();
    loop {
        if *give_up.borrow() {
            return Err(GaveUp);
        }
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let written = match lake
            .put_opts(&object.path, PutPayload::from(object.body.clone()), create)
            .await
        {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => missing_part(lake, &object, landed).await,
            Err(err) => Err(err),
        };
        match written {
            Ok(None) => {
                metrics.objects_written.inc();
                metrics.bytes_out.inc_by(object.body.len() as u64);
                telemetry.set_ready(true);
                return Ok(());
            }
            Ok(Some(rest)) => {
                tracing::warn!(object = %object.path, rest = %rest.path, "lake object exists already; writing only what it lacks");
                object = rest;
            }
            Err(err) => {
                metrics.lake_errors.inc();
                // Not ready while the lake refuses writes: consumption is (or soon will be) paused.
                telemetry.set_ready(false);
                let backoff = delays.next().unwrap_or(MAX_BACKOFF);
                tracing::warn!(object = %object.path, error = %err, retry_in = ?backoff, "failed to write lake object");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    changed = give_up.changed() => {
                        // The writer dropped its end: nobody will commit this batch.
                        if changed.is_err() {
                            return Err(GaveUp);
                        }
                    }
                }
            }
        }
    }
}

/// `object`'s name is taken: what it holds that the existing object lacks, as a new object named by the offset of
/// its first missing line; `None` when the lake holds it all already.
async fn missing_part(
    lake: &dyn ObjectStore,
    object: &SealedObject,
    landed: &Landed,
) -> object_store::Result<Option<SealedObject>> {
    let existing = lake.get(&object.path).await?.bytes().await?;
    // Content-named objects (Pub/Sub): the same name is the same content.
    let Some(remainder) = &object.remainder else {
        return Ok(None);
    };
    let generic = |source: std::io::Error| object_store::Error::Generic {
        store: "lake",
        source: Box::new(source),
    };
    let mut there = counted(lines(&existing).map_err(generic)?);
    let ours = lines(&object.body).map_err(generic)?;
    let missing = take_out(remainder, ours, &mut there);
    // What the other writer's batch held beyond ours comes next in this partition: leave it out of later batches.
    there.retain(|_, count| *count > 0);
    if !there.is_empty() {
        let mut landed = landed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = landed.entry(remainder.stem.clone()).or_default();
        for (line, count) in there {
            *known.entry(line).or_default() += count;
        }
    }
    rest(remainder, missing).map_err(generic)
}

/// `object` without the lines [`Landed`] holds for its stem; `None` when nothing is left.
fn without_landed(object: &SealedObject, landed: &Landed) -> std::io::Result<Option<SealedObject>> {
    let Some(remainder) = &object.remainder else {
        return Ok(Some(object.clone()));
    };
    let mut landed = landed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(known) = landed.get_mut(&remainder.stem) else {
        return Ok(Some(object.clone()));
    };
    let ours = lines(&object.body)?;
    let total = ours.len();
    let missing = take_out(remainder, ours, known);
    known.retain(|_, count| *count > 0);
    if known.is_empty() {
        landed.remove(&remainder.stem);
    }
    if missing.len() == total {
        return Ok(Some(object.clone()));
    }
    tracing::info!(object = %object.path, left_out = total - missing.len(), "lines already in the lake left out");
    rest(remainder, missing)
}

fn counted(lines: Vec<Vec<u8>>) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        *counts.entry(line).or_default() += 1;
    }
    counts
}

/// Our lines with their offsets, less those in `there` (each taken out of it once).
fn take_out(remainder: &Remainder, ours: Vec<Vec<u8>>, there: &mut HashMap<Vec<u8>, usize>) -> Vec<(i64, Vec<u8>)> {
    remainder
        .offsets
        .iter()
        .copied()
        .zip(ours)
        .filter(|(_, line)| match there.get_mut(line) {
            Some(count) if *count > 0 => {
                *count -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// The lines of `missing` as an object named by the first one's offset; `None` when there are none.
fn rest(remainder: &Remainder, missing: Vec<(i64, Vec<u8>)>) -> std::io::Result<Option<SealedObject>> {
    let Some((first, _)) = missing.first() else {
        return Ok(None);
    };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for (_, line) in &missing {
        encoder.write_all(line)?;
    }
    Ok(Some(SealedObject {
        path: remainder.path(*first),
        body: encoder.finish()?.into(),
        remainder: Some(Remainder {
            stem: remainder.stem.clone(),
            offsets: missing.iter().map(|(offset, _)| *offset).collect(),
        }),
    }))
}

/// The newline-terminated lines of a gzip NDJSON object.
fn lines(body: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut text = Vec::new();
    MultiGzDecoder::new(body).read_to_end(&mut text)?;
    Ok(text.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect())
}

/// The in-flight flush's result, or never when nothing is in flight (for a `select!` branch).
pub async fn in_flight_done(
    task: Option<&mut JoinHandle<Result<(), GaveUp>>>,
) -> Result<Result<(), GaveUp>, JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Sleep until `at`, or forever when there is no deadline (for a `select!` branch).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wait for a flush until `deadline`, then tell it to give up and wait for its last request to end.
pub async fn land_by(
    task: &mut JoinHandle<Result<(), GaveUp>>,
    give_up: &watch::Sender<bool>,
    deadline: Instant,
) -> Result<Result<(), GaveUp>, JoinError> {
    tokio::select! {
        written = &mut *task => written,
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!("lake writes did not finish in time; giving up on this batch");
            let _ = give_up.send(true);
            task.await
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, memory::InMemory, path::Path};

    use super::*;

    const STEM: &str = "raw/dt=2026-11-01/topic-1-";

    fn object(offsets: std::ops::Range<i64>) -> SealedObject {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        for offset in offsets.clone() {
            let _ = writeln!(encoder, "{{\"record\":{offset}}}");
        }
        let remainder = Remainder {
            stem: STEM.to_owned(),
            offsets: offsets.collect(),
        };
        SealedObject {
            path: remainder.path(remainder.offsets[0]),
            body: encoder.finish().expect("gzip").into(),
            remainder: Some(remainder),
        }
    }

    async fn offsets_in(lake: &InMemory, name: &str) -> Option<Vec<i64>> {
        let body = lake
            .get(&Path::from(format!("{STEM}{name}.ndjson.gz")))
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let lines = lines(&body).expect("gzip");
        Some(
            lines
                .iter()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_slice(l).expect("json");
                    v["record"].as_i64().expect("offset")
                })
                .collect(),
        )
    }

    /// A writer that stalled landed offsets 100..110 in one object; its successor, restarted from offset 100, cuts
    /// its batches shorter (100..105, then 105..113). Nothing may land twice under another name.
    #[tokio::test]
    async fn a_longer_object_of_another_writer_is_left_out_of_the_next_batches() {
        let lake = Arc::new(InMemory::new());
        let telemetry = Telemetry::new("test");
        let metrics = Metrics::register(&telemetry);
        let (_give_up, give_up_rx) = watch::channel(false);
        let landed = Landed::default();
        let write = |objects: Vec<SealedObject>| {
            write_objects(
                lake.clone(),
                objects,
                landed.clone(),
                give_up_rx.clone(),
                metrics.clone(),
                telemetry.clone(),
            )
        };
        write(vec![object(100..110)]).await.expect("the first writer");
        write(vec![object(100..105)]).await.expect("a batch the lake holds");
        write(vec![object(105..113)])
            .await
            .expect("a batch the lake holds in part");
        write(vec![object(113..115)]).await.expect("a batch the lake lacks");
        assert_eq!(offsets_in(&lake, "100").await, Some((100..110).collect()));
        assert_eq!(offsets_in(&lake, "105").await, None, "105..110 are in the first object");
        assert_eq!(offsets_in(&lake, "110").await, Some((110..113).collect()));
        assert_eq!(offsets_in(&lake, "113").await, Some((113..115).collect()));
        assert!(landed.lock().expect("lock").is_empty(), "nothing left to leave out");
    }
}
