//! Writing a sealed batch's objects to the lake, retrying until they are all written or the writer gives up.
//!
//! Failed writes are retried without limit, with backoff: an unreachable lake stalls the flush, and the writer
//! pauses consumption behind it, rather than dropping records or crashing. Only the writer can end the retries
//! (a rebalance or shutdown deadline), and it can only do so between requests: a flush never returns while one of
//! its requests is still on the wire, so nothing it sent can land after the partition has a new owner.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::Instant,
};

use super::{batch::SealedObject, metrics::Metrics};
use crate::telemetry::Telemetry;

/// Objects of one batch written at the same time.
const CONCURRENT_WRITES: usize = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The writer gave up before every object was written; the batch's offsets must not be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

/// Write every object, retrying failures until they succeed or `give_up` turns true.
pub async fn write_objects(
    lake: Arc<dyn ObjectStore>,
    objects: Vec<SealedObject>,
    give_up: watch::Receiver<bool>,
    metrics: Metrics,
    telemetry: Telemetry,
) -> Result<(), GaveUp> {
    let results: Vec<Result<(), GaveUp>> = stream::iter(objects)
        .map(|object| write_one(&*lake, object, give_up.clone(), &metrics, &telemetry))
        .buffer_unordered(CONCURRENT_WRITES)
        // Collect rather than stop at the first failure: returning would drop writes that are still in flight.
        .collect()
        .await;
    results.into_iter().collect()
}

async fn write_one(
    lake: &dyn ObjectStore,
    object: SealedObject,
    mut give_up: watch::Receiver<bool>,
    metrics: &Metrics,
    telemetry: &Telemetry,
) -> Result<(), GaveUp> {
    let size = object.body.len() as u64;
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *give_up.borrow() {
            return Err(GaveUp);
        }
        match lake.put(&object.path, PutPayload::from(object.body.clone())).await {
            Ok(_) => {
                metrics.objects_written.inc();
                metrics.bytes_out.inc_by(size);
                telemetry.set_ready(true);
                return Ok(());
            }
            Err(err) => {
                metrics.lake_errors.inc();
                // Not ready while the lake refuses writes: consumption is (or soon will be) paused.
                telemetry.set_ready(false);
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
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
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
