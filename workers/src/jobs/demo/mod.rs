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
//! warehouse's SQL `tests/demo/` checks against the BigQuery emulator.

mod bus;
mod charts;
pub mod generate;
pub mod marts;
pub mod render;

use std::{
    io::{IsTerminal, Write as _},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{NaiveDate, Utc};
use cilvest_crds::{CilvestPipeline, Pipeline, WorkerConfig, validate::InvalidSpec};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde_json::Value;

use crate::{
    bus::kafka::BusError,
    jobs::consumer::ConsumerError,
    jobs::daily::{self, DailyError, curated},
    lake::{self, LakeError},
    transform::{Counts, CuratedTweet, Rules},
    tweet::Envelope,
};
use render::DemoReport;

/// The pipeline the demo runs unless `--pipeline` names another: Cilvest's own.
const EMBEDDED_PIPELINE: &str = include_str!("../../../../examples/cilvest.yaml");
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
    let time_zone = Pipeline::parse(&config.spec)?.time_zone;
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
    let layout = bus::Layout {
        topic: config.raw_topic.clone(),
        time_zone,
        partitions: config.spec.topics.raw.partitions.max(1),
    };

    let total = records.len() as u64;
    let rejected_records = match &args.kafka {
        None => bus::in_process(records, &lake, &layout, &mut progress).await?,
        Some(bootstrap) => bus::through_kafka(bootstrap, &config, records, &lake_uri, time_zone, &mut progress).await?,
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
        data: match &args.input {
            Some(path) => format!("the posts in {}", path.display()),
            None => format!(
                "generated, not real posts: {} synthetic tweets over {} day(s) from {} (seed {})",
                args.tweets, args.days, args.start, args.seed
            ),
        },
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

/// `cilvest daily`'s native engine for one day, without the warehouse and search: the CronJob's own steps
/// ([`daily::transform_native`], [`daily::write_curated`]), then the curated object read back as the warehouse would
/// load it.
async fn transform_day(
    lake: &Arc<dyn ObjectStore>,
    rules: &Rules,
    date: NaiveDate,
) -> Result<(Vec<CuratedTweet>, Counts), DemoError> {
    let day = daily::transform_native(lake, rules, date).await?;
    let part = daily::write_curated(lake, date, &day.rows).await?;
    let read_err = |source| DemoError::Write {
        path: part.to_string(),
        source,
    };
    let body = lake
        .get(&part)
        .await
        .map_err(read_err)?
        .bytes()
        .await
        .map_err(read_err)?;
    let rows = curated::decode(body).map_err(|source| DemoError::Parquet { date, source })?;
    Ok((rows, day.counts))
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
