//! `cilvest consumer`: moves raw tweet records from the Kafka raw topic into the lake as gzip NDJSON objects,
//! committing a record's offset only after the object holding it is written.
//!
//! ```text
//!  raw topic ──poll thread──▶ events ──▶ writer: batch per partition ──▶ raw/dt=D/<topic>-<p>-<first>.ndjson.gz
//!  (consumer group)              ▲                     │    (and rejected/dt=D/... for what is not a tweet)
//!                                └── commit offsets ◀──┘ once every object of the batch is written
//! ```
//!
//! # Exactly once in the lake
//!
//! Kafka redelivers whatever was read but not committed, so after a crash (or a rebalance that could not commit)
//! some records are read and written again. They must replace what the earlier attempt wrote, never sit beside
//! it. Three rules make that hold for every partition:
//!
//! 1. A batch starts exactly at the partition's committed offset: after a restart or an assignment reading resumes
//!    there, and a batch is only written once the previous batch of the partition is committed (one batch is in
//!    flight at a time; when one cannot be committed, what was read after it is dropped unwritten, to be read
//!    again, and if the member keeps the partition it exits and restarts from the committed offset).
//! 2. Within a batch, a partition's records go to one object per (tree, day), named by the offset of its first
//!    record. Tree and day depend only on the record (the tweet's `created_at` in the pipeline's time zone, or for
//!    rejected records their Kafka timestamp), never on the clock or on where a batch was cut.
//! 3. Objects are written whole (`object_store` puts are atomic) and one member writes a partition at a time: a
//!    revoked partition's writes finish before the rebalance callback returns.
//!
//! Take an uncommitted object `D/<p>-o` from an attempt whose batch started at committed offset `s`: it holds the
//! day-`D` records of that batch, and none of `[s, o)` is a day-`D` record. Every later batch starts at or after
//! `s` (commits only move forward), so the batch that eventually commits offset `o` contains `o` with no day-`D`
//! record before it, and names its day-`D` object `D/<p>-o` again; it is written later (rule 3), so it overwrites
//! the stale object, whatever sizes or ages cut the batches. Committed batches cover disjoint offset ranges and so
//! have distinct names. Once every offset is committed, every object name in the lake is that of a committed
//! batch, holding exactly that batch's records: each record is in exactly one object. Batch boundaries may
//! therefore depend on count, bytes and age.
//!
//! With `spec.bus: pubsub` the consumer pulls from a Pub/Sub subscription instead (`pubsub.rs`): the same
//! objects and batching, acknowledged after the write, at least once in the lake (see that module).
//!
//! Limits: an offset reset (the committed offset fell out of retention) breaks rule 1, and a member that lost its
//! session without noticing (a "zombie" whose revoke never ran) could still write while the new owner does;
//! ruling that out needs fencing in the lake (e.g. GCS generation preconditions), which this does not do.
//!
//! # Backpressure
//!
//! Failed lake writes are retried forever with backoff. The batch behind the one in flight keeps filling; once
//! it is full every partition is paused (polling goes on, so the member stays in the group), and consumption
//! resumes when the lake accepts the writes again. `/readyz` reports not ready while writes fail.

mod batch;
mod flush;
mod kafka;
mod metrics;
mod pubsub;
mod writer;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use chrono_tz::Tz;
use cilvest_crds::{Pipeline, WorkerConfig};
use object_store::{BackoffConfig, RetryConfig};

use batch::Layout;

pub use kafka::KafkaSettings;
use kafka::RawTopic;
pub use pubsub::PubSubSettings;
pub use writer::Limits;
use writer::Writer;

use crate::{
    bus::brokers::{AuthError, Brokers, KafkaAuthArgs},
    lake,
    telemetry::Telemetry,
};

/// The time zone of tweet days when neither the flag nor the pipeline names one.
pub const DEFAULT_TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Jakarta;

/// `cilvest consumer`: the pipeline's configuration file, with flags (or their environment variables) overriding it.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The worker configuration the operator renders (`pipeline.json`).
    #[arg(long, env = "CILVEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Lake URI: `gs://bucket/prefix` or `file:///dir`. Default: the pipeline's `spec.targets.lake.uri`.
    #[arg(long, env = "CILVEST_LAKE")]
    pub lake: Option<String>,
    /// GCS emulator base URL for `gs://` lakes (no OAuth).
    #[arg(long, env = lake::GCS_ENDPOINT_ENV)]
    pub gcs_endpoint: Option<String>,
    /// Kafka `host:port` list. Default: the pipeline's.
    #[arg(long, env = "CILVEST_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
    #[command(flatten)]
    pub kafka_auth: KafkaAuthArgs,
    /// The raw topic. Default: the pipeline's.
    #[arg(long, env = "CILVEST_RAW_TOPIC")]
    pub topic: Option<String>,
    /// The consumer group. Default: the pipeline's (`cilvest.<pipeline>.lake`).
    #[arg(long, env = "CILVEST_CONSUMER_GROUP")]
    pub group: Option<String>,
    /// IANA time zone of the `dt=` days. Default: the pipeline's `spec.schedule.timeZone`, else Asia/Jakarta.
    #[arg(long, env = "CILVEST_TIME_ZONE")]
    pub time_zone: Option<String>,
    /// Flush a batch once it holds this many records.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_records: u64,
    /// Flush a batch once its record values reach this size: bytes, or with a KiB/MiB/GiB suffix.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub flush_bytes: u64,
    /// Flush a batch at the latest this long after its first record arrived, e.g. `60s`, `500ms`.
    #[arg(long, default_value = "60s", value_parser = cilvest_crds::values::duration_arg)]
    pub flush_interval: Duration,
    /// How long a rebalance may wait for revoked partitions to be flushed.
    #[arg(long, default_value = "20s", value_parser = cilvest_crds::values::duration_arg)]
    pub revoke_timeout: Duration,
    /// How long the final flush after SIGTERM may take; keep it below the pod's termination grace period.
    #[arg(long, default_value = "20s", value_parser = cilvest_crds::values::duration_arg)]
    pub shutdown_timeout: Duration,
    /// A librdkafka property, applied last; repeatable. E.g. `--kafka-option session.timeout.ms=10000`.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    pub kafka_options: Vec<String>,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "CILVEST_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    KafkaAuth(#[from] AuthError),
    #[error("failed to read the worker configuration {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the worker configuration {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: cilvest_crds::worker_config::ConfigError,
    },
    #[error("no {what}: pass --config or {flag}")]
    Missing { what: &'static str, flag: &'static str },
    #[error("unknown time zone {0:?}: use an IANA name such as Asia/Jakarta")]
    TimeZone(String),
    #[error(transparent)]
    Spec(#[from] cilvest_crds::InvalidSpec),
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaClientError),
    #[error(transparent)]
    PubSubClient(#[from] crate::bus::pubsub::PubSubError),
    #[error(transparent)]
    PubSub(#[from] pubsub::PubSubConsumerError),
    #[error("failed to listen for signals: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Writer(#[from] writer::WriterError),
}

/// Everything the consumer needs, resolved from the configuration file and the flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub kafka: KafkaSettings,
    /// Set when the pipeline's bus is Pub/Sub: the consumer then pulls from this subscription instead of Kafka.
    pub pubsub: Option<PubSubSettings>,
    pub lake_uri: String,
    pub gcs_endpoint: Option<String>,
    pub time_zone: Tz,
    pub limits: Limits,
    pub metrics_addr: SocketAddr,
}

impl Args {
    /// Merge the flags over the configuration file.
    pub fn settings(&self) -> Result<Settings, ConsumerError> {
        let config = match &self.config {
            Some(path) => {
                let text = std::fs::read(path).map_err(|source| ConsumerError::ReadConfig {
                    path: path.clone(),
                    source,
                })?;
                let config = WorkerConfig::from_json(&text).map_err(|source| ConsumerError::ParseConfig {
                    path: path.clone(),
                    source,
                })?;
                Some(config)
            }
            None => None,
        };
        let pick = |flag_value: &Option<String>, from_config: Option<String>, what, flag| {
            flag_value
                .clone()
                .or(from_config)
                .filter(|v| !v.is_empty())
                .ok_or(ConsumerError::Missing { what, flag })
        };
        let time_zone = match (&self.time_zone, &config) {
            (Some(zone), _) => zone.parse().map_err(|_| ConsumerError::TimeZone(zone.clone()))?,
            (None, Some(config)) => Pipeline::parse(&config.spec)?.time_zone,
            (None, None) => DEFAULT_TIME_ZONE,
        };
        Ok(Settings {
            kafka: KafkaSettings {
                brokers: Brokers::new(
                    pick(
                        &self.kafka_bootstrap,
                        config.as_ref().map(|c| c.kafka_bootstrap.clone()),
                        "kafka bootstrap servers",
                        "--kafka-bootstrap",
                    )?,
                    &self.kafka_auth,
                )?,
                topic: pick(
                    &self.topic,
                    config.as_ref().map(|c| c.raw_topic.clone()),
                    "raw topic",
                    "--topic",
                )?,
                group: pick(
                    &self.group,
                    config.as_ref().map(|c| c.consumer_group.clone()),
                    "consumer group",
                    "--group",
                )?,
                options: self.kafka_options.clone(),
            },
            pubsub: config.as_ref().and_then(|c| c.pubsub.as_ref()).map(|p| PubSubSettings {
                names: p.into(),
                ack_deadline_seconds: p.ack_deadline_seconds,
                create: true,
            }),
            lake_uri: pick(
                &self.lake,
                config.as_ref().map(|c| c.spec.targets.lake.uri.clone()),
                "lake uri",
                "--lake",
            )?,
            gcs_endpoint: self.gcs_endpoint.clone().filter(|e| !e.is_empty()),
            time_zone,
            limits: Limits {
                max_records: usize::try_from(self.flush_records).unwrap_or(usize::MAX),
                max_bytes: self.flush_bytes,
                max_age: self.flush_interval,
                revoke_timeout: self.revoke_timeout,
                shutdown_timeout: self.shutdown_timeout,
            },
            metrics_addr: self.metrics_addr,
        })
    }

    /// Run until SIGTERM or SIGINT, then flush, commit and leave the group.
    pub async fn run(self) -> Result<(), ConsumerError> {
        let settings = self.settings()?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ConsumerError::Signal)?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        run(settings, shutdown).await
    }
}

/// The lake client's own retries of one request: short, because the writer retries failed writes forever anyway
/// and gives up only between requests (on a rebalance or shutdown deadline), so each request must end soon.
fn lake_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(15),
    }
}

/// Consume with `settings` until `shutdown` completes.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
    let lake = lake::open_with_retry(&settings.lake_uri, settings.gcs_endpoint.as_deref(), lake_retry())?;
    let telemetry = Telemetry::new("cilvest_consumer");
    let metrics = metrics::Metrics::register(&telemetry);
    let server = {
        let (telemetry, addr) = (telemetry.clone(), settings.metrics_addr);
        tokio::spawn(async move {
            // Metrics are not worth stopping the data for: say so and keep consuming.
            if let Err(err) = telemetry.serve(addr).await {
                tracing::error!(%addr, error = %err, "failed to serve metrics");
            }
        })
    };
    if let Some(pubsub) = settings.pubsub {
        let client = crate::bus::pubsub::Client::from_env()?;
        telemetry.set_ready(true);
        tracing::info!(
            subscription = %pubsub.names.subscription_path(),
            lake = %settings.lake_uri,
            time_zone = %settings.time_zone,
            "consuming from pub/sub"
        );
        let consumer = pubsub::Consumer::new(
            client,
            pubsub,
            lake,
            settings.time_zone,
            settings.limits,
            metrics,
            telemetry,
        );
        let result = consumer.run(shutdown).await;
        server.abort();
        return Ok(result?);
    }
    let (raw_topic, events) = RawTopic::subscribe(&settings.kafka, metrics.clone())?;
    // Ready while the lake takes writes, whether or not this member owns partitions: a replica beyond the partition
    // count idles as a standby, and must not hold up a rollout.
    telemetry.set_ready(true);
    tracing::info!(
        topic = %settings.kafka.topic,
        group = %settings.kafka.group,
        lake = %settings.lake_uri,
        time_zone = %settings.time_zone,
        "consuming"
    );
    let layout = Layout {
        topic: settings.kafka.topic.clone(),
        time_zone: settings.time_zone,
    };
    let writer = Writer::new(raw_topic, events, lake, layout, settings.limits, metrics, telemetry);
    let result = writer.run(shutdown).await;
    server.abort();
    Ok(result?)
}

/// `16777216`, `64KiB`, `16MiB`, `1GiB` (also KB/MB/GB, read as powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 16MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?} has an unknown unit: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(scale)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64 kb"), Ok(64 << 10));
        assert!(parse_size("0").is_err() && parse_size("1TiB").is_err() && parse_size("MiB").is_err());
    }

    #[test]
    fn flags_override_the_pipeline_configuration() {
        let dir = std::env::temp_dir().join(format!("cilvest-consumer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("pipeline.json");
        let config = serde_json::json!({
            "pipeline": "demo", "namespace": "ns", "kafkaBootstrap": "cilvest-kafka-bootstrap:9092",
            "rawTopic": "cilvest.demo.raw", "consumerGroup": "cilvest.demo.lake",
            "spec": {
                "keywords": [{"name": "saham", "terms": ["saham"]}],
                "schedule": {"timeZone": "Asia/Makassar"},
                "targets": {"lake": {"uri": "gs://cilvest-lake/demo"},
                            "bigquery": {"project": "cilvest-demo", "dataset": "cilvest"}}
            }
        });
        std::fs::write(&path, config.to_string()).expect("write config");
        let from_file = Cli::parse_from(["x", "--config", path.to_str().expect("utf8")]).args;
        let settings = from_file.settings().expect("settings");
        assert_eq!(settings.kafka.topic, "cilvest.demo.raw");
        assert_eq!(settings.kafka.group, "cilvest.demo.lake");
        assert_eq!(settings.lake_uri, "gs://cilvest-lake/demo");
        assert_eq!(settings.time_zone, chrono_tz::Asia::Makassar);
        assert_eq!(settings.limits.max_age, Duration::from_secs(60));

        let overridden = Cli::parse_from([
            "x",
            "--config",
            path.to_str().expect("utf8"),
            "--lake",
            "file:///tmp/lake",
            "--group",
            "other",
            "--flush-interval",
            "500ms",
            "--flush-bytes",
            "1MiB",
        ])
        .args
        .settings()
        .expect("settings");
        assert_eq!(overridden.lake_uri, "file:///tmp/lake");
        assert_eq!(overridden.kafka.group, "other");
        assert_eq!(overridden.limits.max_age, Duration::from_millis(500));
        assert_eq!(overridden.limits.max_bytes, 1 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_an_unknown_time_zone() {
        let err = Cli::parse_from([
            "x",
            "--kafka-bootstrap",
            "127.0.0.1:9",
            "--topic",
            "t",
            "--group",
            "g",
            "--lake",
            "file:///tmp/l",
            "--time-zone",
            "Mars/Olympus_Mons",
        ])
        .args
        .settings()
        .expect_err("unknown zone");
        assert!(err.to_string().contains("Mars/Olympus_Mons"), "{err}");
    }
}
