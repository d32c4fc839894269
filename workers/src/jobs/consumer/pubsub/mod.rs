//! The consumer on a Pub/Sub subscription: pulls messages, batches them into the same lake objects as the Kafka
//! consumer (gzip NDJSON under `raw/dt=D/` and `rejected/dt=D/`, by the tweet's local day), and acknowledges a
//! batch's messages only after every object of the batch is written.
//!
//! ```text
//!  subscription ──pull──▶ open batch ──full, or max age──▶ in flight: write objects ──all written──▶ acknowledge
//!        ▲                    │  (one at a time; pulling stops while a full batch waits behind it)
//!        └── modifyAckDeadline every ackDeadline/3 for every message held, open or in flight
//! ```
//!
//! # At least once in the lake, exactly once in the marts
//!
//! Pub/Sub has no offsets, so the Kafka consumer's "name objects by their first offset" cannot apply. Instead an
//! object is named by the SHA-256 of its content: its lines sorted and de-duplicated,
//! `<tree>/dt=D/<subscription>-<hash>.ndjson.gz`. Writing the same messages again therefore overwrites the same
//! object with the same bytes, and an object is never replaced by a different one, so nothing written can be
//! lost. A message is acknowledged only after its object is written, so every published message reaches the lake.
//! It may reach it twice: when a consumer dies (or an acknowledgement fails) after writing, Pub/Sub delivers the
//! messages again, usually batched differently, and they land in a second object. The same happens when the
//! producer publishes a tweet twice. The daily transform keeps one copy per tweet id (rule 3 of the transform
//! semantics), so curated objects, BigQuery, the marts and the search index hold each tweet exactly once.
//!
//! Subscriptions with exactly-once delivery would not change this: a crash between the write and the
//! acknowledgement still redelivers. The emulator ignores dead-letter policies and filters; neither is used.

mod open;
#[cfg(test)]
mod tests;

use open::OpenBatch;

use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant as StdInstant},
};

use chrono_tz::Tz;
use object_store::ObjectStore;
use serde_json::json;
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::Instant,
};

use super::{
    flush::{self, GaveUp},
    metrics::Metrics,
    writer::Limits,
};
use crate::{
    bus::pubsub::{Client, Names, PubSubError, Received},
    lake::record::{self, Classified, Origin, RejectKind},
    retry::Backoff,
    telemetry::Telemetry,
};

/// How long one pull may stay open: longer than Pub/Sub holds an empty pull (see [`Client::pull`]).
const PULL_WAIT: Duration = Duration::from_secs(120);
/// Most messages asked for in one pull.
const MAX_PULL: usize = 1000;
const ACK_ATTEMPTS: u32 = 3;
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(30);

/// Where to pull from.
#[derive(Clone, Debug)]
pub struct PubSubSettings {
    pub names: Names,
    /// The subscription's ack deadline, which the consumer keeps extending by while it holds a message.
    pub ack_deadline_seconds: i32,
    /// Create the topic and the subscription at start when they are missing.
    pub create: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PubSubConsumerError {
    #[error(transparent)]
    PubSub(#[from] PubSubError),
    #[error("failed to compress a lake object: {0}")]
    Compress(std::io::Error),
    #[error("the lake write task failed: {0}")]
    Join(#[from] JoinError),
    #[error(
        "shutdown deadline passed before {messages} messages reached the lake; pub/sub delivers them again after \
         their ack deadline"
    )]
    ShutdownIncomplete { messages: usize },
}

/// Tree, day and NDJSON line of a message (see [`crate::lake::record`]); like the Kafka consumer's, these depend on
/// the message alone, so a redelivered message becomes the same line. A rejected message's day is its publish
/// time's.
fn classify(message: &Received, subscription: &str, time_zone: Tz) -> Classified {
    record::classify(Some(&message.data), time_zone, || {
        let mut fields = serde_json::Map::new();
        fields.insert("subscription".to_owned(), json!(subscription));
        fields.insert("message_id".to_owned(), json!(message.message_id));
        // The emulator and Pub/Sub always stamp a publish time; the epoch keeps a missing one deterministic.
        Origin {
            fields,
            at: message.publish_time.unwrap_or_default(),
        }
    })
}

struct InFlight {
    task: JoinHandle<Result<(), GaveUp>>,
    give_up: watch::Sender<bool>,
    ack_ids: Vec<String>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
    since: StdInstant,
}

type Pull = Pin<Box<dyn Future<Output = Result<Vec<Received>, PubSubError>> + Send>>;

/// The Pub/Sub consumer's state.
pub struct Consumer {
    client: Client,
    settings: PubSubSettings,
    lake: Arc<dyn ObjectStore>,
    time_zone: Tz,
    limits: Limits,
    metrics: Metrics,
    telemetry: Telemetry,
    open: OpenBatch,
    in_flight: Option<InFlight>,
    paused: bool,
}

impl Consumer {
    pub fn new(
        client: Client,
        settings: PubSubSettings,
        lake: Arc<dyn ObjectStore>,
        time_zone: Tz,
        limits: Limits,
        metrics: Metrics,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            client,
            settings,
            lake,
            time_zone,
            limits,
            metrics,
            telemetry,
            open: OpenBatch::default(),
            in_flight: None,
            paused: false,
        }
    }

    /// Consume until `shutdown` completes, then write and acknowledge what was pulled.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), PubSubConsumerError> {
        if self.settings.create {
            self.create_with_retry().await;
        }
        let result = self.consume(shutdown).await;
        let deadline = Instant::now() + self.limits.shutdown_timeout;
        match result {
            Ok(()) => self.drain(deadline).await,
            Err(err) => {
                if let Some(flight) = self.in_flight.take() {
                    let _ = flight.give_up.send(true);
                    let _ = flight.task.await;
                }
                Err(err)
            }
        }
    }

    /// Create the topic and the subscription, retrying transient failures; a permanent one (no permission to
    /// create, as when they are managed elsewhere) is logged and consuming goes on.
    async fn create_with_retry(&self) {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=5 {
            match self
                .client
                .ensure(&self.settings.names, self.settings.ack_deadline_seconds)
                .await
            {
                Ok(()) => return,
                Err(err) if err.is_transient() && attempt < 5 => {
                    tracing::warn!(error = %err, retry_in = ?wait, "failed to create the pub/sub subscription");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not create the pub/sub topic or subscription; pulling anyway");
                    return;
                }
            }
        }
    }

    async fn consume(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), PubSubConsumerError> {
        tokio::pin!(shutdown);
        let mut pull: Option<Pull> = None;
        let mut pull_failures = 0u32;
        let extend_every = Duration::from_secs(
            u64::try_from(self.settings.ack_deadline_seconds / 3)
                .unwrap_or(3)
                .max(1),
        );
        let mut extend = tokio::time::interval(extend_every);
        extend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.room();
            if pull.is_none() && room > 0 {
                let (client, names) = (self.client.clone(), self.settings.names.clone());
                let delay = pull_backoff(pull_failures);
                pull = Some(Box::pin(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    client.pull(&names, room, PULL_WAIT).await
                }));
            }
            self.set_paused(room == 0);
            let flush_at = match self.in_flight {
                None => self.open.deadline(self.limits.max_age).map(Instant::from_std),
                Some(_) => None,
            };
            tokio::select! {
                pulled = pending_pull(&mut pull), if pull.is_some() => {
                    pull = None;
                    match pulled {
                        Ok(messages) => {
                            pull_failures = 0;
                            self.on_messages(messages);
                            self.flush_if_due()?;
                        }
                        Err(err) => {
                            pull_failures += 1;
                            tracing::warn!(error = %err, failures = pull_failures, "failed to pull from pub/sub");
                        }
                    }
                }
                written = flush::in_flight_done(self.in_flight.as_mut().map(|flight| &mut flight.task)), if self.in_flight.is_some() => {
                    if let Some(flight) = self.in_flight.take() {
                        self.finish(flight, written?).await;
                    }
                    self.flush_if_due()?;
                }
                () = flush::sleep_until(flush_at), if flush_at.is_some() => {
                    self.start_flush()?;
                }
                _ = extend.tick() => self.extend_deadlines().await,
                () = &mut shutdown => {
                    // A pull still waiting is dropped: whatever it was about to deliver comes again after its ack
                    // deadline, to this subscription's next consumer.
                    tracing::info!("shutting down: writing what was pulled");
                    return Ok(());
                }
            }
        }
    }

    /// How many more messages to pull now: none while a full batch waits behind the one being written.
    fn room(&self) -> usize {
        if self.in_flight.is_some() && self.open.is_full(&self.limits) {
            return 0;
        }
        self.limits
            .max_records
            .saturating_sub(self.open.records())
            .clamp(1, MAX_PULL)
    }

    fn set_paused(&mut self, paused: bool) {
        if paused != self.paused {
            self.paused = paused;
            self.metrics.paused.set(i64::from(paused));
            if paused {
                tracing::info!(buffered = self.open.records(), "lake is a batch behind: pausing pulls");
            } else {
                tracing::info!("resuming pulls");
            }
        }
    }

    fn on_messages(&mut self, messages: Vec<Received>) {
        let now = StdInstant::now();
        let subscription = self.settings.names.subscription.clone();
        for message in messages {
            let bytes = message.data.len() as u64;
            self.metrics.records_in.inc();
            self.metrics.bytes_in.inc_by(bytes);
            let line = classify(&message, &subscription, self.time_zone);
            self.open.push(line, message.ack_id, bytes, now);
        }
    }

    fn flush_if_due(&mut self) -> Result<(), PubSubConsumerError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let old = self
            .open
            .deadline(self.limits.max_age)
            .is_some_and(|at| at <= StdInstant::now());
        if self.open.is_full(&self.limits) || old {
            self.start_flush()?;
        }
        Ok(())
    }

    fn start_flush(&mut self) -> Result<(), PubSubConsumerError> {
        let Some(sealed) = self
            .open
            .seal(&self.settings.names.subscription)
            .map_err(PubSubConsumerError::Compress)?
        else {
            return Ok(());
        };
        let (give_up, give_up_rx) = watch::channel(false);
        let task = tokio::spawn(flush::write_objects(
            self.lake.clone(),
            sealed.objects,
            // Pub/Sub objects are named by their content: a taken name is the same content, nothing to carry.
            flush::Landed::default(),
            give_up_rx,
            self.metrics.clone(),
            self.telemetry.clone(),
        ));
        self.in_flight = Some(InFlight {
            task,
            give_up,
            ack_ids: sealed.ack_ids,
            raw_records: sealed.raw_records,
            rejected: sealed.rejected,
            since: sealed.since,
        });
        Ok(())
    }

    /// Keep Pub/Sub from handing held messages to someone else while their objects are not written yet.
    async fn extend_deadlines(&self) {
        let mut held: Vec<String> = self.open.ack_ids.clone();
        if let Some(flight) = &self.in_flight {
            held.extend(flight.ack_ids.iter().cloned());
        }
        if held.is_empty() {
            return;
        }
        if let Err(err) = self
            .client
            .modify_ack_deadline(&self.settings.names, &held, self.settings.ack_deadline_seconds)
            .await
        {
            // Messages whose deadline passes are delivered again; the lake may then hold them twice.
            tracing::warn!(error = %err, messages = held.len(), "failed to extend pub/sub ack deadlines");
        }
    }

    /// Acknowledge a written batch, or hand an unwritten one back for redelivery.
    async fn finish(&mut self, flight: InFlight, written: Result<(), GaveUp>) {
        if written.is_err() {
            self.nack(&flight.ack_ids).await;
            return;
        }
        let backoff = Backoff::new(Duration::from_millis(500), MAX_PULL_BACKOFF);
        for attempt in 1..=ACK_ATTEMPTS {
            match self.client.acknowledge(&self.settings.names, &flight.ack_ids).await {
                Ok(()) => break,
                Err(err) => {
                    self.metrics.commit_errors.inc();
                    tracing::warn!(error = %err, attempt, "failed to acknowledge written messages");
                    if attempt == ACK_ATTEMPTS {
                        // Written but not acknowledged: they come again and land in the lake a second time.
                        break;
                    }
                    tokio::time::sleep(backoff.wait(attempt)).await;
                }
            }
        }
        self.metrics
            .batch_landed(flight.raw_records, &flight.rejected, flight.since);
        tracing::debug!(messages = flight.ack_ids.len(), "batch written and acknowledged");
    }

    async fn nack(&self, ack_ids: &[String]) {
        if ack_ids.is_empty() {
            return;
        }
        if let Err(err) = self.client.modify_ack_deadline(&self.settings.names, ack_ids, 0).await {
            tracing::warn!(error = %err, "failed to hand messages back; they come again after their ack deadline");
        }
    }

    /// Write and acknowledge the batch in flight and what is left, by `deadline`.
    async fn drain(&mut self, deadline: Instant) -> Result<(), PubSubConsumerError> {
        let mut unwritten = 0;
        for _ in 0..2 {
            if self.in_flight.is_none() {
                self.start_flush()?;
            }
            let Some(mut flight) = self.in_flight.take() else {
                break;
            };
            let written = flush::land_by(&mut flight.task, &flight.give_up, deadline).await?;
            if written.is_err() {
                unwritten += flight.ack_ids.len();
            }
            self.finish(flight, written).await;
        }
        if unwritten == 0 {
            tracing::info!("wrote and acknowledged everything pulled");
            Ok(())
        } else {
            Err(PubSubConsumerError::ShutdownIncomplete { messages: unwritten })
        }
    }
}

fn pull_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Backoff::new(Duration::from_millis(500), MAX_PULL_BACKOFF).wait(failures)
}

async fn pending_pull(pull: &mut Option<Pull>) -> Result<Vec<Received>, PubSubError> {
    match pull {
        Some(pull) => pull.await,
        None => std::future::pending().await,
    }
}
