//! The demo's two buses between the generated tweets and the lake: an in-process channel with the consumer's object
//! layout and record classification (the default), or a real Kafka topic with the producer's publisher and the real
//! consumer (`--kafka`).

use std::{
    collections::BTreeMap,
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use cilvest_crds::WorkerConfig;
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::json;

use super::{BUS_CAPACITY, DemoError, FLUSH_RECORDS, KAFKA_DRAIN_TIMEOUT, Progress};
use crate::{
    bus::{brokers::Brokers, kafka as bus},
    jobs::consumer,
    lake::{self, record},
    tweet,
};

/// Where the lake writer puts records: the consumer's layout.
pub(super) struct Layout {
    pub(super) topic: String,
    pub(super) time_zone: Tz,
    pub(super) partitions: i32,
}

impl Layout {
    /// `<tree>/dt=D/<topic>-<partition>-<firstOffset>.ndjson.gz`, as the consumer names objects.
    fn object_path(&self, tree: &str, day: NaiveDate, partition: i32, first_offset: i64) -> Path {
        Path::from(format!(
            "{tree}/dt={day}/{}-{partition}-{first_offset}.ndjson.gz",
            self.topic
        ))
    }

    /// Kafka's default partitioner hashes the key; any stable hash of the tweet id spreads records the same way.
    fn partition(&self, key: &[u8]) -> i32 {
        let hash = key
            .iter()
            .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
        (hash % self.partitions as u32) as i32
    }
}

/// One object of a batch: (tree, day, partition).
type ObjectKey = (&'static str, NaiveDate, i32);

/// The records of one batch, grouped into objects and compressed as they arrive; each object remembers its first
/// offset, which names it.
#[derive(Default)]
struct Batch {
    objects: BTreeMap<ObjectKey, (i64, GzEncoder<Vec<u8>>)>,
    records: usize,
}

impl Batch {
    /// Add one NDJSON line (with its newline) to the object of (tree, day, partition).
    fn push(
        &mut self,
        tree: &'static str,
        day: NaiveDate,
        partition: i32,
        offset: i64,
        line: &[u8],
    ) -> std::io::Result<()> {
        let (_, encoder) = self
            .objects
            .entry((tree, day, partition))
            .or_insert_with(|| (offset, GzEncoder::new(Vec::new(), Compression::default())));
        encoder.write_all(line)?;
        self.records += 1;
        Ok(())
    }

    async fn flush(&mut self, lake: &Arc<dyn ObjectStore>, layout: &Layout) -> Result<(), DemoError> {
        for ((tree, day, partition), (first_offset, encoder)) in std::mem::take(&mut self.objects) {
            let path = layout.object_path(tree, day, partition, first_offset);
            let body = encoder.finish().map_err(DemoError::Compress)?;
            lake.put(&path, PutPayload::from(body))
                .await
                .map_err(|source| DemoError::Write {
                    path: path.to_string(),
                    source,
                })?;
        }
        self.records = 0;
        Ok(())
    }
}

/// The in-process bus: a bounded channel of (key = tweet id, value = envelope) from a publishing task to the lake
/// writer, which numbers each partition's records from offset 0 and flushes every [`FLUSH_RECORDS`] records.
/// Returns how many records went to `rejected/`.
pub(super) async fn in_process(
    records: Vec<Vec<u8>>,
    lake: &Arc<dyn ObjectStore>,
    layout: &Layout,
    progress: &mut Progress,
) -> Result<u64, DemoError> {
    let total = records.len() as u64;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Vec<u8>, Vec<u8>)>(BUS_CAPACITY);
    let publisher = tokio::spawn(async move {
        for value in records {
            let key = tweet::parse(&value)
                .map(|p| p.tweet.id.into_bytes())
                .unwrap_or_default();
            if sender.send((key, value)).await.is_err() {
                break;
            }
        }
    });
    let mut offsets = vec![0i64; layout.partitions as usize];
    let mut batch = Batch::default();
    let mut rejected = 0u64;
    let mut moved = 0u64;
    while let Some((key, value)) = receiver.recv().await {
        let partition = layout.partition(&key);
        let offset = offsets[partition as usize];
        offsets[partition as usize] += 1;
        // Like the consumer: a tweet goes to its local day's raw/ folder, anything else to rejected/ with why.
        let classified = record::classify(Some(&value), layout.time_zone, || {
            let mut fields = serde_json::Map::new();
            fields.insert("topic".to_owned(), json!(layout.topic));
            fields.insert("partition".to_owned(), json!(partition));
            fields.insert("offset".to_owned(), json!(offset));
            record::Origin { fields, at: Utc::now() }
        });
        if classified.reject.is_some() {
            rejected += 1;
        }
        let pushed = batch.push(
            classified.tree.as_str(),
            classified.day,
            partition,
            offset,
            &classified.line,
        );
        pushed.map_err(DemoError::Compress)?;
        moved += 1;
        if batch.records >= FLUSH_RECORDS {
            batch.flush(lake, layout).await?;
        }
        progress.update("bus and lake", moved, total);
    }
    batch.flush(lake, layout).await?;
    publisher.await.map_err(|_| DemoError::BusClosed)?;
    if moved != total {
        return Err(DemoError::BusClosed);
    }
    Ok(rejected)
}

/// The `--kafka` bus: a fresh topic, the producer's publisher, then the real consumer until it has committed every
/// record. Returns how many records went to `rejected/` (counted by reading that tree back).
pub(super) async fn through_kafka(
    bootstrap: &str,
    config: &WorkerConfig,
    records: Vec<Vec<u8>>,
    lake_uri: &str,
    time_zone: Tz,
    progress: &mut Progress,
) -> Result<u64, DemoError> {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
    };
    let run_id = Utc::now().timestamp_micros();
    let topic = format!("{}.demo-{run_id}", config.raw_topic);
    let group = format!("{}.demo-{run_id}", config.consumer_group);
    let partitions = config.spec.topics.raw.partitions.max(1);
    progress.stage("creating the kafka topic");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| DemoError::Topic {
            topic: topic.clone(),
            message: e.to_string(),
        })?;
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| DemoError::Topic {
            topic: topic.clone(),
            message: e.to_string(),
        })?;
    if let Some(Err((_, code))) = created.into_iter().next() {
        return Err(DemoError::Topic {
            topic,
            message: code.to_string(),
        });
    }

    progress.stage("publishing to kafka");
    let mut publisher = bus::Publisher::new(&Brokers::plaintext(bootstrap), &topic, 1000, bus::BusMetrics::default())?;
    publisher.refresh_partitions().await;
    let bus_records: Vec<bus::Record> = records
        .into_iter()
        .map(|value| bus::Record {
            id: tweet::parse(&value)
                .ok()
                .and_then(|p| tweet::id_number(&p.tweet.id))
                .unwrap_or(0),
            value,
        })
        .collect();
    publisher.publish(&bus_records).await?;
    drop(publisher);

    progress.stage("consuming into the lake");
    let settings = consumer::Settings {
        kafka: consumer::KafkaSettings {
            brokers: Brokers::plaintext(bootstrap),
            topic: topic.clone(),
            group: group.clone(),
            options: vec!["auto.offset.reset=earliest".to_owned()],
        },
        pubsub: None,
        lake_uri: lake_uri.to_owned(),
        gcs_endpoint: None,
        time_zone,
        limits: consumer::Limits {
            max_records: FLUSH_RECORDS,
            max_bytes: 16 << 20,
            max_age: Duration::from_millis(500),
            revoke_timeout: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(20),
        },
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = {
        let (bootstrap, topic, group, drained) = (bootstrap.to_owned(), topic.clone(), group, Arc::clone(&drained));
        async move {
            let started = Instant::now();
            while started.elapsed() < KAFKA_DRAIN_TIMEOUT {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (b, t, g) = (bootstrap.clone(), topic.clone(), group.clone());
                let done = tokio::task::spawn_blocking(move || all_committed(&b, &t, &g, partitions))
                    .await
                    .unwrap_or(false);
                if done {
                    drained.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
            }
        }
    };
    let consumed = consumer::run(settings, shutdown).await;
    // The topic existed for this run only; leave the broker as it was (best effort: it is not the demo's data).
    let _ = admin
        .delete_topics(
            &[&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await;
    consumed?;
    if !drained.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(DemoError::KafkaDrain {
            topic,
            timeout: KAFKA_DRAIN_TIMEOUT,
        });
    }
    let lake = lake::open(lake_uri, None)?;
    count_rejected(&lake).await
}

/// Whether `group` has committed, on every partition of `topic`, the partition's end offset.
fn all_committed(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> bool {
    use rdkafka::{ClientConfig, Offset, TopicPartitionList, consumer::BaseConsumer, consumer::Consumer};
    let Ok(reader) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let Ok(committed) = reader.committed_offsets(list, Duration::from_secs(5)) else {
        return false;
    };
    (0..partitions).all(|partition| {
        let Ok((_, high)) = reader.fetch_watermarks(topic, partition, Duration::from_secs(5)) else {
            return false;
        };
        match committed.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset >= high,
            _ => high == 0,
        }
    })
}

async fn count_rejected(lake: &Arc<dyn ObjectStore>) -> Result<u64, DemoError> {
    let prefix = Path::from("rejected");
    let paths = crate::lake::list_paths(lake.as_ref(), &prefix)
        .await
        .map_err(|source| DemoError::List {
            prefix: prefix.to_string(),
            source,
        })?;
    let mut rejected = 0u64;
    for path in paths {
        let body = lake
            .get(&path)
            .await
            .map_err(|source| DemoError::Write {
                path: path.to_string(),
                source,
            })?
            .bytes()
            .await
            .map_err(|source| DemoError::Write {
                path: path.to_string(),
                source,
            })?;
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&body[..]), &mut text)
            .map_err(DemoError::Compress)?;
        rejected += text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    }
    Ok(rejected)
}
