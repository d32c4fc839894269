//! The consumer's Kafka side: a group member on the raw topic, polled by one dedicated thread that turns records and
//! rebalances into [`Event`]s for the async writer, and offset commits that the writer makes when objects are durable.
//!
//! librdkafka calls the rebalance callback on the polling thread and unassigns the revoked partitions as soon as
//! the callback returns, so the callback is where "flush and commit what the revoked partitions hold" has to
//! happen. The callback therefore sends [`Event::Revoked`] and blocks until the writer answers; the writer flushes
//! and commits from the async side meanwhile (librdkafka allows committing from another thread, and the member
//! still holds its generation until the callback returns). Heartbeats run on librdkafka's own threads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::KafkaError,
};
use tokio::sync::{mpsc, oneshot};

use super::{batch::Incoming, metrics::Metrics};
use crate::bus::brokers::Brokers;

/// How long one poll waits; also how quickly the thread notices it should stop.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// What the polling thread tells the writer, in the order it happened.
#[derive(Debug)]
pub enum Event {
    Record(Incoming),
    /// These partitions are now ours; reading starts at their committed offsets.
    Assigned(Vec<i32>),
    /// These partitions are being taken away; answer on `done` once their records are flushed and committed (or
    /// given up), and not before: librdkafka hands them to another member when the callback returns.
    Revoked {
        partitions: Vec<i32>,
        done: oneshot::Sender<()>,
    },
    /// The thread stopped polling (after [`RawTopic::stop_polling`]); no more events follow.
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    #[error("invalid --kafka-option {0:?}: use key=value")]
    Option(String),
    #[error("failed to create the kafka consumer for {bootstrap}: {source}")]
    Create { bootstrap: String, source: KafkaError },
    #[error("failed to subscribe to topic {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error("failed to start the kafka polling thread: {0}")]
    Thread(std::io::Error),
    #[error("failed to commit offsets (partition, next offset) {offsets:?}: {source}")]
    Commit {
        offsets: Vec<(i32, i64)>,
        source: KafkaError,
    },
    #[error("failed to pause or resume the raw topic: {0}")]
    Pause(KafkaError),
    #[error("the kafka commit task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Where and as whom to consume.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub brokers: Brokers,
    pub topic: String,
    pub group: String,
    /// librdkafka properties applied last, e.g. `session.timeout.ms=10000` or `security.protocol=ssl`.
    pub options: Vec<String>,
}

pub struct Context {
    events: mpsc::UnboundedSender<Event>,
    topic: String,
    metrics: Metrics,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (&partition, stats) in &topic.partitions {
            // Partition -1 is librdkafka's internal "unassigned" bucket; `desired` marks the ones assigned to us.
            if partition < 0 || !stats.desired || stats.hi_offset < 0 {
                continue;
            }
            // Before a group's first commit librdkafka reports no lag; everything still on the topic is behind then.
            let committed = if stats.committed_offset >= 0 {
                stats.committed_offset
            } else {
                stats.lo_offset
            };
            if committed >= 0 {
                let lag = (stats.hi_offset - committed).max(0);
                self.metrics.lag.get_or_create(&Metrics::partition(partition)).set(lag);
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = partitions_of(tpl, &self.topic);
                tracing::info!(?partitions, "partitions revoked");
                let (done, answer) = oneshot::channel();
                if self.events.send(Event::Revoked { partitions, done }).is_ok() {
                    // Err only means the writer is gone (shutting down or failed), which leaves nothing to wait for.
                    let _ = answer.blocking_recv();
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(err) => tracing::warn!(error = %err, "kafka rebalance failed"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // After the assignment is applied, so that pausing the new partitions takes effect.
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions = partitions_of(tpl, &self.topic);
            tracing::info!(?partitions, "partitions assigned");
            let _ = self.events.send(Event::Assigned(partitions));
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic).iter().map(|e| e.partition()).collect()
}

/// The group member on the raw topic and its polling thread.
pub struct RawTopic {
    consumer: Arc<BaseConsumer<Context>>,
    topic: String,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl RawTopic {
    /// Join the group and start polling; events arrive on the returned receiver.
    pub fn subscribe(
        settings: &KafkaSettings,
        metrics: Metrics,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Event>), KafkaClientError> {
        let mut config = settings.brokers.client_config();
        config
            .set("group.id", &settings.group)
            .set("client.id", "cilvest-consumer")
            // Offsets are committed only by the writer, and only for records already in the lake.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the oldest record: starting at the newest lost tweets in the original.
            .set("auto.offset.reset", "earliest")
            // Per-partition lag comes from librdkafka's statistics.
            .set("statistics.interval.ms", "5000");
        for option in &settings.options {
            let (key, value) = option
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| KafkaClientError::Option(option.clone()))?;
            config.set(key.trim(), value.trim());
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let context = Context {
            events: events.clone(),
            topic: settings.topic.clone(),
            metrics: metrics.clone(),
        };
        let consumer: BaseConsumer<Context> =
            config
                .create_with_context(context)
                .map_err(|source| KafkaClientError::Create {
                    bootstrap: settings.brokers.bootstrap.clone(),
                    source,
                })?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|source| KafkaClientError::Subscribe {
                topic: settings.topic.clone(),
                source,
            })?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafka-poll".to_owned())
                .spawn(move || poll_until_stopped(&consumer, &stop, &events, &metrics))
                .map_err(KafkaClientError::Thread)?
        };
        Ok((
            Self {
                consumer,
                topic: settings.topic.clone(),
                stop,
                poller: Some(poller),
            },
            receiver,
        ))
    }

    /// Commit `offsets` (partition, next offset to read) and wait for the broker's answer.
    pub async fn commit(&self, offsets: Vec<(i32, i64)>) -> Result<(), KafkaClientError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for &(partition, offset) in &offsets {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
                    .map_err(|source| KafkaClientError::Commit {
                        offsets: offsets.clone(),
                        source,
                    })?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|source| KafkaClientError::Commit { offsets, source })
        })
        .await?
    }

    /// Stop or restart fetching every assigned partition. Records already fetched still arrive; the position is
    /// kept, so resuming continues right after the last record delivered.
    pub fn set_paused(&self, paused: bool) -> Result<(), KafkaClientError> {
        let assignment = self.consumer.assignment().map_err(KafkaClientError::Pause)?;
        if paused {
            self.consumer.pause(&assignment).map_err(KafkaClientError::Pause)
        } else {
            self.consumer.resume(&assignment).map_err(KafkaClientError::Pause)
        }
    }

    /// Ask the polling thread to stop; it sends [`Event::Stopped`] after the last record it polled.
    pub fn stop_polling(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stop polling and leave the group. Drop the event receiver first: leaving revokes the partitions, and the
    /// callback must find nobody to wait for.
    pub async fn close(mut self) {
        self.stop_polling();
        let poller = self.poller.take();
        let consumer = self.consumer;
        let closed = tokio::task::spawn_blocking(move || {
            if let Some(poller) = poller
                && poller.join().is_err()
            {
                tracing::error!("the kafka polling thread panicked");
            }
            // The last reference: dropping it closes the consumer, which leaves the group.
            drop(consumer);
        })
        .await;
        if let Err(err) = closed {
            tracing::error!(error = %err, "failed to close the kafka consumer");
        }
    }
}

fn poll_until_stopped(
    consumer: &BaseConsumer<Context>,
    stop: &AtomicBool,
    events: &mpsc::UnboundedSender<Event>,
    metrics: &Metrics,
) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => {
                let record = Incoming {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                    payload: message.payload().map(<[u8]>::to_vec),
                };
                metrics.records_in.inc();
                metrics
                    .bytes_in
                    .inc_by(record.payload.as_ref().map_or(0, |p| p.len() as u64));
                if events.send(Event::Record(record)).is_err() {
                    return;
                }
            }
            // librdkafka reports broker trouble here and keeps retrying on its own.
            Some(Err(err)) => tracing::warn!(error = %err, "kafka consumer error"),
        }
    }
    let _ = events.send(Event::Stopped);
}
