//! `cilvest daily`: one local day from the lake's raw tweets to curated Parquet, the BigQuery warehouse and its
//! marts, and search. The transform runs in-process (native) or on Dataproc (`crate::google::dataproc`), per
//! `spec.transform.engine`; what follows it is the same either way.
//!
//! ```text
//!  lake raw/dt=D/*.ndjson.gz ─read─▶ transform::Day ─▶ lake curated/dt=D/part-00000.parquet
//!                                                         ├─▶ BigQuery: load, replace day D of `tweets`, rebuild marts
//!                                                         └─▶ search: delete day D, bulk index D's tweets
//!  report ─▶ lake reports/dt=D.json and the termination message (the operator's status.lastRun)
//! ```
//! Every output is replaced, never appended to, so running a day twice leaves exactly the same data.

pub mod curated;
pub mod on_dataproc;
pub mod raw;
pub mod report;

use std::{path::PathBuf, sync::Arc, time::Instant};

use chrono::{Days, NaiveDate, Utc};
use cilvest_crds::{Engine, Pipeline, WorkerConfig, worker_config::ES_PASSWORD_ENV};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

pub use report::Report;

use crate::{
    google::bigquery::{self as warehouse, Warehouse, WarehouseError},
    google::dataproc::{self, DataprocError},
    lake::{self, LakeError},
    search::{self, BasicAuth, BulkRetry, SearchClientError, SearchError},
    transform::{Counts, CuratedTweet, Day, Rules},
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
    /// The local day to process, `YYYY-MM-DD`. Default: yesterday in the pipeline's time zone.
    #[arg(long)]
    pub date: Option<NaiveDate>,
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
}

/// A run's settings, resolved from the flags and the worker configuration.
struct Job {
    config: WorkerConfig,
    date: NaiveDate,
    rules: Rules,
    lake: Arc<dyn ObjectStore>,
}

/// Run one day and write its report; the report is returned on success, and written on failure too.
pub async fn run(args: Args) -> Result<Report, DailyError> {
    let started = Instant::now();
    let termination_log = args.termination_log.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_TERMINATION_LOG);
        default.exists().then_some(default)
    });
    let mut report = Report {
        date: args.date.map(|d| d.to_string()).unwrap_or_default(),
        engine: "native".to_owned(),
        ..Report::default()
    };
    let outcome = match prepare(&args) {
        Ok(job) => {
            report.date = job.date.to_string();
            let outcome = execute(&args, &job, &mut report).await;
            report.durations.total = started.elapsed().as_secs_f64();
            report.duration_seconds = report.durations.total;
            finish(&mut report, &outcome);
            write_lake_report(&job, &report).await;
            outcome
        }
        Err(err) => {
            finish(&mut report, &Err::<(), _>(&err));
            Err(err)
        }
    };
    if let Some(path) = termination_log {
        // The run's outcome stands whether or not Kubernetes gets to read it.
        if let Err(err) = std::fs::write(&path, report.termination_message()) {
            tracing::warn!(path = %path.display(), error = %err, "failed to write the termination message");
        }
    }
    outcome.map(|()| report)
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
    let date = args.date.unwrap_or_else(|| {
        let today = Utc::now().with_timezone(&time_zone).date_naive();
        today.checked_sub_days(Days::new(1)).unwrap_or(today)
    });
    let lake_uri = args.lake.as_deref().unwrap_or(&config.spec.targets.lake.uri);
    let lake = lake::open(lake_uri, args.gcs_endpoint.as_deref())?;
    Ok(Job {
        rules: Rules::new(&config.spec, time_zone),
        config,
        date,
        lake,
    })
}

async fn execute(args: &Args, job: &Job, report: &mut Report) -> Result<(), DailyError> {
    let date = job.date;
    tracing::info!(pipeline = %job.config.pipeline, %date, "daily run starting");

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
        load_warehouse(args, job, &part, report).await?;
        report.durations.warehouse = step.elapsed().as_secs_f64();
    }

    if !args.skip_search {
        let step = Instant::now();
        index_search(args, job, &rows, report).await?;
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

/// The transform in this process: read `raw/dt=D/` and run [`Day`] over it. The CronJob's run and the demo both
/// call this, then [`write_curated`].
pub async fn transform_native(
    lake: &Arc<dyn ObjectStore>,
    rules: &Rules,
    date: NaiveDate,
) -> Result<NativeDay, DailyError> {
    let step = Instant::now();
    let objects = raw::read_day(lake, date).await?;
    let read_seconds = step.elapsed().as_secs_f64();
    let object_count = objects.len() as u64;

    // CPU-bound on the runtime's thread, which is fine: nothing else runs meanwhile, and 100,000 tweets take
    // about a second in a release build.
    let step = Instant::now();
    let mut day = Day::new(rules.clone(), date);
    for (_, body) in &objects {
        raw::feed(&mut day, body);
    }
    drop(objects);
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

async fn load_warehouse(args: &Args, job: &Job, part: &Path, report: &mut Report) -> Result<(), DailyError> {
    let bigquery = &job.config.spec.targets.bigquery;
    let warehouse =
        Warehouse::connect(args.bigquery_endpoint.as_deref(), &bigquery.project, &bigquery.location).await?;
    // BigQuery reads the pipeline's bucket itself, whatever path this process used to reach it.
    let uri = format!("{}/{part}", job.config.spec.targets.lake.uri.trim_end_matches('/'));
    warehouse.replace_day(&bigquery.dataset, job.date, vec![uri]).await?;
    // Counted volumes (keywords in `counts` or `both` mode) of the day, as the producer left them in the lake.
    let counted = crate::lake::counts::read_day(job.lake.as_ref(), &job.date.to_string())
        .await
        .map_err(|source| DailyError::Read {
            path: format!("{}/dt={}", crate::lake::counts::COUNTS_PREFIX, job.date),
            source,
        })?;
    warehouse
        .replace_counts_day(&bigquery.dataset, job.date, &counted)
        .await?;
    let marts = bigquery.marts_dataset.as_deref().unwrap_or(&bigquery.dataset);
    warehouse.rebuild_marts(&bigquery.dataset, marts).await?;
    report.outputs.warehouse = Some(format!(
        "{}.{}.{}",
        bigquery.project,
        bigquery.dataset,
        warehouse::TWEETS_TABLE
    ));
    report.outputs.marts = Some(format!("{}.{marts}", bigquery.project));
    tracing::info!(date = %job.date, dataset = %bigquery.dataset, marts, "warehouse loaded and marts rebuilt");
    Ok(())
}

async fn index_search(args: &Args, job: &Job, rows: &[CuratedTweet], report: &mut Report) -> Result<(), DailyError> {
    let target = job.config.spec.targets.elasticsearch.as_ref();
    let Some(url) = args.search_url.as_ref().or(job.config.search_url.as_ref()) else {
        tracing::info!("the pipeline has no search target");
        return Ok(());
    };
    let alias = target.map_or_else(|| "cilvest-tweets".to_owned(), |t| t.index.clone());
    let auth = match &job.config.search_username {
        Some(username) => Some(BasicAuth {
            username: username.clone(),
            password: std::env::var(ES_PASSWORD_ENV).map_err(|_| DailyError::SearchPassword(username.clone()))?,
        }),
        None => None,
    };
    let ca = match &args.search_ca {
        Some(path) => Some(std::fs::read(path).map_err(|source| DailyError::SearchCa {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let es = search::client(url, auth, ca.as_deref())?;
    let index = search::monthly_index(&alias, job.date);
    search::ensure_index(&es, &alias, &index).await?;
    let deleted = search::delete_day(&es, &alias, job.date).await?;
    let docs: Vec<(String, serde_json::Value)> = rows.iter().map(|r| (r.id.clone(), search::document(r))).collect();
    let outcome = search::bulk_index(&es, &index, &docs, BulkRetry::default()).await?;
    search::refresh(&es, &index).await?;
    report.outputs.search_index = Some(index.clone());
    report.outputs.search_documents = Some(outcome.indexed as u64);
    report.outputs.search_retries = Some(outcome.retries as u64);
    tracing::info!(%index, deleted, indexed = outcome.indexed, retries = outcome.retries, "search indexed");
    outcome.into_result(&index, docs.len())?;
    Ok(())
}

/// `reports/dt=D.json`. Best effort: a run whose lake is unreachable still reports through its termination message.
async fn write_lake_report(job: &Job, report: &Report) {
    let path = Path::from(format!("reports/dt={}.json", job.date));
    let body = match serde_json::to_vec_pretty(report) {
        Ok(body) => body,
        Err(err) => {
            tracing::warn!(error = %err, "failed to encode the run report");
            return;
        }
    };
    if let Err(err) = job.lake.put(&path, PutPayload::from(body)).await {
        tracing::warn!(%path, error = %err, "failed to write the run report to the lake");
    }
}
