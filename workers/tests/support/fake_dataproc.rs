//! A fake of the Dataproc REST v1 API that keeps the contract the daily job relies on: bearer authentication,
//! `clusters.create/get/list/delete` with long-running `Operation`s (`projects/{p}/regions/{r}/operations/{id}`),
//! `list` filters of the form `field = value [AND field = value]` over `clusterName`, `status.state` (with
//! `ACTIVE`/`INACTIVE`) and `labels.KEY` (`*` matches any value), `jobs:submit`/`jobs.get`, and
//! `batches.create/get`, with Google's error JSON (`{"error": {"code", "message", "status"}}`).
//!
//! States move one step per poll, as the real service moves on its own: a cluster is CREATING until its create
//! operation is polled, a job goes PENDING -> RUNNING -> DONE (or ERROR), a batch PENDING -> RUNNING -> SUCCEEDED
//! (or FAILED), a deleted cluster is DELETING until its delete operation is polled, then gone.
//!
//! ```text
//!  test ──faults / on_job_done──▶ FakeDataproc ◀──REST── dataproc::Client (or the `cilvest daily` binary)
//!       ◀──clusters() / requests() / jobs()──
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::dataproc_fields::unknown_field;

/// Faults for one scenario. Each is a property of the fake's cloud, not of a particular request.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `clusters.create` answers 429 RESOURCE_EXHAUSTED (CPU quota).
    pub create_refused: bool,
    /// The cluster's create operation ends with an error and the cluster stays in ERROR, as a failed
    /// initialisation leaves it: it still exists and still costs until deleted.
    pub cluster_error: bool,
    /// The job ends in ERROR.
    pub job_fails: bool,
    /// The job stays RUNNING forever.
    pub job_hangs: bool,
    /// This many `clusters.delete` calls answer 503 UNAVAILABLE before one succeeds.
    pub delete_unavailable: u32,
    /// The batch ends in FAILED.
    pub batch_fails: bool,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub cluster: String,
    pub state: String,
    pub body: Value,
    polls: u32,
}

#[derive(Clone, Debug)]
struct Operation {
    name: String,
    done: bool,
    error: Option<Value>,
    /// What the operation does when it completes.
    effect: Effect,
    metadata: Value,
}

#[derive(Clone, Debug)]
enum Effect {
    ClusterCreated(String),
    ClusterDeleted(String),
    None,
}

#[derive(Clone, Debug)]
pub struct Batch {
    pub id: String,
    pub state: String,
    pub body: Value,
    polls: u32,
}

/// Called with a job's `pysparkJob` (or a batch's `pysparkBatch`) when it succeeds: the test plays the cluster
/// and writes the job's output.
pub type OnDone = Arc<dyn Fn(&Value) + Send + Sync>;

struct FakeState {
    token: String,
    faults: Faults,
    clusters: BTreeMap<String, Cluster>,
    operations: BTreeMap<String, Operation>,
    jobs: BTreeMap<String, Job>,
    batches: BTreeMap<String, Batch>,
    requests: Vec<Request>,
    next_operation: u64,
    on_done: Option<OnDone>,
}

pub struct FakeDataproc {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDataproc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDataproc {
    /// Start on 127.0.0.1 with an ephemeral port, accepting only `Bearer <token>`.
    pub async fn start(token: &str, faults: Faults) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_owned(),
            faults,
            clusters: BTreeMap::new(),
            operations: BTreeMap::new(),
            jobs: BTreeMap::new(),
            batches: BTreeMap::new(),
            requests: Vec::new(),
            next_operation: 1,
            on_done: None,
        }));
        let app = Router::new().fallback(handle).with_state(Arc::clone(&state));
        let (addr, server) = super::serve(app, "127.0.0.1:0", "Dataproc API").await;
        Self { addr, state, server }
    }

    /// Base URL for `--dataproc-endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn on_done(&self, on_done: OnDone) {
        self.lock().on_done = Some(on_done);
    }

    /// Clusters that exist now, in any state (DELETING included: it still exists).
    pub fn clusters(&self) -> Vec<Cluster> {
        self.lock().clusters.values().cloned().collect()
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.lock().jobs.values().cloned().collect()
    }

    pub fn batches(&self) -> Vec<Batch> {
        self.lock().batches.values().cloned().collect()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// A cluster that exists without any run knowing about it, as a crashed run leaves one.
    pub fn add_running_cluster(&self, project: &str, region: &str, name: &str, labels: Value) {
        let mut state = self.lock();
        let labels: BTreeMap<String, String> = serde_json::from_value(labels).expect("labels");
        state.clusters.insert(
            key(project, region, name),
            Cluster {
                name: name.to_owned(),
                state: "RUNNING".into(),
                labels,
                body: json!({}),
            },
        );
    }
}

fn key(project: &str, region: &str, name: &str) -> String {
    format!("{project}/{region}/{name}")
}

fn error(code: StatusCode, status: &str, message: impl Into<String>) -> (StatusCode, Value) {
    (
        code,
        json!({"error": {"code": code.as_u16(), "message": message.into(), "status": status}}),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
        }
    };
    let (status, answer, on_done) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let authorized = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {}", state.token));
        let (status, answer, on_done) = if authorized {
            route(&mut state, &method, uri.path(), &query, &body)
        } else {
            let (s, a) = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
            (s, a, None)
        };
        state.requests.push(Request {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query,
            body,
            status: status.as_u16(),
        });
        (status, answer, on_done)
    };
    // Outside the lock: the test's callback may take its time writing the output.
    if let Some((callback, job)) = on_done {
        callback(&job);
    }
    (status, [("content-type", "application/json")], answer.to_string()).into_response()
}

type Answer = (StatusCode, Value, Option<(OnDone, Value)>);

fn plain((status, value): (StatusCode, Value)) -> Answer {
    (status, value, None)
}

fn route(state: &mut FakeState, method: &Method, path: &str, query: &BTreeMap<String, String>, body: &Value) -> Answer {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "projects", p, "regions", r, "clusters"]) => plain(create_cluster(state, p, r, body)),
        ("GET", ["v1", "projects", p, "regions", r, "clusters"]) => plain(list_clusters(state, p, r, query)),
        ("GET", ["v1", "projects", p, "regions", r, "clusters", c]) => plain(match state.clusters.get(&key(p, r, c)) {
            Some(cluster) => (StatusCode::OK, cluster_json(p, r, cluster)),
            None => not_found("Cluster", c),
        }),
        ("DELETE", ["v1", "projects", p, "regions", r, "clusters", c]) => plain(delete_cluster(state, p, r, c)),
        ("GET", ["v1", "projects", _, "regions", _, "operations", _]) => {
            plain(get_operation(state, path.trim_start_matches("/v1/")))
        }
        ("POST", ["v1", "projects", p, "regions", r, "jobs:submit"]) => plain(submit_job(state, p, r, body)),
        ("GET", ["v1", "projects", p, "regions", r, "jobs", j]) => get_job(state, p, r, j),
        ("POST", ["v1", "projects", p, "locations", r, "batches"]) => plain(create_batch(state, p, r, query, body)),
        ("GET", ["v1", "projects", p, "locations", r, "batches", b]) => get_batch(state, p, r, b),
        _ => plain(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such method {method} {path}"),
        )),
    }
}

fn not_found(kind: &str, name: &str) -> (StatusCode, Value) {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("Not found: {kind} {name}"))
}

fn cluster_json(project: &str, region: &str, cluster: &Cluster) -> Value {
    let mut value = cluster.body.clone();
    value["projectId"] = json!(project);
    value["clusterName"] = json!(cluster.name);
    value["labels"] = json!(cluster.labels);
    value["status"] = json!({"state": cluster.state});
    if cluster.state == "ERROR" {
        value["status"]["detail"] = json!("Initialization action failed");
    }
    let _ = region;
    value
}

fn new_operation(state: &mut FakeState, project: &str, region: &str, effect: Effect, metadata: Value) -> Value {
    let name = format!(
        "projects/{project}/regions/{region}/operations/op-{}",
        state.next_operation
    );
    state.next_operation += 1;
    let operation = Operation {
        name: name.clone(),
        done: false,
        error: None,
        effect,
        metadata,
    };
    let value = operation_json(&operation);
    state.operations.insert(name, operation);
    value
}

fn operation_json(operation: &Operation) -> Value {
    let mut value = json!({"name": operation.name, "metadata": operation.metadata, "done": operation.done});
    if let Some(error) = &operation.error {
        value["error"] = error.clone();
    }
    value
}

/// Label keys and values as the API validates them: lowercase letters, digits, `_` and `-`, at most 63 characters.
fn valid_label(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn create_cluster(state: &mut FakeState, project: &str, region: &str, body: &Value) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("cluster", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let Some(name) = body["clusterName"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "clusterName is required");
    };
    if body["projectId"].as_str() != Some(project) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "projectId must match the request's project",
        );
    }
    let name_ok = name.len() <= 51
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("invalid cluster name {name}"),
        );
    }
    let labels: BTreeMap<String, String> = match serde_json::from_value(body["labels"].clone()) {
        Ok(labels) => labels,
        Err(_) if body["labels"].is_null() => BTreeMap::new(),
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", format!("labels: {e}")),
    };
    if !labels.iter().all(|(k, v)| valid_label(k) && valid_label(v)) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "invalid label");
    }
    for ttl in ["autoDeleteTtl", "idleDeleteTtl"] {
        let value = &body["config"]["lifecycleConfig"][ttl];
        if !value.is_null()
            && !value
                .as_str()
                .is_some_and(|v| v.ends_with('s') && v[..v.len() - 1].parse::<u64>().is_ok())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("invalid duration {ttl}: {value}"),
            );
        }
    }
    if state.faults.create_refused {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            format!("Insufficient 'CPUS' quota. Requested 8.0, available 4.0 in region {region}."),
        );
    }
    let id = key(project, region, name);
    if state.clusters.contains_key(&id) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Cluster {name}"),
        );
    }
    state.clusters.insert(
        id,
        Cluster {
            name: name.to_owned(),
            state: "CREATING".into(),
            labels,
            body: body.clone(),
        },
    );
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
        "clusterName": name,
        "operationType": "CREATE",
        "status": {"state": "PENDING"},
    });
    let operation = new_operation(
        state,
        project,
        region,
        Effect::ClusterCreated(key(project, region, name)),
        metadata,
    );
    (StatusCode::OK, operation)
}

/// `field = value [AND field = value]`: every clause must hold.
fn matches_filter(cluster: &Cluster, filter: &str) -> Result<bool, String> {
    let normalized = filter.replace(" AND ", " ");
    let tokens: Vec<&str> = normalized.split_whitespace().collect();
    if !tokens.len().is_multiple_of(3) {
        return Err(format!("invalid filter {filter:?}"));
    }
    for clause in tokens.chunks(3) {
        let [field, "=", value] = clause else {
            return Err(format!("invalid filter {filter:?}"));
        };
        let holds = match *field {
            "clusterName" => *value == "*" || cluster.name == *value,
            "status.state" => match *value {
                "ACTIVE" => matches!(cluster.state.as_str(), "CREATING" | "UPDATING" | "RUNNING"),
                "INACTIVE" => matches!(cluster.state.as_str(), "DELETING" | "ERROR" | "STOPPING" | "STOPPED"),
                state => cluster.state == state,
            },
            label if label.starts_with("labels.") => {
                let actual = cluster.labels.get(&label["labels.".len()..]);
                actual.is_some_and(|actual| *value == "*" || actual == value)
            }
            other => return Err(format!("invalid filter field {other:?}")),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list_clusters(
    state: &FakeState,
    project: &str,
    region: &str,
    query: &BTreeMap<String, String>,
) -> (StatusCode, Value) {
    let filter = query.get("filter").map(String::as_str).unwrap_or("");
    let prefix = key(project, region, "");
    let mut clusters = Vec::new();
    for (id, cluster) in &state.clusters {
        if !id.starts_with(&prefix) {
            continue;
        }
        match matches_filter(cluster, filter) {
            Ok(true) => clusters.push(cluster_json(project, region, cluster)),
            Ok(false) => {}
            Err(message) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message),
        }
    }
    // The real API leaves `clusters` out of an empty answer.
    if clusters.is_empty() {
        (StatusCode::OK, json!({}))
    } else {
        (StatusCode::OK, json!({"clusters": clusters}))
    }
}

fn delete_cluster(state: &mut FakeState, project: &str, region: &str, name: &str) -> (StatusCode, Value) {
    if state.faults.delete_unavailable > 0 {
        state.faults.delete_unavailable -= 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        );
    }
    let id = key(project, region, name);
    let Some(cluster) = state.clusters.get_mut(&id) else {
        return not_found("Cluster", name);
    };
    if cluster.state == "DELETING" {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!("Cluster {name} is in state DELETING and cannot be deleted"),
        );
    }
    cluster.state = "DELETING".into();
    // Jobs of a deleted cluster die with it.
    for job in state.jobs.values_mut() {
        if job.cluster == id && !matches!(job.state.as_str(), "DONE" | "ERROR" | "CANCELLED") {
            job.state = "ERROR".into();
        }
    }
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
        "clusterName": name,
        "operationType": "DELETE",
    });
    (
        StatusCode::OK,
        new_operation(state, project, region, Effect::ClusterDeleted(id), metadata),
    )
}

fn get_operation(state: &mut FakeState, name: &str) -> (StatusCode, Value) {
    let cluster_error = state.faults.cluster_error;
    let Some(operation) = state.operations.get_mut(name) else {
        return not_found("Operation", name);
    };
    if !operation.done {
        operation.done = true;
        match operation.effect.clone() {
            Effect::ClusterCreated(id) => {
                if let Some(cluster) = state.clusters.get_mut(&id) {
                    if cluster_error {
                        cluster.state = "ERROR".into();
                        operation.error = Some(json!({"code": 13, "message": "Initialization action failed: exit 1"}));
                    } else {
                        cluster.state = "RUNNING".into();
                    }
                }
            }
            Effect::ClusterDeleted(id) => {
                state.clusters.remove(&id);
            }
            Effect::None => {}
        }
    }
    (StatusCode::OK, operation_json(operation))
}

fn submit_job(state: &mut FakeState, project: &str, region: &str, body: &Value) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("submit", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let job = &body["job"];
    let Some(cluster) = job["placement"]["clusterName"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "job.placement.clusterName is required",
        );
    };
    if job["pysparkJob"]["mainPythonFileUri"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "pysparkJob.mainPythonFileUri is required",
        );
    }
    let cluster_id = key(project, region, cluster);
    match state.clusters.get(&cluster_id) {
        None => return not_found("Cluster", cluster),
        Some(c) if c.state != "RUNNING" => {
            return error(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                format!("Cluster {cluster} is in state {}", c.state),
            );
        }
        Some(_) => {}
    }
    let id = job["reference"]["jobId"]
        .as_str()
        .map_or_else(|| format!("job-{}", state.jobs.len() + 1), str::to_owned);
    let job_key = key(project, region, &id);
    if state.jobs.contains_key(&job_key) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Job {id}"),
        );
    }
    let stored = Job {
        id: id.clone(),
        cluster: cluster_id,
        state: "PENDING".into(),
        body: job.clone(),
        polls: 0,
    };
    let mut answer = job.clone();
    answer["status"] = json!({"state": "PENDING"});
    state.jobs.insert(job_key, stored);
    (StatusCode::OK, answer)
}

fn get_job(state: &mut FakeState, project: &str, region: &str, id: &str) -> Answer {
    let faults = state.faults.clone();
    let on_done = state.on_done.clone();
    let Some(job) = state.jobs.get_mut(&key(project, region, id)) else {
        return plain(not_found("Job", id));
    };
    job.polls += 1;
    let mut finished = None;
    job.state = match (job.state.as_str(), job.polls) {
        ("PENDING", _) => "RUNNING".into(),
        ("RUNNING", _) if faults.job_hangs => "RUNNING".into(),
        ("RUNNING", polls) if polls >= 3 && faults.job_fails => "ERROR".into(),
        ("RUNNING", polls) if polls >= 3 => {
            finished = on_done.map(|callback| (callback, job.body["pysparkJob"].clone()));
            "DONE".into()
        }
        (state, _) => state.to_owned(),
    };
    let mut answer = job.body.clone();
    answer["status"] = json!({"state": job.state});
    if job.state == "ERROR" {
        answer["status"]["details"] =
            json!("Job failed with message [Py4JJavaError: An error occurred while calling o42.parquet]");
    }
    (StatusCode::OK, answer, finished)
}

fn create_batch(
    state: &mut FakeState,
    project: &str,
    region: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("batch", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let Some(id) = query.get("batchId") else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "batchId is required");
    };
    let id_ok = (4..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("invalid batchId {id}"),
        );
    }
    if body["pysparkBatch"]["mainPythonFileUri"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "pysparkBatch.mainPythonFileUri is required",
        );
    }
    let batch_key = key(project, region, id);
    if state.batches.contains_key(&batch_key) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Batch {id}"),
        );
    }
    state.batches.insert(
        batch_key,
        Batch {
            id: id.clone(),
            state: "PENDING".into(),
            body: body.clone(),
            polls: 0,
        },
    );
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.BatchOperationMetadata",
        "batch": format!("projects/{project}/locations/{region}/batches/{id}"),
    });
    let operation = new_operation(state, project, region, Effect::None, metadata);
    (StatusCode::OK, operation)
}

fn get_batch(state: &mut FakeState, project: &str, region: &str, id: &str) -> Answer {
    let faults = state.faults.clone();
    let on_done = state.on_done.clone();
    let Some(batch) = state.batches.get_mut(&key(project, region, id)) else {
        return plain(not_found("Batch", id));
    };
    batch.polls += 1;
    let mut finished = None;
    batch.state = match (batch.state.as_str(), batch.polls) {
        ("PENDING", _) => "RUNNING".into(),
        ("RUNNING", polls) if polls >= 3 && faults.batch_fails => "FAILED".into(),
        ("RUNNING", polls) if polls >= 3 => {
            finished = on_done.map(|callback| (callback, batch.body["pysparkBatch"].clone()));
            "SUCCEEDED".into()
        }
        (state, _) => state.to_owned(),
    };
    let mut answer = batch.body.clone();
    answer["name"] = json!(format!("projects/{project}/locations/{region}/batches/{id}"));
    answer["state"] = json!(batch.state);
    if batch.state == "FAILED" {
        answer["stateMessage"] = json!("Job failed with message [ModuleNotFoundError: No module named 'zoneinfo']");
    }
    (StatusCode::OK, answer, finished)
}
