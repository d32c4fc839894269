//! The BigQuery warehouse: the client (Google's API in production, an emulator in tests), the day-partitioned
//! `tweets` table, the atomic replacement of one day, and the data marts rebuilt from it.
//!
//! ```text
//!  lake curated/dt=D/*.parquet ─load job, WRITE_TRUNCATE─▶ tweets_staging_D (expires after a day)
//!                                                             │ one MERGE: delete local_date = D, insert staging
//!                                                             ▼
//!                                                           tweets ─CREATE OR REPLACE TABLE … AS SELECT─▶ mart_*
//! ```
//! Loading is free where streaming inserts are billed, and the single MERGE statement is atomic, so readers see
//! day D either before or after a run, never half of it, and running a day twice leaves the same rows.

mod connect;
mod marts;
mod results;
mod schema;
#[cfg(test)]
mod tests;

pub use connect::client;
use connect::{Credentials, token_and_url};
pub use marts::{Mart, marts, views};
use results::{describe_bq_error, describe_errors, is_conflict, job_id, named_row, truncate};
pub use schema::{TWEETS_COLUMNS, counts_schema, tweets_schema};
use schema::{counts_table, staging_table, tweets_table};

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::NaiveDate;
use gcp_bigquery_client::{
    Client,
    auth::Authenticator,
    client_builder::ClientBuilder,
    error::BQError,
    model::{
        data_format_options::DataFormatOptions, dataset::Dataset,
        get_query_results_parameters::GetQueryResultsParameters, job::Job, job_configuration::JobConfiguration,
        job_configuration_load::JobConfigurationLoad, job_reference::JobReference, query_request::QueryRequest,
        table::Table, table_reference::TableReference, table_schema::TableSchema,
    },
};
use serde_json::Value;

use crate::lake::counts::CountedHour;

/// Environment variable naming a BigQuery emulator base URL such as `http://127.0.0.1:9050`.
pub const BQ_ENDPOINT_ENV: &str = "CILVEST_BQ_ENDPOINT";

/// BigQuery's REST API.
const GOOGLE_V2_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";
/// The OAuth scope of BigQuery.
const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// The warehouse table of curated tweets.
pub const TWEETS_TABLE: &str = "tweets";
/// The warehouse table of counted volumes: keyword, local day and hour, posts X counted (counts mode).
pub const COUNTS_TABLE: &str = "tweet_counts";
/// How long one query request waits on the server before we poll for its result.
const QUERY_WAIT: Duration = Duration::from_secs(60);
/// The longest a load or query job may take before the run gives up on it.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Staging tables delete themselves after this long, so a crashed run leaves nothing behind for good.
const STAGING_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("failed to connect to bigquery: {0}")]
    Connect(#[source] BQError),
    #[error("failed to create dataset {dataset}: {source}")]
    Dataset {
        dataset: String,
        #[source]
        source: BQError,
    },
    #[error("failed to {action} table {table}: {source}")]
    Table {
        action: &'static str,
        table: String,
        #[source]
        source: BQError,
    },
    #[error("failed to submit load job into {table}: {message}")]
    LoadSubmit { table: String, message: String },
    #[error("failed to poll bigquery job {job}: {source}")]
    Poll {
        job: String,
        #[source]
        source: BQError,
    },
    #[error("bigquery job {job} failed: {message}")]
    JobFailed { job: String, message: String },
    #[error("bigquery job {job} did not finish within {}s", .timeout.as_secs())]
    Timeout { job: String, timeout: Duration },
    #[error("failed to {what}: {message}")]
    Query { what: String, message: String },
}

/// One result row, by column name. Repeated columns are JSON arrays of their values; TIMESTAMPs are integer
/// microseconds as strings (`useInt64Timestamp`, the same from the emulator and from BigQuery).
pub type Row = BTreeMap<String, Value>;

/// A BigQuery project seen through one client, with the calls the crate lacks.
pub struct Warehouse {
    client: Client,
    auth: Arc<dyn Authenticator>,
    http: reqwest::Client,
    base_url: String,
    project: String,
    location: String,
}

impl Warehouse {
    /// Connect to `project` in `location` through `endpoint` (an emulator) or Google's API.
    pub async fn connect(endpoint: Option<&str>, project: &str, location: &str) -> Result<Self, WarehouseError> {
        let (token, base_url) = token_and_url(endpoint);
        token.check().await.map_err(|e| {
            WarehouseError::Connect(BQError::InvalidApplicationDefaultCredentialsAuthenticator(
                std::io::Error::other(e.to_string()),
            ))
        })?;
        let auth: Arc<dyn Authenticator> = Arc::new(Credentials(token));
        let client = ClientBuilder::new()
            .with_v2_base_url(base_url.clone())
            .build_from_authenticator(Arc::clone(&auth))
            .await
            .map_err(WarehouseError::Connect)?;
        Ok(Self {
            client,
            auth,
            http: reqwest::Client::new(),
            base_url,
            project: project.to_owned(),
            location: location.to_owned(),
        })
    }

    /// The typed client, for calls this module does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The project every table lives in.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// `project.dataset.table`, quoted for SQL. BigQuery (and the emulator) ignore a default dataset for
    /// unqualified names in some paths, so every name we write is fully qualified.
    pub fn table_sql(&self, dataset: &str, table: &str) -> String {
        format!("`{}.{dataset}.{table}`", self.project)
    }

    /// Create `dataset` unless it exists.
    pub async fn ensure_dataset(&self, dataset: &str) -> Result<(), WarehouseError> {
        if self.client.dataset().get(&self.project, dataset).await.is_ok() {
            return Ok(());
        }
        let created = self
            .client
            .dataset()
            .create(Dataset::new(&self.project, dataset).location(&self.location))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(source) if is_conflict(&source) => Ok(()),
            Err(source) => Err(WarehouseError::Dataset {
                dataset: dataset.to_owned(),
                source,
            }),
        }
    }

    /// Create `table` unless it exists. An existing table is left as it is.
    pub async fn ensure_table(&self, table: Table) -> Result<(), WarehouseError> {
        let name = format!(
            "{}.{}",
            table.table_reference.dataset_id, table.table_reference.table_id
        );
        let existing = self
            .client
            .table()
            .get(&self.project, table.dataset_id(), table.table_id(), None)
            .await;
        if existing.is_ok() {
            return Ok(());
        }
        match self.client.table().create(table).await {
            Ok(_) => Ok(()),
            Err(source) if is_conflict(&source) => Ok(()),
            Err(source) => Err(WarehouseError::Table {
                action: "create",
                table: name,
                source,
            }),
        }
    }

    /// Run a load job of Parquet `uris` into `dataset.table` with `schema`, replacing the table's rows, and wait
    /// for it.
    ///
    /// Posted by hand because the crate's load configuration has no `parquetOptions`: without
    /// `enableListInference` BigQuery reads a Parquet list as a nested record instead of a REPEATED column.
    pub async fn load_parquet(
        &self,
        uris: Vec<String>,
        dataset: &str,
        table: &str,
        schema: TableSchema,
    ) -> Result<(), WarehouseError> {
        let name = format!("{dataset}.{table}");
        let job = Job {
            job_reference: Some(JobReference {
                project_id: Some(self.project.clone()),
                location: Some(self.location.clone()),
                job_id: Some(job_id("load")),
            }),
            configuration: Some(JobConfiguration {
                load: Some(JobConfigurationLoad {
                    source_uris: Some(uris),
                    source_format: Some("PARQUET".to_owned()),
                    schema: Some(schema),
                    destination_table: Some(TableReference::new(&self.project, dataset, table)),
                    write_disposition: Some("WRITE_TRUNCATE".to_owned()),
                    create_disposition: Some("CREATE_IF_NEEDED".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let submit_err = |message: String| WarehouseError::LoadSubmit {
            table: name.clone(),
            message,
        };
        let mut body = serde_json::to_value(&job).map_err(|e| submit_err(e.to_string()))?;
        if let Some(load) = body.pointer_mut("/configuration/load").and_then(Value::as_object_mut) {
            load.insert(
                "parquetOptions".to_owned(),
                serde_json::json!({"enableListInference": true}),
            );
        }
        let token = self.auth.access_token().await.map_err(|e| submit_err(e.to_string()))?;
        let response = self
            .http
            .post(format!("{}/projects/{}/jobs", self.base_url, self.project))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| submit_err(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(submit_err(format!("HTTP {status}: {}", truncate(&text, 500))));
        }
        let submitted: Job = response.json().await.map_err(|e| submit_err(e.to_string()))?;
        self.wait_for_job(submitted).await
    }

    /// Poll a job until it is DONE, and turn its error result into an error.
    async fn wait_for_job(&self, mut job: Job) -> Result<(), WarehouseError> {
        let reference = job.job_reference.clone().unwrap_or_default();
        let job_id = reference.job_id.clone().unwrap_or_default();
        let started = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let status = job.status.clone().unwrap_or_default();
            if status.state.as_deref() == Some("DONE") {
                return match status.error_result {
                    Some(error) => Err(WarehouseError::JobFailed {
                        job: job_id,
                        message: describe_errors(std::slice::from_ref(&error)),
                    }),
                    None => Ok(()),
                };
            }
            if started.elapsed() > JOB_TIMEOUT {
                return Err(WarehouseError::Timeout {
                    job: job_id,
                    timeout: JOB_TIMEOUT,
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            job = self
                .client
                .job()
                .get_job(&self.project, &job_id, reference.location.as_deref())
                .await
                .map_err(|source| WarehouseError::Poll {
                    job: job_id.clone(),
                    source,
                })?;
        }
    }

    /// Run one statement and return its rows (none for DDL and DML). `what` says what it does, for the error.
    ///
    /// A failed query may come back as HTTP 200 with an `errors` array (the emulator does this, and BigQuery
    /// reports some failures there too), which the crate treats as success; we do not.
    pub async fn query(&self, what: &str, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        let query_err = |message: String| WarehouseError::Query {
            what: what.to_owned(),
            message,
        };
        let request = QueryRequest {
            location: Some(self.location.clone()),
            timeout_ms: Some(QUERY_WAIT.as_millis() as i32),
            format_options: Some(DataFormatOptions {
                use_int64_timestamp: Some(true),
            }),
            ..QueryRequest::new(sql)
        };
        let response = self
            .client
            .job()
            .query(&self.project, request)
            .await
            .map_err(|e| query_err(describe_bq_error(&e)))?;
        if let Some(errors) = response.errors.as_deref().filter(|e| !e.is_empty()) {
            return Err(query_err(describe_errors(errors)));
        }
        let job = response.job_reference.clone().unwrap_or_default();
        let mut schema = response.schema;
        let mut rows = Vec::new();
        let mut page = response.rows.unwrap_or_default();
        let mut page_token = response.page_token;
        let mut complete = response.job_complete.unwrap_or(false);
        let started = Instant::now();
        loop {
            if complete {
                let fields = schema.as_ref().and_then(|s| s.fields.as_deref()).unwrap_or_default();
                rows.extend(page.drain(..).map(|row| named_row(fields, row)));
                if page_token.is_none() {
                    return Ok(rows);
                }
            } else if started.elapsed() > JOB_TIMEOUT {
                return Err(WarehouseError::Timeout {
                    job: job.job_id.unwrap_or_default(),
                    timeout: JOB_TIMEOUT,
                });
            }
            let job_id = job.job_id.clone().unwrap_or_default();
            let more = self
                .client
                .job()
                .get_query_results(
                    &self.project,
                    &job_id,
                    GetQueryResultsParameters {
                        page_token: page_token.clone(),
                        location: job.location.clone().or_else(|| Some(self.location.clone())),
                        timeout_ms: Some(QUERY_WAIT.as_millis() as i32),
                        format_options: Some(DataFormatOptions {
                            use_int64_timestamp: Some(true),
                        }),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| query_err(describe_bq_error(&e)))?;
            if let Some(errors) = more.errors.as_deref().filter(|e| !e.is_empty()) {
                return Err(query_err(describe_errors(errors)));
            }
            complete = more.job_complete.unwrap_or(false);
            if more.schema.is_some() {
                schema = more.schema;
            }
            page = more.rows.unwrap_or_default();
            page_token = more.page_token;
        }
    }

    /// Make `dataset.tweets` hold exactly the rows of the Parquet objects `uris` for local day `date`, atomically.
    pub async fn replace_day(&self, dataset: &str, date: NaiveDate, uris: Vec<String>) -> Result<(), WarehouseError> {
        self.ensure_dataset(dataset).await?;
        self.ensure_table(tweets_table(&self.project, dataset)).await?;

        let staging = format!("{TWEETS_TABLE}_staging_{}", date.format("%Y%m%d"));
        self.client
            .table()
            .delete_if_exists(&self.project, dataset, &staging)
            .await;
        self.ensure_table(staging_table(&self.project, dataset, &staging))
            .await?;
        self.load_parquet(uris, dataset, &staging, tweets_schema()).await?;

        let columns = TWEETS_COLUMNS.join(", ");
        let values = TWEETS_COLUMNS.map(|c| format!("s.{c}")).join(", ");
        // `ON FALSE` matches nothing: every old row of day D is "not matched by source" and deleted, every staged
        // row is "not matched by target" and inserted, in one atomic statement.
        let merge = format!(
            "MERGE {tweets} AS t USING (SELECT {columns} FROM {staging_sql}) AS s ON FALSE \
             WHEN NOT MATCHED BY SOURCE AND t.local_date = DATE '{date}' THEN DELETE \
             WHEN NOT MATCHED BY TARGET THEN INSERT ({columns}) VALUES ({values})",
            tweets = self.table_sql(dataset, TWEETS_TABLE),
            staging_sql = self.table_sql(dataset, &staging),
        );
        self.query(&format!("replace day {date} of {dataset}.{TWEETS_TABLE}"), &merge)
            .await?;
        self.client
            .table()
            .delete_if_exists(&self.project, dataset, &staging)
            .await;
        Ok(())
    }

    /// Make `dataset.tweet_counts` hold exactly `hours` for local day `date` (all of them of that day). Two
    /// statements, not one: a crash in between leaves the day without counts until the run is repeated, which
    /// the next run does.
    pub async fn replace_counts_day(
        &self,
        dataset: &str,
        date: NaiveDate,
        hours: &[CountedHour],
    ) -> Result<(), WarehouseError> {
        self.ensure_dataset(dataset).await?;
        self.ensure_table(counts_table(&self.project, dataset)).await?;
        let table = self.table_sql(dataset, COUNTS_TABLE);
        self.query(
            &format!("delete day {date} of {dataset}.{COUNTS_TABLE}"),
            &format!("DELETE FROM {table} WHERE local_date = DATE '{date}'"),
        )
        .await?;
        // Keyword names are validated (`[a-z0-9][a-z0-9_-]*`) and the rest are numbers and times: nothing to
        // escape. A day is at most 24 hours x 20 keywords.
        let values: Vec<String> = hours
            .iter()
            .filter(|h| h.local_date == date.to_string())
            .filter(|h| {
                h.keyword
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(|h| {
                format!(
                    "('{}', DATE '{}', {}, TIMESTAMP '{}', {}, TIMESTAMP '{}')",
                    h.keyword,
                    h.local_date,
                    h.local_hour,
                    h.start.format("%Y-%m-%d %H:%M:%S+00"),
                    h.tweet_count,
                    h.fetched_at.format("%Y-%m-%d %H:%M:%S+00")
                )
            })
            .collect();
        if !values.is_empty() {
            self.query(
                &format!("insert day {date} of {dataset}.{COUNTS_TABLE}"),
                &format!(
                    "INSERT INTO {table} (keyword, local_date, local_hour, hour_start, tweets, fetched_at) VALUES {}",
                    values.join(", ")
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Rebuild every mart in `marts_dataset` from `dataset.tweets` and `dataset.tweet_counts`.
    pub async fn rebuild_marts(&self, dataset: &str, marts_dataset: &str) -> Result<(), WarehouseError> {
        self.ensure_dataset(marts_dataset).await?;
        // The keyword marts read counted volumes too; a pipeline without counts has an empty table.
        self.ensure_table(counts_table(&self.project, dataset)).await?;
        let tweets = self.table_sql(dataset, TWEETS_TABLE);
        let counts = self.table_sql(dataset, COUNTS_TABLE);
        let tables = marts(&tweets, &counts).into_iter().map(|m| ("TABLE", m));
        let views = views(|name| self.table_sql(marts_dataset, name))
            .into_iter()
            .map(|v| ("VIEW", v));
        for (kind, mart) in tables.chain(views) {
            let sql = format!(
                "CREATE OR REPLACE {kind} {} AS {}",
                self.table_sql(marts_dataset, mart.name),
                mart.select
            );
            self.query(&format!("rebuild {marts_dataset}.{}", mart.name), &sql)
                .await?;
        }
        Ok(())
    }
}
