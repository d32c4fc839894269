//! Kafka for the producer: the idempotent producer that writes tweets to the raw topic. The reader that finds the
//! newest tweet id already there, which is where a restarted producer resumes, is [`super::resume`].
//!
//! Resuming from "the newest id on the topic" is only safe if every older tweet of the same stream reached the
//! topic too. The publisher guarantees that:
//!
//! ```text
//!  tweets, oldest first ─▶ chunk 1 ─▶ partition p   (all delivered before chunk 2 is sent)
//!                        ─▶ chunk 2 ─▶ partition p+1 …
//! ```
//! Within one partition the idempotent producer keeps order (the broker rejects out-of-sequence batches), so if
//! the process dies mid-chunk what reached the topic is a prefix of the chunk, oldest first. The newest id on the
//! topic therefore never jumps over a tweet that is missing. Chunks rotate over the partitions, so consumers still
//! share the load; the record key stays the tweet id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use rdkafka::{
    ClientConfig, ClientContext,
    consumer::ConsumerContext,
    error::KafkaError,
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
    util::Timeout,
};

use super::brokers::Brokers;
use crate::retry::Backoff;

/// A client error seen again within this time is logged at debug level only.
const REPEATED_ERROR_QUIET: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("failed to create the kafka {role} for {bootstrap}: {source}")]
    Client {
        role: &'static str,
        bootstrap: String,
        source: KafkaError,
    },
    #[error("failed to read kafka metadata of topic {topic}: {source}")]
    Metadata { topic: String, source: KafkaError },
    #[error("kafka topic {topic} does not exist: the operator creates it from the pipeline")]
    TopicMissing { topic: String },
    #[error("failed to read the offsets of {topic} partition {partition}: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("failed to read the last records of topic {topic}: {source}")]
    Tail { topic: String, source: KafkaError },
    #[error("timed out reading the last records of topic {topic} after {timeout:?}")]
    TailTimeout { topic: String, timeout: Duration },
    #[error("failed to deliver tweet {id} to topic {topic}: {source}")]
    Delivery { topic: String, id: u64, source: KafkaError },
    #[error("the kafka producer for topic {topic} failed for good: {reason}")]
    Fatal { topic: String, reason: String },
    #[error("the kafka reader task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "kafka refused this worker: {reason} (check its KafkaUser, the user's Secret, its ACLs and the cluster CA)"
    )]
    Refused { reason: String },
}

impl BusError {
    /// Low-cardinality category, used as the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Client { .. } => "client",
            Self::Metadata { .. } | Self::Watermarks { .. } => "metadata",
            Self::TopicMissing { .. } => "topic_missing",
            Self::Tail { .. } | Self::TailTimeout { .. } | Self::Task(_) => "tail",
            Self::Delivery { .. } | Self::Fatal { .. } => "delivery",
            Self::Refused { .. } => "refused",
        }
    }

    /// Kafka said no to who the worker is or to what it asked: waiting will not help, a person must act.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// Whether a client error means the broker refused the worker's identity or rights, rather than being away.
pub(super) fn is_refusal(error: &KafkaError, reason: &str) -> bool {
    match error.rdkafka_error_code() {
        // A listener that wants a client certificate closes the handshake with a TLS alert: a transport failure.
        Some(RDKafkaErrorCode::BrokerTransportFailure) => reason.contains("certificate"),
        Some(code) => refuses(code),
        None => false,
    }
}

fn refuses(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        Authentication
            | SaslAuthenticationFailed
            | SSL
            | TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | ClusterAuthorizationFailed
    )
}

/// librdkafka reports "all brokers are down" every few hundred milliseconds during an outage, which the default
/// context logs at ERROR each time. The producer waits outages out, so say it once per kind of error every 30 s.
#[derive(Default)]
pub struct QuietContext {
    last_logged: Mutex<HashMap<String, Instant>>,
    /// The last refusal of the worker's credentials or rights, which the caller reports instead of a timeout;
    /// shared, because librdkafka keeps the context out of reach once a producer wraps it.
    refused: Arc<Mutex<Option<String>>>,
}

impl QuietContext {
    /// What the broker last refused, if it refused anything.
    pub fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_refusal(&error, reason) {
            *self.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(format!("{error}: {reason}"));
        }
        let kind = format!("{:?}", error.rdkafka_error_code());
        let now = Instant::now();
        let repeated = {
            let mut last_logged = self.last_logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match last_logged.get(&kind) {
                Some(at) if now.duration_since(*at) < REPEATED_ERROR_QUIET => true,
                _ => {
                    last_logged.insert(kind, now);
                    false
                }
            }
        };
        if repeated {
            tracing::debug!(error = %error, reason, "kafka client error");
        } else {
            tracing::warn!(error = %error, reason, "kafka client error; the client keeps retrying");
        }
    }
}

impl ConsumerContext for QuietContext {}

/// The producer's client settings: idempotent with `acks=all`, so a retried send never duplicates a record and a
/// delivery report means every in-sync replica has it.
pub fn producer_config(brokers: &Brokers) -> ClientConfig {
    let mut config = brokers.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Delivery reports wait through a broker restart instead of failing after a few seconds.
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("client.id", "cilvest-producer");
    config
}

/// One record for the raw topic: key = tweet id, value = the JSON envelope.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub value: Vec<u8>,
}

/// What the publisher exposes on `/metrics`.
#[derive(Clone, Default)]
pub struct BusMetrics {
    published: Counter,
    delivery_failures: Counter,
    newest_id_timestamp: Gauge,
}

impl BusMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "records_published",
            "Tweets whose delivery to the raw topic Kafka confirmed",
            self.published.clone(),
        );
        registry.register(
            "delivery_failures",
            "Records Kafka failed to take; they are sent again",
            self.delivery_failures.clone(),
        );
        registry.register(
            "newest_tweet_timestamp_seconds",
            "Creation time of the newest tweet on the raw topic, from its id",
            self.newest_id_timestamp.clone(),
        );
    }

    /// Records delivered so far (for tests and logs).
    pub fn published(&self) -> u64 {
        self.published.get()
    }

    /// Count `n` records the bus confirmed (the Pub/Sub publisher's; Kafka's are counted per delivery report).
    pub fn count_published(&self, n: u64) {
        self.published.inc_by(n);
    }

    /// Count `n` records the bus failed to take, which are sent again.
    pub fn count_delivery_failures(&self, n: u64) {
        self.delivery_failures.inc_by(n);
    }

    pub fn set_newest(&self, id: u64) {
        if let Some(time) = crate::tweet::snowflake_time(id) {
            self.newest_id_timestamp.set(time.timestamp());
        }
    }
}

/// Writes tweets to the raw topic in id order, one partition per chunk (see the module docs).
pub struct Publisher {
    producer: FutureProducer<QuietContext>,
    refused: Arc<Mutex<Option<String>>>,
    topic: String,
    partitions: i32,
    next_partition: i32,
    chunk_size: usize,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: BusMetrics,
}

impl Publisher {
    /// A publisher writing to partition 0 until [`Publisher::refresh_partitions`] learns the partition count.
    pub fn new(brokers: &Brokers, topic: &str, chunk_size: usize, metrics: BusMetrics) -> Result<Self, BusError> {
        let context = QuietContext::default();
        let refused = context.refused.clone();
        let producer = producer_config(brokers)
            .create_with_context(context)
            .map_err(|source| BusError::Client {
                role: "producer",
                bootstrap: brokers.bootstrap.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            refused,
            topic: topic.to_owned(),
            partitions: 1,
            // Start where the previous process is unlikely to have stopped, so restarts spread over partitions.
            next_partition: (std::process::id() % 1024) as i32,
            chunk_size: chunk_size.max(1),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            metrics,
        })
    }

    /// Learn the topic's partition count, which may grow while the producer runs. On failure (Kafka is
    /// restarting, say) the last known count stays: any partition is as good as another for correctness.
    pub async fn refresh_partitions(&mut self) {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map_or(0, |t| t.partitions().len() as i32)
                })
        })
        .await;
        match fetched {
            Ok(Ok(partitions)) if partitions > 0 => {
                if partitions != self.partitions {
                    tracing::info!(topic = %self.topic, partitions, "raw topic partitions");
                    self.partitions = partitions;
                }
            }
            Ok(Ok(_)) => tracing::warn!(topic = %self.topic, "kafka metadata lists no partitions for the raw topic"),
            Ok(Err(error)) => tracing::warn!(topic = %self.topic, error = %error, "failed to read kafka metadata"),
            Err(error) => tracing::warn!(error = %error, "the kafka metadata task failed"),
        }
    }

    /// Deliver `records` (oldest first). Returns once Kafka confirmed every one; failed records are sent again,
    /// in order, until they are taken. Fails only when the producer itself is broken beyond repair.
    pub async fn publish(&mut self, records: &[Record]) -> Result<(), BusError> {
        for chunk in records.chunks(self.chunk_size) {
            let partition = self.next_partition % self.partitions;
            self.next_partition = (partition + 1) % self.partitions;
            let mut pending: Vec<&Record> = chunk.iter().collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let failed = self.send_in_order(partition, &pending).await;
                if failed.is_empty() {
                    break;
                }
                // An idempotent producer that lost track of its sequence numbers refuses every further send.
                // Ending the process is the way out: a new one resumes from the topic.
                // Without `Write` on a topic, the idempotent producer's id is refused (cluster authorization): fatal.
                if let Some((code, reason)) = self.producer.client().fatal_error() {
                    let reason = format!("{code:?}: {reason}");
                    return Err(match refuses(code) {
                        true => BusError::Refused { reason },
                        false => BusError::Fatal {
                            topic: self.topic.clone(),
                            reason,
                        },
                    });
                }
                // Refused rights do not come back by sending again; what was not taken is read again after a
                // restart, from the resume point on the topic.
                if let Some((_, error)) = failed.iter().find(|(_, error)| is_refusal(error, "")) {
                    return Err(BusError::Refused {
                        reason: format!("{error} on topic {}", self.topic),
                    });
                }
                attempt += 1;
                let wait = Backoff::new(self.retry_initial, self.retry_max).wait(attempt);
                let (record, error) = &failed[0];
                tracing::warn!(
                    error = %BusError::Delivery { topic: self.topic.clone(), id: record.id, source: error.clone() },
                    failed = failed.len(),
                    retry_in = ?wait,
                    "kafka did not take every record; sending the rest again"
                );
                self.metrics.delivery_failures.inc_by(failed.len() as u64);
                // Usually the failures are the tail of the chunk (a partition's queue fails in order). If one in the
                // middle failed alone, resending it puts it after newer records; the resume reader looks at the
                // last few records of each partition, not only the last, for that case.
                pending = failed.into_iter().map(|(record, _)| record).collect();
                tokio::time::sleep(wait).await;
            }
            if let Some(last) = chunk.last() {
                self.metrics.set_newest(last.id);
            }
        }
        Ok(())
    }

    /// Enqueue every record for one partition, then wait for all delivery reports. Returns the failures.
    async fn send_in_order<'r>(&self, partition: i32, records: &[&'r Record]) -> Vec<(&'r Record, KafkaError)> {
        let mut deliveries = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for record in records {
            let key = record.id.to_string();
            let mut future_record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&record.value)
                .partition(partition);
            loop {
                match self.producer.send_result(future_record) {
                    Ok(delivery) => {
                        deliveries.push((*record, delivery));
                        break;
                    }
                    // The local queue is full: let librdkafka drain it, then try the same record again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        future_record = returned;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err((error, _)) => {
                        failed.push((*record, error));
                        break;
                    }
                }
            }
        }
        for (record, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    self.metrics.published.inc();
                }
                Ok(Err((error, _))) => failed.push((record, error)),
                Err(_canceled) => failed.push((record, KafkaError::Canceled)),
            }
        }
        failed.sort_by_key(|(record, _)| record.id);
        failed
    }

    /// What the brokers last refused of this producer's credentials or rights, if anything. The producer's client
    /// is polled all the time, so it hears of a refusal even while another client of the worker is waiting.
    pub fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Wait for outstanding deliveries before exit.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %error, "failed to flush the kafka producer before exit");
        }
    }
}
