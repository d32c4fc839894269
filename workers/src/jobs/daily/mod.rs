//! `cilvest daily`: local days from the lake's raw tweets to curated Parquet, the BigQuery warehouse and its
//! marts, and search: yesterday and the days it must catch up on (`catch_up`), a backfill range, or one day. The transform runs in-process (native) or on Dataproc (`crate::google::dataproc`), per
//! `spec.transform.engine`; what follows it is the same either way.
//!
//! ```text
//!  lake raw/dt=D/*.ndjson.gz ─read─▶ transform::Day ─▶ lake curated/dt=D/part-00000.parquet
//!                                                         ├─▶ BigQuery: load, replace day D of `tweets`, rebuild marts
//!                                                         └─▶ search: delete day D, bulk index D's tweets
//!  report ─▶ lake reports/dt=D.json and the termination message (the operator's status.lastRun)
//! ```
//! Every output is replaced, never appended to, so running a day twice leaves exactly the same data.

pub mod catch_up;
pub mod curated;
pub mod on_dataproc;
mod outputs;
pub mod raw;
pub mod report;

use std::{path::PathBuf, sync::Arc, time::Instant};

use chrono::{Days, NaiveDate, Utc};
use cilvest_crds::{Engine, Pipeline, WorkerConfig, worker_config::ES_PASSWORD_ENV};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

pub use report::Report;

use crate::{
    google::bigquery::{self as warehouse, WarehouseError},
    google::dataproc::{self, DataprocError},
    lake::{self, LakeError},
    search::{SearchClientError, SearchError},
    transform::{Counts, CuratedTweet, Rules},
};

/// Where Kubernetes reads a container's termination message unless the pod says otherwise.
const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// `cilvest daily` flags. The pipeline comes from `--config`; the rest are deployment details and overrides.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "daily")]
pub struct Args {
    /// The worker configuration the operator renders (key `pipeline.json` of the pipeline's ConfigMap).
    #[arg(long, env = "CILVEST_CONFIG", default_value = "/etc/cilvest/pipeline.json")]
    pub config: PathBuf,
    /// Process exactly this local day, `YYYY-MM-DD`. Default: yesterday in the pipeline's time zone, after the
    /// days before it that need catching up (`spec.schedule.catchUpDays`).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub date: Option<NaiveDate>,
    /// Backfill: process every day from this one to `--to`, both included, whatever was done before.
    #[arg(long, requires = "to")]
    pub from: Option<NaiveDate>,
    /// The last day of a backfill (with `--from`).
    #[arg(long, requires = "from")]
    pub to: Option<NaiveDate>,
    /// How many days before yesterday a scheduled run checks, instead of `spec.schedule.catchUpDays`.
    #[arg(long)]
    pub catch_up_days: Option<u32>,
    /// Read and write the lake here instead of the pipeline's `targets.lake.uri`, e.g. `file:///mnt/lake` for a
    /// gcsfuse mount of the same bucket. BigQuery load jobs still name the pipeline's `gs://` objects.
    #[arg(long, env = "CILVEST_LAKE")]
    pub lake: Option<String>,
    /// GCS emulator base URL for `gs://` lakes (no OAuth).
    #[arg(long, env = lake::GCS_ENDPOINT_ENV)]
    pub gcs_endpoint: Option<String>,
    /// BigQuery emulator base URL; without it, Google's API with application default credentials.
    #[arg(long, env = warehouse::BQ_ENDPOINT_ENV)]
    pub bigquery_endpoint: Option<String>,
    /// Elasticsearch URL instead of the pipeline's.
    #[arg(long)]
    pub search_url: Option<String>,
    /// PEM CA bundle to verify Elasticsearch against (ECK's `ca.crt`).
    #[arg(long)]
    pub search_ca: Option<PathBuf>,
    /// Where to write the termination message. Default: /dev/termination-log when it exists (it does in every
    /// Kubernetes container).
    #[arg(long, env = "CILVEST_TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,
    /// Do not load BigQuery or rebuild the marts.
    #[arg(long)]
    pub skip_warehouse: bool,
    /// Do not index search.
    #[arg(long)]
    pub skip_search: bool,
    /// Dataproc API base URL instead of the region's endpoint (a fake in tests). The token comes from
    /// `CILVEST_GCP_ACCESS_TOKEN` when set, application default credentials otherwise.
    #[arg(long, env = dataproc::ENDPOINT_ENV)]
    pub dataproc_endpoint: Option<String>,
    /// How often to poll Dataproc operations, jobs and batches.
    #[arg(long, default_value = "10s", value_parser = cilvest_crds::values::duration_arg)]
    pub dataproc_poll_interval: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    #[error("failed to read the worker configuration {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the worker configuration {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: cilvest_crds::worker_config::ConfigError,
    },
    #[error("invalid worker configuration: {0}")]
    Spec(#[from] cilvest_crds::InvalidSpec),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("failed to list {prefix} in the lake: {source}")]
    List {
        prefix: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to read {path} from the lake: {source}")]
    Read {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the transform of {path} did not finish: {source}")]
    Transform {
        path: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("failed to decompress {path}: {source}")]
    Gzip {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encode the curated parquet of {date}: {source}")]
    Parquet {
        date: NaiveDate,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("failed to write {path} to the lake: {source}")]
    Write {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to delete {path} from the lake: {source}")]
    Delete {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("failed to read the elasticsearch CA {path}: {source}")]
    SearchCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{ES_PASSWORD_ENV} is not set, but elasticsearch user {0} needs a password")]
    SearchPassword(String),
    #[error(transparent)]
    SearchClient(#[from] SearchClientError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Dataproc(#[from] DataprocError),
    #[error("invalid day range: {0}")]
    Range(String),
}

/// A run's settings, resolved from the flags and the worker configuration.
#[derive(Clone)]
struct Job {
    config: WorkerConfig,
    date: NaiveDate,
    time_zone: chrono_tz::Tz,
    rules: Rules,
    lake: Arc<dyn ObjectStore>,
}

/// `cilvest daily`: one day with `--date`, a backfill with `--from`/`--to`, else the scheduled run (the days to
/// catch up on, then yesterday). Every day is tried; the first failure is returned after the others ran.
pub async fn main(args: Args) -> Result<Vec<Report>, DailyError> {
    if args.date.is_some() {
        return run(args).await.map(|report| vec![report]);
    }
    let termination_log = termination_log(&args);
    let planned = match prepare(&args) {
        Ok(job) => plan(&args, &job).await.map(|days| (job, days)),
        Err(err) => Err(err),
    };
    let (job, days) = match planned {
        Ok(planned) => planned,
        Err(err) => {
            let mut report = Report {
                engine: "native".to_owned(),
                ..Report::default()
            };
            finish(&mut report, &Err::<(), _>(&err));
            write_termination(termination_log, report::termination_messages(&[report]));
            return Err(err);
        }
    };
    tracing::info!(days = ?days.iter().map(ToString::to_string).collect::<Vec<_>>(), "daily run plan");
    let mut reports = Vec::with_capacity(days.len());
    let mut first_error = None;
    for date in days {
        let (report, outcome) = run_day(&args, &Job { date, ..job.clone() }).await;
        reports.push(report);
        if let Err(err) = outcome {
            tracing::error!(%date, error = %err, "daily run of a day failed; going on with the next");
            first_error.get_or_insert(err);
        }
    }
    write_termination(termination_log, report::termination_messages(&reports));
    match first_error {
        Some(err) => Err(err),
        None => Ok(reports),
    }
}

/// The days of a run without `--date`, oldest first.
async fn plan(args: &Args, job: &Job) -> Result<Vec<NaiveDate>, DailyError> {
    match (args.from, args.to) {
        (Some(from), Some(to)) => catch_up::range(from, to),
        _ => {
            let catch_up_days = args.catch_up_days.unwrap_or(job.config.spec.schedule.catch_up_days);
            catch_up::scheduled(job.lake.as_ref(), yesterday(job.time_zone), catch_up_days).await
        }
    }
}

/// Run one day (`--date`, or yesterday) and write its report; the report is returned on success, and written on
/// failure too.
pub async fn run(args: Args) -> Result<Report, DailyError> {
    let termination_log = termination_log(&args);
    let (report, outcome) = match prepare(&args) {
        Ok(job) => run_day(&args, &job).await,
        Err(err) => {
            let mut report = Report {
                date: args.date.map(|d| d.to_string()).unwrap_or_default(),
                engine: "native".to_owned(),
                ..Report::default()
            };
            finish(&mut report, &Err::<(), _>(&err));
            (report, Err(err))
        }
    };
    write_termination(termination_log, report.termination_message());
    outcome.map(|()| report)
}

/// One day, its report filled in and written to the lake.
async fn run_day(args: &Args, job: &Job) -> (Report, Result<(), DailyError>) {
    let started = Instant::now();
    let mut report = Report {
        date: job.date.to_string(),
        engine: "native".to_owned(),
        ..Report::default()
    };
    let outcome = execute(args, job, &mut report).await;
    report.durations.total = started.elapsed().as_secs_f64();
    report.duration_seconds = report.durations.total;
    finish(&mut report, &outcome);
    outputs::write_lake_report(job, &report).await;
    (report, outcome)
}

fn termination_log(args: &Args) -> Option<PathBuf> {
    args.termination_log.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_TERMINATION_LOG);
        default.exists().then_some(default)
    })
}

/// The run's outcome stands whether or not Kubernetes gets to read it.
fn write_termination(path: Option<PathBuf>, message: String) {
    if let Some(path) = path
        && let Err(err) = std::fs::write(&path, message)
    {
        tracing::warn!(path = %path.display(), error = %err, "failed to write the termination message");
    }
}

/// The local day that just ended in `time_zone`.
fn yesterday(time_zone: chrono_tz::Tz) -> NaiveDate {
    let today = Utc::now().with_timezone(&time_zone).date_naive();
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}

fn finish<E: std::fmt::Display>(report: &mut Report, outcome: &Result<(), E>) {
    match outcome {
        Ok(()) => {
            report.result = report::SUCCEEDED.to_owned();
            tracing::info!(
                date = %report.date,
                tweets_in = report.tweets_in,
                tweets_kept = report.tweets_kept,
                rejected = report.rejected,
                seconds = report.duration_seconds,
                "daily run succeeded"
            );
        }
        Err(err) => {
            report.result = report::FAILED.to_owned();
            report.message = Some(err.to_string());
        }
    }
}

fn prepare(args: &Args) -> Result<Job, DailyError> {
    let text = std::fs::read_to_string(&args.config).map_err(|source| DailyError::ConfigRead {
        path: args.config.clone(),
        source,
    })?;
    let config = WorkerConfig::from_json(text.as_bytes()).map_err(|source| DailyError::ConfigParse {
        path: args.config.clone(),
        source,
    })?;
    let time_zone = Pipeline::parse(&config.spec)?.time_zone;
    // The CronJob runs after midnight local time: the day to do is the one that just ended.
    let date = args.date.unwrap_or_else(|| yesterday(time_zone));
    let lake_uri = args.lake.as_deref().unwrap_or(&config.spec.targets.lake.uri);
    let lake = lake::open(lake_uri, args.gcs_endpoint.as_deref())?;
    Ok(Job {
        rules: Rules::new(&config.spec, time_zone),
        config,
        date,
        time_zone,
        lake,
    })
}

async fn execute(args: &Args, job: &Job, report: &mut Report) -> Result<(), DailyError> {
    let date = job.date;
    tracing::info!(pipeline = %job.config.pipeline, %date, "daily run starting");
    // The watermark: what the input looked like before it was read (a late object makes the next run redo the day).
    report.input = Some(catch_up::state(job.lake.as_ref(), date).await?);

    let (rows, counts) = match job.config.spec.transform.engine {
        Engine::Native => {
            let day = transform_native(&job.lake, &job.rules, job.date).await?;
            report.objects = day.objects;
            report.durations.read = day.read_seconds;
            report.durations.transform = day.transform_seconds;
            (day.rows, day.counts)
        }
        engine @ (Engine::Dataproc | Engine::DataprocServerless) => {
            report.engine = if engine == Engine::Dataproc {
                "dataproc"
            } else {
                "dataprocServerless"
            }
            .to_owned();
            let step = Instant::now();
            let outcome = on_dataproc::transform_day(on_dataproc::DayRun {
                lake: &job.lake,
                config: &job.config,
                date,
                endpoint: args.dataproc_endpoint.as_deref(),
                poll_interval: args.dataproc_poll_interval,
            })
            .await?;
            report.durations.transform = step.elapsed().as_secs_f64();
            outcome
        }
    };
    report.set_counts(&counts);
    tracing::info!(%date, ?counts, "transformed");

    let step = Instant::now();
    let part = write_curated(&job.lake, job.date, &rows).await?;
    report.outputs.curated = Some(part.to_string());
    report.durations.lake = step.elapsed().as_secs_f64();

    if !args.skip_warehouse {
        let step = Instant::now();
        outputs::load_warehouse(args, job, &part, report).await?;
        report.durations.warehouse = step.elapsed().as_secs_f64();
    }

    if !args.skip_search {
        let step = Instant::now();
        outputs::index_search(args, job, &rows, report).await?;
        report.durations.search = step.elapsed().as_secs_f64();
    }
    Ok(())
}

/// A day transformed by the native engine, with how long its steps took.
pub struct NativeDay {
    pub rows: Vec<CuratedTweet>,
    pub counts: Counts,
    /// Raw objects read.
    pub objects: u64,
    pub read_seconds: f64,
    pub transform_seconds: f64,
}

/// The transform in this process: read `raw/dt=D/` and run [`Day`](crate::transform::Day) over it. The CronJob's run and the demo both
/// call this, then [`write_curated`].
pub async fn transform_native(
    lake: &Arc<dyn ObjectStore>,
    rules: &Rules,
    date: NaiveDate,
) -> Result<NativeDay, DailyError> {
    // Reading and transforming overlap (`raw::transform_day`), so their times are not told apart: `read_seconds` is
    // 0 and `transform_seconds` covers both.
    let step = Instant::now();
    let (day, object_count) = raw::transform_day(lake, rules, date).await?;
    let read_seconds = 0.0;
    for rejection in day.rejections() {
        tracing::warn!(%date, error = %rejection, "rejected a raw line");
    }
    let (rows, counts) = day.finish();
    Ok(NativeDay {
        rows,
        counts,
        objects: object_count,
        read_seconds,
        transform_seconds: step.elapsed().as_secs_f64(),
    })
}

/// Write the day's one Parquet object, then delete any other object of the day (parts of an older layout or of
/// another engine), so the folder holds exactly this run's rows and readers never see it empty.
pub async fn write_curated(
    lake: &Arc<dyn ObjectStore>,
    date: NaiveDate,
    rows: &[CuratedTweet],
) -> Result<Path, DailyError> {
    let part = curated::part_path(date);
    let bytes = curated::encode(rows).map_err(|source| DailyError::Parquet { date, source })?;
    lake.put(&part, PutPayload::from(bytes))
        .await
        .map_err(|source| DailyError::Write {
            path: part.to_string(),
            source,
        })?;
    let prefix = Path::from(curated::day_prefix(date));
    let stale = crate::lake::list_paths(lake.as_ref(), &prefix)
        .await
        .map_err(|source| DailyError::List {
            prefix: prefix.to_string(),
            source,
        })?;
    for path in stale.into_iter().filter(|path| *path != part) {
        lake.delete(&path).await.map_err(|source| DailyError::Delete {
            path: path.to_string(),
            source,
        })?;
    }
    Ok(part)
}
