//! The Dataproc engine of the daily transform: `workers/spark/transform.py` on an ephemeral Dataproc cluster that
//! is always deleted, or as a Dataproc Serverless batch, through the Dataproc REST v1 API.
//!
//! ```text
//!  delete clusters labelled with this pipeline (a crashed run's) ─▶ create cluster (lifecycleConfig TTLs)
//!    ─▶ poll operation ─▶ jobs:submit pysparkJob ─▶ poll job (deadline) ─▶ DELETE cluster (always, also on SIGTERM)
//!  serverless: batches.create pysparkBatch (ttl) ─▶ poll batch (deadline)
//! ```
//! The cluster's `autoDeleteTtl` is the backstop: even a run killed with SIGKILL cannot leave its cluster running
//! past the spec's `maxLifetime`, and the next run deletes it at its start anyway.

mod error;
mod requests;

pub use error::DataprocError;
pub use requests::{
    ClusterRequest, batch_execution, cluster_request, duration_string, label_value, labels, resource_name, script_path,
    transform_config, with_user_labels,
};
use requests::{encode, request_id};

use std::{future::Future, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{google::auth::GoogleToken, retry::Backoff};

/// The PySpark transform, shipped inside the binary and uploaded to the lake before each run.
pub const TRANSFORM_PY: &str = include_str!("../../../spark/transform.py");
/// The label every cluster of a pipeline carries, so a later run finds what a crashed one left behind.
pub const PIPELINE_LABEL: &str = "cilvest-pipeline";
/// The label carrying the pipeline's namespace: two namespaces may hold pipelines of the same name.
pub const NAMESPACE_LABEL: &str = "cilvest-namespace";
/// The label naming the day a cluster was created for.
pub const DATE_LABEL: &str = "cilvest-run-date";
/// Environment variable with the Dataproc API base URL (a fake server in tests).
pub const ENDPOINT_ENV: &str = "CILVEST_DATAPROC_ENDPOINT";
/// A cluster with nothing to run is deleted after this long, should both the run and its cleanup be gone.
pub const IDLE_DELETE_TTL: Duration = Duration::from_secs(600);
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Attempts at deleting a cluster: a transient 5xx must not leak the cluster.
const DELETE_ATTEMPTS: u32 = 6;

/// The workers' Google credentials, checked now: a run without any fails before it creates anything.
pub async fn credentials() -> Result<GoogleToken, DataprocError> {
    let token = GoogleToken::from_env();
    token.check().await.map_err(|e| DataprocError::Token(e.to_string()))?;
    Ok(token)
}

/// How often to poll and how long to wait.
#[derive(Clone, Copy, Debug)]
pub struct Polling {
    pub interval: Duration,
    /// Upper bound on cluster creation and on deletion.
    pub cluster_deadline: Duration,
    /// Upper bound on the Spark job or batch.
    pub job_deadline: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            cluster_deadline: Duration::from_secs(15 * 60),
            job_deadline: Duration::from_secs(2 * 3600),
        }
    }
}

/// A Dataproc REST v1 client for one project and region.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    project: String,
    region: String,
    token: GoogleToken,
    pub polling: Polling,
}

/// What to run: the uploaded script and its arguments.
#[derive(Clone, Debug)]
pub struct SparkJob {
    pub main_python_file_uri: String,
    pub args: Vec<String>,
}

impl Client {
    /// A client for `endpoint` or, without one, the region's endpoint `https://{region}-dataproc.googleapis.com`.
    pub fn new(endpoint: Option<&str>, project: &str, region: &str, token: GoogleToken) -> Self {
        let base = endpoint.map_or_else(
            || format!("https://{region}-dataproc.googleapis.com"),
            |e| e.trim_end_matches('/').to_owned(),
        );
        // Every call is small; a hung connection must not outlive the run's deadlines.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base,
            project: project.to_owned(),
            region: region.to_owned(),
            token,
            polling: Polling::default(),
        }
    }

    fn clusters_url(&self) -> String {
        format!(
            "{}/v1/projects/{}/regions/{}/clusters",
            self.base, self.project, self.region
        )
    }

    /// One API call. Reads (the polls) are retried on 429 and 5xx: a blip while polling a two-hour job must not
    /// fail the day. Writes are not: create and submit carry request ids, and delete has its own retry.
    async fn call(&self, what: &str, method: Method, url: &str, body: Option<&Value>) -> Result<Value, DataprocError> {
        const READ_ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match self.call_once(what, method.clone(), url, body).await {
                Err(err) if method == Method::GET && err.is_transient() && attempt < READ_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "retrying a dataproc read");
                    tokio::time::sleep(Backoff::new(self.polling.interval, self.polling.interval * 4).wait(attempt))
                        .await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn call_once(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, DataprocError> {
        let token = self
            .token
            .token(SCOPE)
            .await
            .map_err(|e| DataprocError::Token(e.to_string()))?;
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let http = |source| DataprocError::Http {
            what: what.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let text = response.text().await.map_err(http)?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        // Google's error body: {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED"}}.
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(DataprocError::Api {
            what: what.to_owned(),
            code: status.as_u16(),
            status: error["error"]["status"]
                .as_str()
                .map_or_else(|| status.canonical_reason().unwrap_or("").to_owned(), str::to_owned),
            message: error["error"]["message"].as_str().unwrap_or(&text).to_owned(),
        })
    }

    /// The names of this region's clusters labelled with `namespace` and `pipeline`, except those already being
    /// deleted (deleting one again is refused with FAILED_PRECONDITION).
    pub async fn list_pipeline_clusters(&self, namespace: &str, pipeline: &str) -> Result<Vec<String>, DataprocError> {
        let filter = format!(
            "labels.{NAMESPACE_LABEL} = {} AND labels.{PIPELINE_LABEL} = {}",
            label_value(namespace),
            label_value(pipeline)
        );
        let mut names = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!("{}?filter={}", self.clusters_url(), encode(&filter));
            if let Some(token) = &page_token {
                url.push_str(&format!("&pageToken={}", encode(token)));
            }
            let page = self.call("list clusters", Method::GET, &url, None).await?;
            for cluster in page["clusters"].as_array().into_iter().flatten() {
                if cluster["status"]["state"].as_str() == Some("DELETING") {
                    continue;
                }
                if let Some(name) = cluster["clusterName"].as_str() {
                    names.push(name.to_owned());
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// Delete every cluster a previous run of `pipeline` left behind (a crash, a SIGKILL).
    pub async fn delete_leftovers(&self, namespace: &str, pipeline: &str) -> Result<Vec<String>, DataprocError> {
        let leftovers = self.list_pipeline_clusters(namespace, pipeline).await?;
        for cluster in &leftovers {
            tracing::warn!(%cluster, "deleting a dataproc cluster a previous run left behind");
            self.delete_cluster(cluster).await?;
        }
        Ok(leftovers)
    }

    /// Delete `cluster` and wait until it is gone. 5xx and 429 are retried; a cluster that does not exist is
    /// already deleted.
    pub async fn delete_cluster(&self, cluster: &str) -> Result<(), DataprocError> {
        let url = format!("{}/{cluster}", self.clusters_url());
        let mut attempt = 0;
        let operation = loop {
            attempt += 1;
            match self.call("delete cluster", Method::DELETE, &url, None).await {
                Ok(operation) => break operation,
                Err(err) if err.is_not_found() => return Ok(()),
                Err(err) if err.is_transient() && attempt < DELETE_ATTEMPTS => {
                    tracing::warn!(%cluster, error = %err, attempt, "retrying the cluster deletion");
                    tokio::time::sleep(Backoff::new(self.polling.interval, self.polling.interval * 4).wait(attempt))
                        .await;
                }
                Err(err) => {
                    return Err(DataprocError::DeleteFailed {
                        cluster: cluster.to_owned(),
                        message: err.to_string(),
                    });
                }
            }
        };
        self.wait_operation(&operation, &format!("deletion of cluster {cluster}"))
            .await
            .map_err(|err| DataprocError::DeleteFailed {
                cluster: cluster.to_owned(),
                message: err.to_string(),
            })?;
        tracing::info!(%cluster, "dataproc cluster deleted");
        Ok(())
    }

    /// Poll a long-running operation until `done`; its `error` fails it.
    async fn wait_operation(&self, operation: &Value, what: &str) -> Result<Value, DataprocError> {
        let started = Instant::now();
        let mut operation = operation.clone();
        loop {
            if operation["done"].as_bool() == Some(true) {
                if let Some(error) = operation.get("error") {
                    return Err(DataprocError::Api {
                        what: what.to_owned(),
                        code: error["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
                        status: "OPERATION_FAILED".into(),
                        message: error["message"].as_str().unwrap_or("").to_owned(),
                    });
                }
                return Ok(operation);
            }
            let Some(name) = operation["name"].as_str().map(str::to_owned) else {
                return Ok(operation);
            };
            if started.elapsed() > self.polling.cluster_deadline {
                return Err(DataprocError::Deadline {
                    what: what.to_owned(),
                    deadline: self.polling.cluster_deadline,
                });
            }
            tokio::time::sleep(self.polling.interval).await;
            operation = self
                .call("get operation", Method::GET, &format!("{}/v1/{name}", self.base), None)
                .await?;
        }
    }

    /// Create `cluster` and wait until it is RUNNING.
    async fn create_cluster(&self, cluster: &str, body: &Value) -> Result<(), DataprocError> {
        let url = format!("{}?requestId={}", self.clusters_url(), request_id(cluster));
        let operation = self
            .call("create cluster", Method::POST, &url, Some(body))
            .await
            .map_err(|err| DataprocError::ClusterFailed {
                cluster: cluster.to_owned(),
                message: err.to_string(),
            })?;
        let fail = |message: String| DataprocError::ClusterFailed {
            cluster: cluster.to_owned(),
            message,
        };
        self.wait_operation(&operation, &format!("creation of cluster {cluster}"))
            .await
            .map_err(|err| fail(err.to_string()))?;
        let started = Instant::now();
        loop {
            let state = self
                .call(
                    "get cluster",
                    Method::GET,
                    &format!("{}/{cluster}", self.clusters_url()),
                    None,
                )
                .await?;
            match state["status"]["state"].as_str().unwrap_or("UNKNOWN") {
                "RUNNING" => return Ok(()),
                "ERROR" | "ERROR_DUE_TO_UPDATE" | "DELETING" | "STOPPED" | "STOPPING" => {
                    let detail = state["status"]["detail"].as_str().unwrap_or("");
                    return Err(fail(format!("cluster is {}: {detail}", state["status"]["state"])));
                }
                _ if started.elapsed() > self.polling.cluster_deadline => {
                    return Err(DataprocError::Deadline {
                        what: format!("creation of cluster {cluster}"),
                        deadline: self.polling.cluster_deadline,
                    });
                }
                _ => tokio::time::sleep(self.polling.interval).await,
            }
        }
    }

    /// Submit `job` to `cluster` and poll it until it ends or its deadline passes.
    async fn run_job(&self, cluster: &str, job_id: &str, job: &SparkJob, labels: &Value) -> Result<(), DataprocError> {
        let jobs = format!(
            "{}/v1/projects/{}/regions/{}/jobs",
            self.base, self.project, self.region
        );
        let body = json!({
            "job": {
                "reference": {"projectId": self.project, "jobId": job_id},
                "placement": {"clusterName": cluster},
                "labels": labels,
                "pysparkJob": {"mainPythonFileUri": job.main_python_file_uri, "args": job.args},
            },
            "requestId": request_id(job_id),
        });
        self.call("submit job", Method::POST, &format!("{jobs}:submit"), Some(&body))
            .await?;
        let started = Instant::now();
        loop {
            let state = self
                .call("get job", Method::GET, &format!("{jobs}/{job_id}"), None)
                .await?;
            let status = &state["status"];
            match status["state"].as_str().unwrap_or("STATE_UNSPECIFIED") {
                "DONE" => return Ok(()),
                terminal @ ("ERROR" | "CANCELLED") => {
                    return Err(DataprocError::JobFailed {
                        cluster: cluster.to_owned(),
                        job: job_id.to_owned(),
                        state: terminal.to_owned(),
                        message: status["details"].as_str().unwrap_or("").to_owned(),
                    });
                }
                _ if started.elapsed() > self.polling.job_deadline => {
                    return Err(DataprocError::Deadline {
                        what: format!("job {job_id}"),
                        deadline: self.polling.job_deadline,
                    });
                }
                _ => tokio::time::sleep(self.polling.interval).await,
            }
        }
    }

    /// Run `job` on a fresh cluster named `cluster`, deleting it however the run ends: success, failure, or
    /// `shutdown` (SIGTERM) completing first. Leftover clusters of the pipeline are deleted before creating one.
    pub async fn run_on_cluster(
        &self,
        cluster: &ClusterRequest,
        job: &SparkJob,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DataprocError> {
        self.delete_leftovers(&cluster.namespace, &cluster.pipeline).await?;
        let job_id = format!("{}-transform", cluster.name);
        let run = async {
            tracing::info!(cluster = %cluster.name, "creating the dataproc cluster");
            self.create_cluster(&cluster.name, &cluster.body).await?;
            tracing::info!(cluster = %cluster.name, job = %job_id, "submitting the transform");
            self.run_job(&cluster.name, &job_id, job, &cluster.body["labels"]).await
        };
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = shutdown => Err(DataprocError::Terminated { what: format!("cluster {}", cluster.name) }),
        };
        // Always, whatever the outcome: this is the whole point of the engine.
        let deleted = self.delete_cluster(&cluster.name).await;
        match (outcome, deleted) {
            (Err(err), Err(delete)) => {
                tracing::error!(error = %delete, "the cluster deletion failed too; its autoDeleteTtl remains");
                Err(err)
            }
            (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Run `job` as a Dataproc Serverless batch and poll it until it ends or its deadline passes.
    pub async fn run_batch(
        &self,
        batch_id: &str,
        job: &SparkJob,
        labels: &Value,
        execution: Value,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DataprocError> {
        let batches = format!(
            "{}/v1/projects/{}/locations/{}/batches",
            self.base, self.project, self.region
        );
        let body = json!({
            "pysparkBatch": {"mainPythonFileUri": job.main_python_file_uri, "args": job.args},
            "labels": labels,
            "environmentConfig": {"executionConfig": execution},
        });
        let run = async {
            self.call(
                "create batch",
                Method::POST,
                &format!("{batches}?batchId={batch_id}&requestId={}", request_id(batch_id)),
                Some(&body),
            )
            .await?;
            let started = Instant::now();
            loop {
                let batch = self
                    .call("get batch", Method::GET, &format!("{batches}/{batch_id}"), None)
                    .await?;
                match batch["state"].as_str().unwrap_or("STATE_UNSPECIFIED") {
                    "SUCCEEDED" => return Ok(()),
                    terminal @ ("FAILED" | "CANCELLED") => {
                        return Err(DataprocError::BatchFailed {
                            batch: batch_id.to_owned(),
                            state: terminal.to_owned(),
                            message: batch["stateMessage"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    _ if started.elapsed() > self.polling.job_deadline => {
                        return Err(DataprocError::Deadline {
                            what: format!("batch {batch_id}"),
                            deadline: self.polling.job_deadline,
                        });
                    }
                    _ => tokio::time::sleep(self.polling.interval).await,
                }
            }
        };
        tokio::select! {
            outcome = run => outcome,
            // The batch's ttl bounds what is left running; there is no cluster to delete.
            () = shutdown => Err(DataprocError::Terminated { what: format!("batch {batch_id}") }),
        }
    }
}
