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

mod clusters;
mod jobs;

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

use clusters::{cluster_json, create_cluster, delete_cluster, get_operation, list_clusters};
use jobs::{create_batch, get_batch, get_job, submit_job};

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
