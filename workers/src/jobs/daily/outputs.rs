//! Where a transformed day goes after the lake's curated Parquet: the BigQuery warehouse and its marts, search, and
//! the run report in the lake.

use object_store::{ObjectStoreExt, PutPayload, path::Path};

use cilvest_crds::worker_config::ES_PASSWORD_ENV;

use super::{Args, DailyError, Job, Report, catch_up};
use crate::{
    google::bigquery::{self as warehouse, Warehouse},
    search::{self, BasicAuth, BulkRetry},
    transform::CuratedTweet,
};

pub(super) async fn load_warehouse(args: &Args, job: &Job, part: &Path, report: &mut Report) -> Result<(), DailyError> {
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

pub(super) async fn index_search(
    args: &Args,
    job: &Job,
    rows: &[CuratedTweet],
    report: &mut Report,
) -> Result<(), DailyError> {
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
    let docs: Vec<(String, serde_json::Value)> = rows.iter().map(|r| (r.id.to_string(), search::document(r))).collect();
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
pub(super) async fn write_lake_report(job: &Job, report: &Report) {
    let path = catch_up::report_path(job.date);
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
