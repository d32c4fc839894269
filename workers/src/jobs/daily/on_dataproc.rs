//! One day's transform on Dataproc as `cilvest daily` runs it: upload `transform.py`, run it on a cluster or as a
//! batch, read its Parquet and counts back from the lake, remove its scratch output.

use std::{sync::Arc, time::Duration};

use chrono::NaiveDate;
use cilvest_crds::{Engine, Pipeline, WorkerConfig};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

use crate::google::dataproc::{
    Client, DataprocError, Polling, SparkJob, TRANSFORM_PY, batch_execution, cluster_request, labels, resource_name,
    script_path, transform_config, with_user_labels,
};
use crate::{
    jobs::daily::curated,
    transform::{Counts, CuratedTweet},
    tweet,
};

/// Resolves on SIGTERM (Kubernetes stopping the Job's pod), so the run can delete its cluster before exiting.
pub async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
            tracing::warn!("SIGTERM: stopping the dataproc run and deleting its cluster");
        }
        Err(err) => {
            tracing::warn!(error = %err, "failed to listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

/// One day's transform on Dataproc, as `cilvest daily` runs it.
pub struct DayRun<'a> {
    pub lake: &'a Arc<dyn ObjectStore>,
    pub config: &'a WorkerConfig,
    pub date: NaiveDate,
    /// The Dataproc API base URL; `None` for Google's regional endpoint.
    pub endpoint: Option<&'a str>,
    pub poll_interval: Duration,
}

/// Upload `transform.py`, run it on an ephemeral cluster or as a serverless batch reading `raw/dt=D/` of the
/// pipeline's lake, then read back its rows (ordered like the native engine's) and counts and remove its
/// scratch output. The caller writes `curated/dt=D/part-00000.parquet` from the rows, whichever engine ran.
pub async fn transform_day(run: DayRun<'_>) -> Result<(Vec<CuratedTweet>, Counts), DataprocError> {
    let spec = &run.config.spec;
    let lake_uri = spec.targets.lake.uri.trim_end_matches('/');
    let script = script_path();
    put(run.lake, &script, TRANSFORM_PY.as_bytes().to_vec()).await?;
    let run_id = run_id();
    let out = format!("jobs/out/dt={}/{run_id}", run.date);
    let job = SparkJob {
        main_python_file_uri: format!("{lake_uri}/{script}"),
        args: vec![transform_config(
            spec,
            run.date,
            &format!("{lake_uri}/raw/dt={}", run.date),
            &format!("{lake_uri}/{out}"),
        )],
    };
    let outcome = execute(&run, &run_id, &job).await;
    let result = match outcome {
        Ok(()) => read_output(run.lake, &out).await,
        Err(err) => Err(err),
    };
    // Scratch output, of a failed attempt too; a leftover only costs storage, so a failure here is only logged.
    if let Err(err) = delete_prefix(run.lake, &out).await {
        tracing::warn!(prefix = %out, error = %err, "failed to remove the spark job's scratch output");
    }
    result
}

async fn execute(run: &DayRun<'_>, run_id: &str, job: &SparkJob) -> Result<(), DataprocError> {
    let spec = &run.config.spec;
    let transform = &spec.transform;
    match transform.engine {
        Engine::Native => Err(DataprocError::NativeEngine),
        Engine::Dataproc => {
            let settings = transform
                .dataproc
                .as_ref()
                .ok_or(DataprocError::MissingSettings("dataproc"))?;
            let (mut client, lifetime) = client(run, &settings.project, &settings.region).await?;
            client.polling = Polling {
                interval: run.poll_interval,
                cluster_deadline: Polling::default().cluster_deadline.min(lifetime),
                // Past the lifetime the cluster deletes itself, so waiting longer is pointless.
                job_deadline: lifetime,
            };
            let cluster = cluster_request(
                settings,
                lifetime,
                &run.config.namespace,
                &run.config.pipeline,
                run.date,
                run_id,
            );
            client.run_on_cluster(&cluster, job, sigterm()).await
        }
        Engine::DataprocServerless => {
            let settings = transform
                .dataproc_serverless
                .as_ref()
                .ok_or(DataprocError::MissingSettings("dataprocServerless"))?;
            let (mut client, lifetime) = client(run, &settings.project, &settings.region).await?;
            client.polling = Polling {
                interval: run.poll_interval,
                job_deadline: lifetime,
                ..Polling::default()
            };
            let batch_id = resource_name(&run.config.pipeline, run.date, run_id, 63);
            let labels = with_user_labels(
                labels(&run.config.namespace, &run.config.pipeline, run.date),
                &settings.labels,
            );
            let execution = batch_execution(settings, lifetime);
            client.run_batch(&batch_id, job, &labels, execution, sigterm()).await
        }
    }
}

/// A client for `project`/`region` and the run's maximum lifetime (the engine's `maxLifetime`), which bounds every
/// wait.
async fn client(run: &DayRun<'_>, project: &str, region: &str) -> Result<(Client, Duration), DataprocError> {
    let lifetime = Pipeline::parse(&run.config.spec)?
        .dataproc_max_lifetime
        .ok_or(DataprocError::NativeEngine)?;
    Ok((
        Client::new(
            run.endpoint,
            project,
            region,
            crate::google::dataproc::credentials().await?,
        ),
        lifetime,
    ))
}

/// A short id unique per attempt (hex of the clock's nanoseconds), so a rerun never collides with a leftover.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:010x}", nanos & 0xff_ffff_ffff)
}

async fn put(lake: &Arc<dyn ObjectStore>, path: &str, body: Vec<u8>) -> Result<(), DataprocError> {
    lake.put(&Path::from(path), PutPayload::from(body))
        .await
        .map(drop)
        .map_err(|source| DataprocError::Lake {
            what: "write",
            path: path.to_owned(),
            source,
        })
}

async fn get(lake: &Arc<dyn ObjectStore>, path: &Path) -> Result<bytes::Bytes, DataprocError> {
    let lake_err = |source| DataprocError::Lake {
        what: "read",
        path: path.to_string(),
        source,
    };
    lake.get(path).await.map_err(lake_err)?.bytes().await.map_err(lake_err)
}

async fn list(lake: &Arc<dyn ObjectStore>, prefix: &str) -> Result<Vec<Path>, DataprocError> {
    crate::lake::list_paths(lake.as_ref(), &Path::from(prefix))
        .await
        .map_err(|source| DataprocError::Lake {
            what: "list",
            path: prefix.to_owned(),
            source,
        })
}

/// The job's rows (every Parquet part under `out/curated/`) in the native engine's order, and its counts.
async fn read_output(lake: &Arc<dyn ObjectStore>, out: &str) -> Result<(Vec<CuratedTweet>, Counts), DataprocError> {
    let mut paths = list(lake, &format!("{out}/curated")).await?;
    paths.retain(|path| path.as_ref().ends_with(".parquet"));
    let counts_path = Path::from(format!("{out}/counts/part-00000"));
    if paths.is_empty() {
        return Err(DataprocError::Output(format!(
            "the job succeeded but wrote no parquet under {out}/curated"
        )));
    }
    let mut rows = Vec::new();
    for path in paths {
        let bytes = get(lake, &path).await?;
        rows.extend(curated::decode(bytes).map_err(|e| DataprocError::Output(format!("{path}: {e}")))?);
    }
    rows.sort_by_key(|row| (row.created_at, tweet::id_number(&row.id)));
    let counts = get(lake, &counts_path).await?;
    let counts: Counts =
        serde_json::from_slice(&counts).map_err(|e| DataprocError::Output(format!("{counts_path}: {e}")))?;
    if counts.kept != rows.len() as u64 {
        return Err(DataprocError::Output(format!(
            "the job counted {} kept tweets but wrote {} rows",
            counts.kept,
            rows.len()
        )));
    }
    Ok((rows, counts))
}

async fn delete_prefix(lake: &Arc<dyn ObjectStore>, prefix: &str) -> Result<(), DataprocError> {
    for path in list(lake, prefix).await? {
        lake.delete(&path).await.map_err(|source| DataprocError::Lake {
            what: "delete",
            path: path.to_string(),
            source,
        })?;
    }
    Ok(())
}
