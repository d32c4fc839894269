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

use std::{
    collections::BTreeMap,
    io::Write,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant as StdInstant},
};

use bytes::Bytes;
use chrono::NaiveDate;
use chrono_tz::Tz;
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, path::Path};
use ring::digest;
use serde_json::json;
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::Instant,
};

use super::{
    batch::SealedObject,
    flush::{self, GaveUp},
    metrics::Metrics,
    writer::Limits,
};
use crate::{
    bus::pubsub::{Client, Names, PubSubError, Received},
    lake::record::{self, Classified, Origin, RejectKind, Tree, hex},
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

/// The lines pulled since the last flush and the ack ids they came with.
#[derive(Default)]
struct OpenBatch {
    objects: BTreeMap<(Tree, NaiveDate), Vec<Vec<u8>>>,
    ack_ids: Vec<String>,
    bytes: u64,
    since: Option<StdInstant>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
}

/// A batch taken out for writing.
struct SealedBatch {
    objects: Vec<SealedObject>,
    ack_ids: Vec<String>,
    raw_records: u64,
    rejected: BTreeMap<RejectKind, u64>,
    since: StdInstant,
}

impl OpenBatch {
    fn push(&mut self, line: Classified, ack_id: String, bytes: u64, now: StdInstant) {
        self.objects.entry((line.tree, line.day)).or_default().push(line.line);
        self.ack_ids.push(ack_id);
        self.bytes += bytes;
        self.since.get_or_insert(now);
        match line.reject {
            None => self.raw_records += 1,
            Some(kind) => *self.rejected.entry(kind).or_default() += 1,
        }
    }

    fn records(&self) -> usize {
        self.ack_ids.len()
    }

    fn is_full(&self, limits: &Limits) -> bool {
        self.records() >= limits.max_records || self.bytes >= limits.max_bytes
    }

    fn deadline(&self, max_age: Duration) -> Option<StdInstant> {
        self.since.map(|since| since + max_age)
    }

    /// Take everything out as content-named objects (see the module docs).
    fn seal(&mut self, subscription: &str) -> Result<Option<SealedBatch>, std::io::Error> {
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
fn object_path(tree: Tree, day: NaiveDate, subscription: &str, sha256: &[u8]) -> Path {
    let short = &sha256[..sha256.len().min(16)];
    Path::from(format!(
        "{}/dt={}/{subscription}-{}.ndjson.gz",
        tree.as_str(),
        day.format("%Y-%m-%d"),
        hex(short)
    ))
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;
    use chrono::{DateTime, Utc};

    fn message(id: &str, data: &[u8]) -> Received {
        Received {
            ack_id: format!("ack-{id}"),
            message_id: id.to_owned(),
            data: data.to_vec(),
            attributes: BTreeMap::new(),
            publish_time: DateTime::parse_from_rfc3339("2026-11-03T20:00:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    fn tweet(id: u64, created_at: &str) -> Vec<u8> {
        format!(
            r#"{{"tweet":{{"id":"{id}","text":"beli saham","created_at":"{created_at}"}},"author_username":"budi"}}"#
        )
        .into_bytes()
    }

    fn sealed(messages: &[Received]) -> SealedBatch {
        let mut batch = OpenBatch::default();
        for m in messages {
            let line = classify(m, "cilvest-demo-lake", chrono_tz::Asia::Jakarta);
            batch.push(line, m.ack_id.clone(), m.data.len() as u64, StdInstant::now());
        }
        batch.seal("cilvest-demo-lake").expect("seal").expect("not empty")
    }

    fn names(batch: &SealedBatch) -> Vec<String> {
        let mut names: Vec<String> = batch.objects.iter().map(|o| o.path.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn objects_are_named_by_content_so_a_redelivered_batch_overwrites_itself() {
        let a = message("1", &tweet(1, "2026-11-01T10:00:00Z"));
        // 17:30 UTC is the next day in Jakarta.
        let b = message("2", &tweet(2, "2026-11-01T17:30:00Z"));
        let c = message("3", &tweet(3, "2026-11-01T11:00:00Z"));
        let bad = message("4", b"not json");
        let first = sealed(&[a.clone(), b.clone(), c.clone(), bad.clone()]);
        assert_eq!(first.ack_ids, ["ack-1", "ack-2", "ack-3", "ack-4"]);
        assert_eq!((first.raw_records, first.rejected.get("json").copied()), (3, Some(1)));
        let first_names = names(&first);
        assert_eq!(first_names.len(), 3);
        assert!(first_names[0].starts_with("raw/dt=2026-11-01/cilvest-demo-lake-"));
        assert!(first_names[1].starts_with("raw/dt=2026-11-02/cilvest-demo-lake-"));
        assert!(first_names[2].starts_with("rejected/dt=2026-11-04/cilvest-demo-lake-"));
        assert!(first_names[0].ends_with(".ndjson.gz"));
        // The same messages in another order (and one delivered twice) make the same objects.
        let again = sealed(&[c.clone(), bad, b.clone(), a.clone(), c.clone()]);
        assert_eq!(names(&again), first_names);
        // A different set of messages for a day (only `a` of day 1's `a` and `c`) never reuses a name.
        let other = sealed(&[a]);
        assert_ne!(names(&other)[0], first_names[0]);

        let day1 = first
            .objects
            .iter()
            .find(|o| o.path.as_ref().starts_with("raw/dt=2026-11-01"))
            .expect("day 1");
        let mut text = String::new();
        GzDecoder::new(&day1.body[..]).read_to_string(&mut text).expect("gzip");
        assert_eq!(text.lines().count(), 2);
        let rejected = first
            .objects
            .iter()
            .find(|o| o.path.as_ref().starts_with("rejected/"))
            .expect("rejected");
        let mut text = String::new();
        GzDecoder::new(&rejected.body[..])
            .read_to_string(&mut text)
            .expect("gzip");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(
            (line["message_id"].as_str(), line["record"].as_str()),
            (Some("4"), Some("not json"))
        );
    }

    #[test]
    fn an_empty_batch_seals_to_nothing_and_backoff_grows() {
        assert!(OpenBatch::default().seal("s").expect("seal").is_none());
        assert_eq!(pull_backoff(0), Duration::ZERO);
        assert!(pull_backoff(2) > pull_backoff(1));
        // The cap, with the one backoff's equal jitter.
        assert!(pull_backoff(40) <= MAX_PULL_BACKOFF && pull_backoff(40) >= MAX_PULL_BACKOFF / 2);
    }
}
