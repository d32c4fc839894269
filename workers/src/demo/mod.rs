//! `cilvest demo`: the whole pipeline on one machine, with no cluster, cloud account or X API key, through the same
//! code the deployed jobs run.
//!
//! ```text
//!  generator (or --input FILE.jsonl) ─envelopes─▶ bus: in-process channel (or --kafka: producer's publisher
//!    ─▶ raw topic ─▶ the real consumer) ─▶ lake DIR raw/dt=D/<topic>-<partition>-<firstOffset>.ndjson.gz
//!    ─▶ daily transform of every day D ─▶ curated/dt=D/part-00000.parquet ─▶ embedded marts ─▶ report
//! ```
//! The in-process bus hands records to a lake writer with the consumer's object layout and batch size; the
//! consumer's own batcher is private to it, so this writes the same layout through the same lake module.
//! BigQuery and search are the only steps left out: the marts come from [`marts`], whose agreement with the
//! warehouse's SQL `tests/demo.rs` checks against the BigQuery emulator.

pub mod generate;
pub mod marts;
pub mod render;

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write as _},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use cilvest_crds::{CilvestPipeline, WorkerConfig, validate::InvalidSpec};
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde_json::{Value, json};

use crate::{
    bus::{self, BusError},
    consumer::{self, ConsumerError},
    daily::{DailyError, curated, raw},
    lake::{self, LakeError},
    transform::{Counts, CuratedTweet, Day, Rules},
    tweet::{self, Envelope},
};
use render::DemoReport;

/// The pipeline the demo runs unless `--pipeline` names another: Cilvest's own.
const EMBEDDED_PIPELINE: &str = include_str!("../../../examples/cilvest.yaml");
/// Records per lake batch: the consumer's default `--flush-records`.
const FLUSH_RECORDS: usize = 10_000;
/// The in-process bus's capacity: the generator waits when the lake writer falls this far behind.
const BUS_CAPACITY: usize = 4096;
/// The longest the `--kafka` path waits for the consumer to commit everything it was sent.
const KAFKA_DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// `cilvest demo` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Tweets to generate (duplicates included).
    #[arg(long, default_value_t = 20_000)]
    pub tweets: u64,
    /// Local days the generated tweets spread over.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// The first generated local day; fixed by default so that every run prints the same report.
    #[arg(long, default_value = "2026-11-01")]
    pub start: NaiveDate,
    /// Seed of the generator.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Read tweets from this file instead: one X API v2 tweet object with `author_username` per line, or the
    /// producer's envelope `{"tweet": {...}, "author_username": "..."}`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// A `CilvestPipeline` YAML file to run instead of the embedded `examples/cilvest.yaml`.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Go through this Kafka broker (`host:port`): publish with the producer's publisher to a fresh topic and
    /// move it to the lake with the real consumer.
    #[arg(long)]
    pub kafka: Option<String>,
    /// The lake directory (same layout as the GCS bucket). Default: a temporary directory, removed afterwards.
    /// Its raw/, rejected/ and curated/ trees are replaced.
    #[arg(long)]
    pub lake: Option<PathBuf>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write the report as an HTML page with a chart of daily mentions per keyword.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("failed to read the pipeline {path}: {source}")]
    PipelineRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the pipeline {path}: {message}")]
    PipelineParse { path: String, message: String },
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    #[error("invalid time zone {0:?} in the pipeline's schedule")]
    TimeZone(String),
    #[error("failed to read the input {path}: {source}")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to prepare the lake directory {path}: {source}")]
    LakeDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("failed to write {path} to the lake: {source}")]
    Write {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to list {prefix} in the lake: {source}")]
    List {
        prefix: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to compress a lake object: {0}")]
    Compress(#[source] std::io::Error),
    #[error(transparent)]
    Daily(#[from] DailyError),
    #[error("failed to encode or decode the curated parquet of {date}: {source}")]
    Parquet {
        date: NaiveDate,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("failed to create kafka topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("the consumer did not commit every record of topic {topic} within {}s", .timeout.as_secs())]
    KafkaDrain { topic: String, timeout: Duration },
    #[error("the in-process bus closed early")]
    BusClosed,
    #[error("failed to write {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encode the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// The embedded pipeline (or the one in `path`), resolved as the operator would for its workers.
pub fn pipeline_config(path: Option<&std::path::Path>) -> Result<WorkerConfig, DemoError> {
    let (name, text) = match path {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|source| DemoError::PipelineRead {
                path: path.to_owned(),
                source,
            })?,
        ),
        None => (
            "examples/cilvest.yaml (embedded)".to_owned(),
            EMBEDDED_PIPELINE.to_owned(),
        ),
    };
    let pipeline: CilvestPipeline = serde_saphyr::from_str(&text).map_err(|e| DemoError::PipelineParse {
        path: name,
        message: e.to_string(),
    })?;
    cilvest_crds::validate::validate(&pipeline.spec, None)?;
    Ok(WorkerConfig::for_pipeline(&pipeline))
}

/// Run the demo and print its report.
pub async fn run(args: Args) -> Result<(), DemoError> {
    let (report, lake_dir, temporary) = {
        let (lake_dir, temporary) = match &args.lake {
            Some(dir) => (std::path::absolute(dir).unwrap_or_else(|_| dir.clone()), false),
            None => (
                std::env::temp_dir().join(format!(
                    "cilvest-demo-{}-{}",
                    std::process::id(),
                    Utc::now().timestamp_micros()
                )),
                true,
            ),
        };
        let report = execute(&args, &lake_dir).await;
        (report, lake_dir, temporary)
    };
    if temporary {
        // A temporary lake is scratch space, whether or not the run succeeded.
        let _ = std::fs::remove_dir_all(&lake_dir);
    }
    let report = report?;
    if let Some(path) = &args.html {
        std::fs::write(path, render::html(&report)).map_err(|source| DemoError::Output {
            path: path.clone(),
            source,
        })?;
    }
    let out = match args.format {
        Format::Table => render::text(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(|source| DemoError::Output {
            path: PathBuf::from("<stdout>"),
            source,
        })?;
    Ok(())
}

/// Everything but printing: source, bus, lake, transform, marts.
pub async fn execute(args: &Args, lake_dir: &std::path::Path) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let mut progress = Progress::new();
    let config = pipeline_config(args.pipeline.as_deref())?;
    let zone_name = &config.spec.schedule.time_zone;
    let time_zone: Tz = zone_name.parse().map_err(|_| DemoError::TimeZone(zone_name.clone()))?;
    let rules = Rules::new(&config.spec, time_zone);

    progress.stage("generating tweets");
    let records = match &args.input {
        Some(path) => read_input(path)?,
        None => generate::generate(&generate::Plan {
            seed: args.seed,
            tweets: args.tweets,
            start: args.start,
            days: args.days,
            time_zone,
        }),
    };

    for tree in ["raw", "rejected", "curated", "reports"] {
        let dir = lake_dir.join(tree);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| DemoError::LakeDir { path: dir, source })?;
        }
    }
    let lake_uri = format!("file://{}", lake_dir.display());
    let lake = lake::open(&lake_uri, None)?;
    let layout = Layout {
        topic: config.raw_topic.clone(),
        time_zone,
        partitions: config.spec.topics.raw.partitions.max(1),
    };

    let total = records.len() as u64;
    let rejected_records = match &args.kafka {
        None => in_process_bus(records, &lake, &layout, &mut progress).await?,
        Some(bootstrap) => through_kafka(bootstrap, &config, records, &lake_uri, time_zone, &mut progress).await?,
    };

    let days = lake_days(&lake).await?;
    let mut counts = Counts::default();
    let mut rows: Vec<CuratedTweet> = Vec::new();
    for (i, date) in days.iter().enumerate() {
        progress.update("daily transform", i as u64, days.len() as u64);
        let (day_rows, day_counts) = transform_day(&lake, &rules, *date).await?;
        add_counts(&mut counts, &day_counts);
        rows.extend(day_rows);
    }
    counts.per_keyword = rules
        .keyword_names()
        .map(|k| (k.to_owned(), counts.per_keyword.get(k).copied().unwrap_or(0)))
        .collect();

    progress.stage("building marts");
    let marts = marts::compute(&rows);
    let keywords: Vec<String> = rules.keyword_names().map(str::to_owned).collect();
    let hourly = keywords
        .iter()
        .map(|keyword| {
            let mut hours = [0u64; 24];
            for row in marts.keyword_hourly.iter().filter(|h| &h.keyword == keyword) {
                hours[(row.local_hour as usize).min(23)] += row.tweets;
            }
            (keyword.clone(), hours)
        })
        .collect();
    progress.finish();
    Ok(DemoReport {
        pipeline: config.pipeline.clone(),
        time_zone: time_zone.name().to_owned(),
        keywords,
        days,
        records: total,
        rejected_records,
        transform: counts,
        hourly,
        marts,
        lake: if args.lake.is_some() {
            lake_uri
        } else {
            "temporary, removed".to_owned()
        },
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One line of `--input` as the record the producer would publish: envelopes as they are, bare tweets wrapped
/// (their `author_username` moves to the envelope), anything else as it is, for the lake writer to reject.
fn read_input(path: &std::path::Path) -> Result<Vec<Vec<u8>>, DemoError> {
    let text = std::fs::read(path).map_err(|source| DemoError::Input {
        path: path.to_owned(),
        source,
    })?;
    let now = Utc::now();
    let mut records = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(mut tweet)) if !tweet.contains_key("tweet") => {
                let username = tweet
                    .remove("author_username")
                    .and_then(|u| u.as_str().map(str::to_owned));
                serde_json::to_vec(&Envelope::new(Value::Object(tweet), username, now))?
            }
            _ => line.to_vec(),
        };
        records.push(record);
    }
    Ok(records)
}

/// Where the lake writer puts records: the consumer's layout.
struct Layout {
    topic: String,
    time_zone: Tz,
    partitions: i32,
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
        encoder.write_all(b"\n")?;
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
async fn in_process_bus(
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
    let today = Utc::now().with_timezone(&layout.time_zone).date_naive();
    while let Some((key, value)) = receiver.recv().await {
        let partition = layout.partition(&key);
        let offset = offsets[partition as usize];
        offsets[partition as usize] += 1;
        // Like the consumer: a tweet goes to its local day's raw/ folder, anything else to rejected/ with why.
        let pushed = match tweet::parse(&value) {
            Ok(parsed) => {
                let day = parsed.tweet.created_at.with_timezone(&layout.time_zone).date_naive();
                let line: Vec<u8> = value
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect();
                batch.push("raw", day, partition, offset, &line)
            }
            Err(err) => {
                rejected += 1;
                let line = json!({
                    "topic": layout.topic, "partition": partition, "offset": offset,
                    "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "reason": format!("not a tweet envelope: {err}"),
                    "record": String::from_utf8_lossy(&value),
                });
                batch.push("rejected", today, partition, offset, line.to_string().as_bytes())
            }
        };
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
async fn through_kafka(
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
    let mut publisher = bus::Publisher::new(bootstrap, &topic, 1000, bus::BusMetrics::default())?;
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
            bootstrap: bootstrap.to_owned(),
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

/// The local days of `raw/dt=D/` folders in the lake, oldest first.
async fn lake_days(lake: &Arc<dyn ObjectStore>) -> Result<Vec<NaiveDate>, DemoError> {
    let prefix = Path::from("raw");
    let listing = lake
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|source| DemoError::List {
            prefix: prefix.to_string(),
            source,
        })?;
    let mut days: Vec<NaiveDate> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("dt=")?.parse().ok())
        .collect();
    days.sort();
    Ok(days)
}

/// `cilvest daily`'s native engine for one day, without the warehouse and search: read `raw/dt=D/`, transform,
/// write `curated/dt=D/part-00000.parquet`, and read it back as the warehouse would load it.
async fn transform_day(
    lake: &Arc<dyn ObjectStore>,
    rules: &Rules,
    date: NaiveDate,
) -> Result<(Vec<CuratedTweet>, Counts), DemoError> {
    let objects = raw::read_day(lake, date).await?;
    let mut day = Day::new(rules.clone(), date);
    for (_, body) in &objects {
        raw::feed(&mut day, body);
    }
    drop(objects);
    let (rows, counts) = day.finish();
    let parquet_err = |source| DemoError::Parquet { date, source };
    let part = curated::part_path(date);
    let bytes = curated::encode(&rows).map_err(parquet_err)?;
    lake.put(&part, PutPayload::from(bytes))
        .await
        .map_err(|source| DemoError::Write {
            path: part.to_string(),
            source,
        })?;
    let body = lake
        .get(&part)
        .await
        .map_err(|source| DemoError::Write {
            path: part.to_string(),
            source,
        })?
        .bytes()
        .await
        .map_err(|source| DemoError::Write {
            path: part.to_string(),
            source,
        })?;
    let rows = curated::decode(body).map_err(parquet_err)?;
    Ok((rows, counts))
}

fn add_counts(sum: &mut Counts, day: &Counts) {
    sum.tweets_in += day.tweets_in;
    sum.rejected += day.rejected;
    sum.other_day += day.other_day;
    sum.other_language += day.other_language;
    sum.retweets += day.retweets;
    sum.duplicates += day.duplicates;
    sum.kept += day.kept;
    sum.unmatched += day.unmatched;
    for (keyword, n) in &day.per_keyword {
        *sum.per_keyword.entry(keyword.clone()).or_default() += n;
    }
}

/// A one-line progress display on stderr, shown only to a person at a terminal and only once the run has taken
/// more than a second (a fast run should print nothing but its report).
struct Progress {
    started: Instant,
    last_draw: Option<Instant>,
    enabled: bool,
    drawn: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_draw: None,
            enabled: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn stage(&mut self, stage: &str) {
        self.draw(stage, None, true);
    }

    fn update(&mut self, stage: &str, done: u64, total: u64) {
        self.draw(stage, Some((done, total)), false);
    }

    fn draw(&mut self, stage: &str, fraction: Option<(u64, u64)>, force: bool) {
        if !self.enabled || self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        // Ten redraws a second are plenty, and keep a 100,000-record loop from spending its time on the terminal.
        if !force
            && self
                .last_draw
                .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = match fraction {
            Some((done, total)) => {
                let width = 30usize;
                let filled = if total == 0 {
                    width
                } else {
                    (done.min(total) as usize * width) / total as usize
                };
                format!(
                    "{stage:<18} [{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                )
            }
            None => format!("{stage}..."),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line} ({:.1}s)", self.started.elapsed().as_secs_f64());
        let _ = err.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
