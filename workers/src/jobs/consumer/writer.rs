//! The writer: the consumer's main loop. It batches records, writes each batch to the lake in the background while
//! the next one fills, commits a batch's offsets once its objects are written, and pauses consumption when the lake
//! falls a whole batch behind.
//!
//! ```text
//!  events ─▶ batch (filling) ──full, or max age──▶ in flight: write objects ──all written──▶ commit offsets
//!                 │                                   (one at a time)
//!                 └─ full while one is in flight: pause every partition until it lands
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use object_store::ObjectStore;
use tokio::{
    sync::{mpsc, watch},
    task::{JoinError, JoinHandle},
    time::Instant,
};

use super::{
    batch::{Batch, BatchError, Commit, Incoming, Layout},
    flush::{self, GaveUp},
    kafka::{Event, KafkaClientError, RawTopic},
    metrics::Metrics,
};
use crate::{lake::record::RejectKind, retry::Backoff, telemetry::Telemetry};

/// When a batch is flushed, and how long the writer may hold up a rebalance or a shutdown.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// How long a rebalance may wait for the revoked partitions' records to reach the lake. Keep it well below
    /// `max.poll.interval.ms` (5 minutes by default), after which the group stops waiting for this member.
    pub revoke_timeout: Duration,
    /// How long the final flush after SIGTERM may take; below the pod's termination grace period.
    pub shutdown_timeout: Duration,
}

/// Commit attempts for a batch of partitions the writer keeps, a second apart and then longer (riding out a broker
/// restart): the next batch may only be written after this one is committed, so failing them all ends the process,
/// and the restart resumes from the committed offsets.
const COMMIT_ATTEMPTS: u32 = 6;
const MAX_COMMIT_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error("the lake write task failed: {0}")]
    Join(#[from] JoinError),
    #[error(
        "gave up writing partitions {partitions:?} during a rebalance but still own them; exiting so that they are \
         read again from their committed offsets"
    )]
    Abandoned { partitions: Vec<i32> },
    #[error(
        "shutdown deadline passed before partitions {partitions:?} reached the lake; they will be read again from \
         their committed offsets"
    )]
    ShutdownIncomplete { partitions: Vec<i32> },
}

/// A batch being written.
struct InFlight {
    task: JoinHandle<Result<(), GaveUp>>,
    give_up: watch::Sender<bool>,
    commits: Vec<Commit>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
    since: std::time::Instant,
}

/// What became of a batch.
enum Landed {
    Committed,
    /// Written (or not) but not committed: another member, or this one after a restart, reads it again.
    NotCommitted(Vec<i32>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnCommitError {
    /// The partitions are being revoked: whoever gets them next reads the batch again, which is safe.
    Tolerate,
    Fail,
}

pub struct Writer {
    kafka: RawTopic,
    events: mpsc::UnboundedReceiver<Event>,
    lake: Arc<dyn ObjectStore>,
    layout: Layout,
    limits: Limits,
    metrics: Metrics,
    telemetry: Telemetry,
    batch: Batch,
    in_flight: Option<InFlight>,
    paused: bool,
    assigned: BTreeSet<i32>,
    /// Lines other writers landed ahead of this one (see [`flush::Landed`]).
    landed: flush::Landed,
}

impl Writer {
    pub fn new(
        kafka: RawTopic,
        events: mpsc::UnboundedReceiver<Event>,
        lake: Arc<dyn ObjectStore>,
        layout: Layout,
        limits: Limits,
        metrics: Metrics,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            kafka,
            events,
            lake,
            layout,
            limits,
            metrics,
            telemetry,
            batch: Batch::default(),
            in_flight: None,
            paused: false,
            assigned: BTreeSet::new(),
            landed: flush::Landed::default(),
        }
    }

    /// Consume until `shutdown` completes, then flush and commit what is left and leave the group.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), WriterError> {
        let finished = match self.consume(shutdown).await {
            Ok(deadline) => self.drain(deadline).await,
            Err(err) => {
                // Whatever state led here, do not leave a write running behind the process's back.
                if let Some(flight) = self.in_flight.take() {
                    let _ = flight.give_up.send(true);
                    let _ = flight.task.await;
                }
                Err(err)
            }
        };
        let Self { kafka, events, .. } = self;
        drop(events);
        kafka.close().await;
        finished
    }

    /// The main loop; returns the shutdown deadline once the polling thread has stopped.
    async fn consume(&mut self, shutdown: impl Future<Output = ()>) -> Result<Instant, WriterError> {
        tokio::pin!(shutdown);
        let mut stopping: Option<Instant> = None;
        loop {
            let flush_at = match self.in_flight {
                None => self.batch.deadline(self.limits.max_age).map(Instant::from_std),
                Some(_) => None,
            };
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(Event::Record(record)) => self.on_record(record)?,
                    Some(Event::Assigned(partitions)) => self.on_assigned(partitions)?,
                    Some(Event::Revoked { partitions, done }) => {
                        self.on_revoked(&partitions).await?;
                        let _ = done.send(());
                    }
                    Some(Event::Stopped) | None => {
                        return Ok(stopping.unwrap_or_else(|| Instant::now() + self.limits.shutdown_timeout));
                    }
                },
                written = flush::in_flight_done(self.in_flight.as_mut().map(|flight| &mut flight.task)), if self.in_flight.is_some() => {
                    if let Some(flight) = self.in_flight.take() {
                        self.finish(flight, written, OnCommitError::Fail).await?;
                    }
                    self.flush_if_due()?;
                    self.apply_backpressure()?;
                }
                () = flush::sleep_until(flush_at), if flush_at.is_some() => {
                    self.in_flight = self.start_flush(None)?;
                }
                () = &mut shutdown, if stopping.is_none() => {
                    tracing::info!("shutting down: flushing what was read");
                    stopping = Some(Instant::now() + self.limits.shutdown_timeout);
                    self.kafka.stop_polling();
                }
            }
        }
    }

    fn on_record(&mut self, record: Incoming) -> Result<(), WriterError> {
        if !self.assigned.contains(&record.partition) {
            // Not ours (any more): it is not committed, so its owner reads it.
            tracing::warn!(
                partition = record.partition,
                offset = record.offset,
                "record of an unassigned partition"
            );
            return Ok(());
        }
        self.batch.push(&self.layout, record, std::time::Instant::now())?;
        self.flush_if_due()?;
        self.apply_backpressure()
    }

    fn on_assigned(&mut self, partitions: Vec<i32>) -> Result<(), WriterError> {
        self.assigned.extend(partitions);
        self.metrics.assigned_partitions.set(self.assigned.len() as i64);
        if self.paused {
            // New partitions start unpaused.
            self.kafka.set_paused(true)?;
        }
        Ok(())
    }

    /// Flush and commit what the revoked partitions hold before librdkafka hands them over.
    async fn on_revoked(&mut self, revoked: &[i32]) -> Result<(), WriterError> {
        let deadline = Instant::now() + self.limits.revoke_timeout;
        let mut not_committed = Vec::new();
        // The batch in flight may hold revoked partitions, and the next batch may only follow its commit: where it
        // was not committed, what came after it is dropped unwritten (rule 1 of the module docs).
        if let Some(flight) = self.in_flight.take()
            && let Landed::NotCommitted(partitions) = self.land(flight, deadline, OnCommitError::Tolerate).await?
        {
            self.batch.discard(&partitions);
            not_committed.extend(partitions);
        }
        if let Some(flight) = self.start_flush(Some(revoked))?
            && let Landed::NotCommitted(partitions) = self.land(flight, deadline, OnCommitError::Tolerate).await?
        {
            not_committed.extend(partitions);
        }
        for partition in revoked {
            self.assigned.remove(partition);
            self.metrics.lag.remove(&Metrics::partition(*partition));
        }
        self.metrics.assigned_partitions.set(self.assigned.len() as i64);
        // A partition we keep whose batch was not committed would have its next batch start past the committed
        // offset, which breaks the naming guarantee (see the module docs). Start over instead.
        let kept: Vec<i32> = not_committed.into_iter().filter(|p| !revoked.contains(p)).collect();
        if !kept.is_empty() {
            return Err(WriterError::Abandoned { partitions: kept });
        }
        self.apply_backpressure()
    }

    /// After the polling thread stopped: land the batch in flight and flush the rest, by `deadline`.
    async fn drain(&mut self, deadline: Instant) -> Result<(), WriterError> {
        let mut not_committed = Vec::new();
        if let Some(flight) = self.in_flight.take()
            && let Landed::NotCommitted(partitions) = self.land(flight, deadline, OnCommitError::Fail).await?
        {
            // As on a revoke: nothing may be written after a batch that was not committed.
            self.batch.discard(&partitions);
            not_committed.extend(partitions);
        }
        if let Some(flight) = self.start_flush(None)?
            && let Landed::NotCommitted(partitions) = self.land(flight, deadline, OnCommitError::Fail).await?
        {
            not_committed.extend(partitions);
        }
        if not_committed.is_empty() {
            tracing::info!("flushed and committed everything read; leaving the group");
            Ok(())
        } else {
            Err(WriterError::ShutdownIncomplete {
                partitions: not_committed,
            })
        }
    }

    fn flush_if_due(&mut self) -> Result<(), WriterError> {
        if self.in_flight.is_some() || self.batch.is_empty() {
            return Ok(());
        }
        let full = self.batch.is_full(self.limits.max_records, self.limits.max_bytes);
        let old = self
            .batch
            .deadline(self.limits.max_age)
            .is_some_and(|at| at <= std::time::Instant::now());
        if full || old {
            self.in_flight = self.start_flush(None)?;
        }
        Ok(())
    }

    /// Seal the batch (or only `partitions` of it) and start writing it.
    fn start_flush(&mut self, partitions: Option<&[i32]>) -> Result<Option<InFlight>, WriterError> {
        let sealed = match partitions {
            None => self.batch.seal_all(&self.layout)?,
            Some(partitions) => self.batch.seal(&self.layout, partitions)?,
        };
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let (give_up, give_up_rx) = watch::channel(false);
        let task = tokio::spawn(flush::write_objects(
            self.lake.clone(),
            sealed.objects,
            self.landed.clone(),
            give_up_rx,
            self.metrics.clone(),
            self.telemetry.clone(),
        ));
        Ok(Some(InFlight {
            task,
            give_up,
            commits: sealed.commits,
            raw_records: sealed.raw_records,
            rejected: sealed.rejected,
            since: sealed.since,
        }))
    }

    /// Wait for a batch until `deadline`, then tell it to give up and wait for its last request to end.
    async fn land(
        &mut self,
        mut flight: InFlight,
        deadline: Instant,
        policy: OnCommitError,
    ) -> Result<Landed, WriterError> {
        let written = flush::land_by(&mut flight.task, &flight.give_up, deadline).await;
        self.finish(flight, written, policy).await
    }

    /// Commit a written batch, or report it as not committed.
    async fn finish(
        &mut self,
        flight: InFlight,
        written: Result<Result<(), GaveUp>, JoinError>,
        policy: OnCommitError,
    ) -> Result<Landed, WriterError> {
        let partitions: Vec<i32> = flight.commits.iter().map(|c| c.partition).collect();
        if written?.is_err() {
            return Ok(Landed::NotCommitted(partitions));
        }
        let offsets: Vec<(i32, i64)> = flight.commits.iter().map(|c| (c.partition, c.next_offset)).collect();
        let attempts = if policy == OnCommitError::Fail {
            COMMIT_ATTEMPTS
        } else {
            1
        };
        let backoff = Backoff::new(Duration::from_secs(1), MAX_COMMIT_BACKOFF);
        for attempt in 1..=attempts {
            match self.kafka.commit(offsets.clone()).await {
                Ok(()) => {
                    self.metrics
                        .batch_landed(flight.raw_records, &flight.rejected, flight.since);
                    tracing::debug!(?offsets, records = flight.raw_records, "batch committed");
                    return Ok(Landed::Committed);
                }
                Err(err) => {
                    self.metrics.commit_errors.inc();
                    tracing::warn!(error = %err, attempt, "offset commit failed");
                    if attempt == attempts {
                        return match policy {
                            OnCommitError::Fail => Err(err.into()),
                            OnCommitError::Tolerate => Ok(Landed::NotCommitted(partitions)),
                        };
                    }
                    tokio::time::sleep(backoff.wait(attempt)).await;
                }
            }
        }
        Ok(Landed::NotCommitted(partitions))
    }

    /// Pause every partition while a full batch waits behind the one in flight; resume once it can be written.
    fn apply_backpressure(&mut self) -> Result<(), WriterError> {
        let pause = self.in_flight.is_some() && self.batch.is_full(self.limits.max_records, self.limits.max_bytes);
        if pause != self.paused {
            self.kafka.set_paused(pause)?;
            self.paused = pause;
            self.metrics.paused.set(i64::from(pause));
            if pause {
                tracing::info!(
                    buffered = self.batch.records(),
                    "lake is a batch behind: pausing consumption"
                );
            } else {
                tracing::info!("resuming consumption");
            }
        }
        Ok(())
    }
}
