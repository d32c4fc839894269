//! Where a restarted producer resumes: the newest tweet id already on the raw topic, read from the last records of
//! each partition (see [`super::kafka`] for why that is safe).

use std::time::Duration;

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::{
    brokers::Brokers,
    kafka::{BusError, QuietContext, is_refusal},
};
use crate::tweet;

/// How many records at the end of each partition the resume reader looks at. One would do for topics this
/// producer alone wrote; a few more tolerate a stray record written by something else.
const TAIL_RECORDS: i64 = 16;

/// The newest tweet id on `topic`, from the last records of each partition; `None` for an empty topic.
pub async fn newest_id_on_topic(
    brokers: &Brokers,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> Result<Option<u64>, BusError> {
    let consumer = reader(brokers, group)?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        newest_id_blocking(&consumer, &topic, timeout).map_err(|error| match consumer.context().refusal() {
            Some(reason) => BusError::Refused { reason },
            None => error,
        })
    })
    .await?
}

/// A consumer of assigned partitions. librdkafka polls only with a `group` (`kafka_access::resume_group`); it is
/// never joined or committed to.
fn reader(brokers: &Brokers, group: &str) -> Result<BaseConsumer<QuietContext>, BusError> {
    brokers
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("client.id", "cilvest-producer-resume")
        .create_with_context(QuietContext::default())
        .map_err(|source| BusError::Client {
            role: "resume reader",
            bootstrap: brokers.bootstrap.clone(),
            source,
        })
}

fn partitions(consumer: &BaseConsumer<QuietContext>, topic: &str, timeout: Duration) -> Result<Vec<i32>, BusError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| BusError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(BusError::TopicMissing {
            topic: topic.to_owned(),
        });
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(BusError::TopicMissing {
            topic: topic.to_owned(),
        });
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}

fn newest_id_blocking(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<u64>, BusError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut tails = TopicPartitionList::new();
    // Per partition, the offset of its last record: reading stops there.
    let mut last_offsets = std::collections::HashMap::new();
    for partition in partitions(consumer, topic, timeout)? {
        let (low, high) =
            consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|source| BusError::Watermarks {
                    topic: topic.to_owned(),
                    partition,
                    source,
                })?;
        if high > low {
            let start = (high - TAIL_RECORDS).max(low);
            tails
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|source| BusError::Tail {
                    topic: topic.to_owned(),
                    source,
                })?;
            last_offsets.insert(partition, high - 1);
        }
    }
    if last_offsets.is_empty() {
        return Ok(None);
    }
    consumer.assign(&tails).map_err(|source| BusError::Tail {
        topic: topic.to_owned(),
        source,
    })?;
    let mut newest: Option<u64> = None;
    while !last_offsets.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(BusError::TailTimeout {
                topic: topic.to_owned(),
                timeout,
            });
        }
        let Some(message) = consumer.poll(left.min(Duration::from_millis(500))) else {
            continue;
        };
        let message = message.map_err(|source| match is_refusal(&source, "") {
            true => BusError::Refused {
                reason: format!("{source} reading topic {topic}"),
            },
            false => BusError::Tail {
                topic: topic.to_owned(),
                source,
            },
        })?;
        if let Some(id) = record_id(message.key(), message.payload()) {
            newest = newest.max(Some(id));
        }
        if last_offsets
            .get(&message.partition())
            .is_some_and(|last| message.offset() >= *last)
        {
            last_offsets.remove(&message.partition());
        }
    }
    Ok(newest)
}

/// The tweet id of a raw-topic record: its key, or failing that its envelope.
fn record_id(key: Option<&[u8]>, payload: Option<&[u8]>) -> Option<u64> {
    key.and_then(|k| std::str::from_utf8(k).ok())
        .and_then(tweet::id_number)
        .or_else(|| {
            payload
                .and_then(|p| tweet::parse(p).ok())
                .and_then(|p| tweet::id_number(&p.tweet.id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_come_from_the_key_or_the_envelope() {
        assert_eq!(record_id(Some(b"42"), None), Some(42));
        let envelope = br#"{"tweet":{"id":"43","text":"saham","created_at":"2026-11-01T00:00:00Z"}}"#;
        assert_eq!(record_id(Some(b"junk"), Some(envelope)), Some(43));
        assert_eq!(record_id(None, Some(b"not json")), None);
    }
}
