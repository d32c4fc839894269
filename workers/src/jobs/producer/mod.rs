//! `cilvest producer`: turns the pipeline's keywords into tweets on the raw Kafka topic.
//!
//! ```text
//!  start ─▶ newest id on the raw topic ─▶ since_id (or start_time = now - backfill for an empty topic)
//!  loop  ─▶ source: every tweet after since_id, oldest first ─▶ publish, wait for Kafka's acks
//!        ─▶ since_id = newest delivered id ─▶ sleep pollInterval
//! ```
//! The topic is the only state: a restarted producer continues where the topic ends, and because the publisher
//! never lets the topic's newest id run ahead of a missing tweet (see `bus`), nothing is lost or written twice.
//! With `spec.bus: pubsub` the tweets go to Pub/Sub instead, and the resume point is a checkpoint object in the
//! lake written after each confirmed publish (see `pubsub`): nothing is lost, a restart may publish some twice.

pub mod pubsub;

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use cilvest_crds::{
    Pipeline, WorkerConfig,
    query::{QueryTooLong, X_RECENT_WINDOW},
    values::duration_arg,
    x_query,
};

use crate::{
    bus::{
        brokers::{AuthError, Brokers, KafkaAuthArgs},
        kafka::{BusError, BusMetrics, Publisher, Record},
        resume::newest_id_on_topic,
    },
    jobs::producer::pubsub::PubSubSink,
    telemetry::Telemetry,
    tweet::Envelope,
    x::client::{Batch, BearerToken, RetryPolicy, SourceError, SourceMetrics, XSettings, XSource},
    x::cost::{CostArgs, CostControl, CostError},
    x::replay::ReplaySource,
};

/// How long one attempt to read the topic's newest id may take.
const RESUME_TIMEOUT: Duration = Duration::from_secs(15);

/// `cilvest producer` flags. The pipeline comes from `--config`; the rest are deployment details.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "producer")]
pub struct Args {
    /// The worker configuration the operator renders (key `pipeline.json` of the pipeline's ConfigMap).
    #[arg(long, env = "CILVEST_CONFIG", default_value = "/etc/cilvest/pipeline.json")]
    pub config: PathBuf,
    /// Where tweets come from: X recent search, or a JSONL file of v2 tweets.
    #[arg(long, value_enum, default_value = "x")]
    pub source: SourceKind,
    /// X API base URL instead of the pipeline's `source.x.apiUrl`.
    #[arg(long, env = "CILVEST_X_API_URL")]
    pub x_api_url: Option<String>,
    /// File holding the X bearer token, such as a mounted Secret key. Without it the token comes from the
    /// CILVEST_X_BEARER_TOKEN environment variable.
    #[arg(long, env = "CILVEST_X_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// Timeout of one X API request.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub x_api_timeout: Duration,
    /// Override the pipeline's `source.x.pollInterval`.
    #[arg(long, value_parser = duration_arg)]
    pub poll_interval: Option<Duration>,
    /// Override the pipeline's `source.x.backfill` (at most 7 days).
    #[arg(long, value_parser = duration_arg)]
    pub backfill: Option<Duration>,
    /// First wait after a failed X request (5xx, timeout, malformed body); doubles up to --retry-max.
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub retry_initial: Duration,
    /// Longest wait between retries of a failed X request.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub retry_max: Duration,
    /// Wait after X rejected the token or the query (401, 403, 400), which only a person can fix.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub retry_configuration: Duration,
    /// The JSONL file for `--source replay`.
    #[arg(long, required_if_eq("source", "replay"))]
    pub replay_file: Option<PathBuf>,
    /// Replay at most this many tweets per second (`50` or `50/s`); unlimited without it.
    #[arg(long, value_parser = rate_arg)]
    pub replay_rate: Option<f64>,
    /// Override the pipeline's Kafka bootstrap servers.
    #[arg(long)]
    pub kafka_bootstrap: Option<String>,
    #[command(flatten)]
    pub kafka_auth: KafkaAuthArgs,
    /// Override the pipeline's raw topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Poll once (replay: the whole file), publish, and exit; a rejected token or query is then an error.
    #[arg(long)]
    pub once: bool,
    /// Tweets written to one partition before waiting for their delivery and moving to the next partition.
    #[arg(long, default_value_t = 500)]
    pub chunk_size: usize,
    /// Most tweets one poll holds in memory; a larger backlog is read oldest first over several polls.
    #[arg(long, default_value_t = 100_000)]
    pub max_poll_tweets: usize,
    #[command(flatten)]
    pub cost: CostArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    X,
    Replay,
}

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("failed to read the worker configuration {path}: {source}")]
    ConfigRead { path: PathBuf, source: std::io::Error },
    #[error("failed to parse the worker configuration {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        source: cilvest_crds::worker_config::ConfigError,
    },
    #[error("invalid worker configuration: {0}")]
    Spec(#[from] cilvest_crds::InvalidSpec),
    #[error("failed to build the X search query: {0}")]
    Query(#[from] QueryTooLong),
    #[error("--source replay needs --replay-file")]
    ReplayFileMissing,
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    KafkaAuth(#[from] AuthError),
    #[error(transparent)]
    PubSub(#[from] pubsub::SinkError),
    #[error(transparent)]
    Cost(#[from] CostError),
    #[error("failed to encode tweet {id} as an envelope: {source}")]
    Encode { id: u64, source: serde_json::Error },
}

enum Source {
    X(Box<XSource>),
    Replay(ReplaySource),
}

impl Source {
    async fn next(&mut self, since_id: Option<u64>) -> Result<Batch, SourceError> {
        match self {
            Self::X(x) => x.poll(since_id).await,
            Self::Replay(replay) => Ok(replay.next(since_id).await),
        }
    }
}

/// A configured producer, ready to run.
pub struct Producer {
    brokers: Brokers,
    /// The group id the resume reader names (never joins).
    resume_group: String,
    topic: String,
    poll_interval: Duration,
    once: bool,
    retry: RetryPolicy,
    source: Source,
    publisher: Sink,
    telemetry: Telemetry,
    bus_metrics: BusMetrics,
    source_metrics: SourceMetrics,
    /// The read budget, its pace and the counts job (X source only).
    cost: Option<CostControl>,
}

/// Run `cilvest producer`: serve health and metrics, then produce until SIGTERM (or after one poll with `--once`).
pub async fn run(args: Args) -> Result<(), ProducerError> {
    let telemetry = Telemetry::new("cilvest_producer");
    let metrics_addr = args.metrics_addr;
    let producer = Producer::new(args, telemetry.clone())?;
    tokio::spawn(async move {
        if let Err(error) = telemetry.serve(metrics_addr).await {
            tracing::error!(error = %error, addr = %metrics_addr, "failed to serve health and metrics");
        }
    });
    producer.run(shutdown_signal()).await
}

impl Producer {
    /// Read the configuration and the token, register metrics on `telemetry`, create the clients.
    pub fn new(args: Args, telemetry: Telemetry) -> Result<Self, ProducerError> {
        let config = read_config(&args.config)?;
        let pipeline = Pipeline::parse(&config.spec)?;
        let poll_interval = args.poll_interval.unwrap_or(pipeline.poll_interval);
        // Without a backfill the producer starts with tweets posted from its first start on.
        let backfill = args
            .backfill
            .or(pipeline.backfill)
            .unwrap_or(Duration::ZERO)
            .min(X_RECENT_WINDOW);
        let retry = RetryPolicy {
            initial: args.retry_initial,
            max: args.retry_max.max(args.retry_initial),
            configuration: args.retry_configuration,
        };
        let source_metrics = SourceMetrics::default();
        let bus_metrics = BusMetrics::default();
        telemetry.register(|registry| {
            source_metrics.register(registry);
            bus_metrics.register(registry);
        });

        let source = match args.source {
            SourceKind::X => {
                // Keywords in `counts` mode only are not searched at all.
                let reads_posts = config.spec.keywords.iter().any(|k| k.mode.reads_posts());
                let query = reads_posts.then(|| x_query(&config.spec)).transpose()?;
                let token = BearerToken::load(args.bearer_token_file.as_deref())?;
                let base_url = args
                    .x_api_url
                    .clone()
                    .unwrap_or_else(|| config.spec.source.x.api_url.clone());
                tracing::info!(query = ?query, api = %base_url, "polling X recent search");
                let settings = XSettings {
                    base_url,
                    query,
                    backfill,
                    timeout: args.x_api_timeout,
                    retry,
                    max_poll_tweets: args.max_poll_tweets.max(1),
                    // A one-shot run reports a bad token or query and ends; a Deployment waits for the fix.
                    fail_on_configuration_error: args.once,
                };
                Source::X(Box::new(XSource::new(
                    settings,
                    token,
                    source_metrics.clone(),
                    telemetry.clone(),
                )?))
            }
            SourceKind::Replay => {
                let path = args.replay_file.as_deref().ok_or(ProducerError::ReplayFileMissing)?;
                let replay = ReplaySource::open(path, args.replay_rate)?;
                tracing::info!(file = %path.display(), tweets = replay.len(), rate = ?args.replay_rate, "replaying tweets");
                Source::Replay(replay)
            }
        };
        let cost = match args.source {
            SourceKind::X => Some(CostControl::new(&config, &args.cost, &telemetry)?),
            SourceKind::Replay => None,
        };
        let brokers = Brokers::new(args.kafka_bootstrap.unwrap_or(config.kafka_bootstrap), &args.kafka_auth)?;
        let topic = args.topic.unwrap_or(config.raw_topic);
        let publisher = match &config.pubsub {
            Some(pubsub) => Sink::PubSub(Box::new(PubSubSink::open(
                pubsub,
                &config.pipeline,
                &config.spec.targets.lake.uri,
                bus_metrics.clone(),
            )?)),
            None => Sink::Kafka(Publisher::new(&brokers, &topic, args.chunk_size, bus_metrics.clone())?),
        };
        // Logs name the topic tweets actually go to.
        let topic = match &publisher {
            Sink::PubSub(pubsub) => pubsub.topic_path(),
            Sink::Kafka(_) => topic,
        };
        Ok(Self {
            brokers,
            resume_group: cilvest_crds::kafka_access::resume_group(&config.pipeline),
            topic,
            poll_interval,
            once: args.once,
            retry,
            source,
            publisher,
            telemetry,
            bus_metrics,
            source_metrics,
            cost,
        })
    }

    /// Produce until `shutdown` completes. A poll in progress is abandoned (nothing of it is on the topic yet); a
    /// publish in progress is finished first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ProducerError> {
        tokio::pin!(shutdown);
        let resumed = tokio::select! {
            resume = self.resume_point() => Some(resume),
            () = &mut shutdown => None,
        };
        let Some(resumed) = resumed else {
            return Ok(());
        };
        let mut since_id = resumed?;
        if matches!(self.source, Source::Replay(_)) {
            // The replay file has answered by being read; Kafka just did.
            self.telemetry.set_ready(true);
        }
        if let (Source::X(x), Some(cost)) = (&mut self.source, &self.cost) {
            tokio::select! {
                () = cost.attach(x, self.retry) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
        loop {
            if let (Source::X(x), Some(cost)) = (&mut self.source, &mut self.cost) {
                tokio::select! {
                    counted = cost.run_counts(x) => counted?,
                    () = &mut shutdown => break,
                }
            }
            let batch = tokio::select! {
                batch = self.source.next(since_id) => batch?,
                () = &mut shutdown => break,
            };
            if let Some(newest) = batch.tweets.last().map(|t| t.id) {
                let records = batch
                    .tweets
                    .into_iter()
                    .map(|t| {
                        let id = t.id;
                        serde_json::to_vec(&Envelope::new(t.tweet, t.author_username, t.fetched_at))
                            .map(|value| Record { id, value })
                            .map_err(|source| ProducerError::Encode { id, source })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.publisher.publish(&records).await?;
                // Only now, with every record acknowledged, does the next poll start after these tweets.
                since_id = since_id.max(Some(newest));
                tracing::info!(
                    tweets = records.len(),
                    newest_id = newest,
                    posts_read_total = self.source_metrics.posts_read(),
                    published_total = self.bus_metrics.published(),
                    "published tweets"
                );
            }
            if batch.more {
                continue;
            }
            if self.once {
                break;
            }
            let wait = match (&mut self.source, &self.cost) {
                (Source::X(x), Some(cost)) => cost.wait(x, self.poll_interval),
                _ => self.poll_interval,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break,
            }
        }
        self.publisher.flush(Duration::from_secs(10));
        tracing::info!("producer stopped");
        Ok(())
    }

    /// The newest tweet id on the raw topic, retried until Kafka answers (the topic may still be being created).
    async fn resume_point(&mut self) -> Result<Option<u64>, ProducerError> {
        let mut failures = 0u32;
        loop {
            let newest = match &self.publisher {
                Sink::Kafka(publisher) => {
                    newest_id_on_topic(&self.brokers, &self.topic, &self.resume_group, RESUME_TIMEOUT)
                        .await
                        .map_err(|error| match publisher.refusal() {
                            Some(reason) if !error.is_refused() => BusError::Refused { reason },
                            _ => error,
                        })
                        .map_err(ProducerError::from)
                }
                Sink::PubSub(pubsub) => pubsub.resume_point().await.map_err(ProducerError::from),
            };
            match newest {
                Ok(newest) => {
                    tracing::info!(
                        topic = %self.topic,
                        newest_id = ?newest,
                        "resuming after the newest tweet on the raw topic"
                    );
                    if let Some(id) = newest {
                        self.bus_metrics.set_newest(id);
                    }
                    return Ok(newest);
                }
                Err(ProducerError::Bus(error)) if error.is_refused() => {
                    // Like a rejected X token: only a person can fix it; a one-shot run reports it and ends.
                    if self.once {
                        return Err(error.into());
                    }
                    tracing::error!(error = %error, retry_in = ?self.retry.configuration, "kafka refused the producer");
                    tokio::time::sleep(self.retry.configuration).await;
                }
                Err(error) => {
                    failures += 1;
                    let wait = self.retry.backoff(failures);
                    tracing::warn!(error = %error, retry_in = ?wait, "failed to find where the raw topic ends");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Where tweets are published: the Kafka raw topic or Pub/Sub.
enum Sink {
    Kafka(Publisher),
    PubSub(Box<PubSubSink>),
}

impl Sink {
    async fn publish(&mut self, records: &[Record]) -> Result<(), ProducerError> {
        match self {
            Self::Kafka(kafka) => {
                kafka.refresh_partitions().await;
                kafka.publish(records).await?;
            }
            Self::PubSub(pubsub) => pubsub.publish(records).await?,
        }
        Ok(())
    }

    fn flush(&self, timeout: Duration) {
        if let Self::Kafka(kafka) = self {
            kafka.flush(timeout);
        }
    }
}

fn read_config(path: &std::path::Path) -> Result<WorkerConfig, ProducerError> {
    let text = std::fs::read(path).map_err(|source| ProducerError::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    WorkerConfig::from_json(&text).map_err(|source| ProducerError::ConfigParse {
        path: path.to_owned(),
        source,
    })
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

fn rate_arg(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text:?} is not a positive rate such as 50 or 50/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "producer",
            "--config",
            "p.json",
            "--source",
            "replay",
            "--replay-file",
            "t.jsonl",
            "--replay-rate",
            "50/s",
            "--retry-initial",
            "250ms",
        ])
        .expect("flags");
        assert_eq!(args.source, SourceKind::Replay);
        assert_eq!(args.replay_rate, Some(50.0));
        assert_eq!(args.retry_initial, Duration::from_millis(250));
        assert!(
            Args::try_parse_from(["producer", "--source", "replay"]).is_err(),
            "replay needs a file"
        );
        assert!(Args::try_parse_from(["producer", "--replay-rate", "0"]).is_err());
    }
}
