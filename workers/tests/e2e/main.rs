//! End to end on a real node, as a user would run Cilvest: `helm install` the operator image from a registry,
//! `kubectl apply` a pipeline, and check that the producer, consumer and daily pods (the workers image, under the
//! restricted Pod Security Standard) move tweets from the fake X API through Kafka into the GCS lake, BigQuery and
//! search; then kill pods, upgrade, and delete.
//!
//! `scripts/e2e` runs it after starting the node and the registry, building, pushing and signing the images, and
//! exporting their references (`CILVEST_E2E_*`). It is not part of `cargo test --workspace` (`test = false`).
//! Nothing is started behind the product's back: the operator creates every pod; the test only acts as a user
//! (helm, kubectl) and as the outside world (the X API, and reading what landed).

mod real_node;
#[path = "../support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    io::Read,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use chrono::NaiveDate;
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease, core::v1::Pod};
use kube::{Api, Client, api::ListParams};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde_json::{Value, json};

use support::service_env;

const TOKEN: &str = "e2e-bearer-token";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/cilvest-operator");
const YESTERDAYS: usize = 150;
const TODAYS: usize = 40;

/// What scripts/e2e and `scripts/testenv env` hand over.
struct Env {
    kubectl: PathBuf,
    helm: PathBuf,
    node_ip: String,
    registry: String,
    operator_digest: String,
    worker_digest: String,
    upgrade_tag: String,
}

impl Env {
    fn from_env() -> Self {
        let e2e = |var: &str| service_env(var, "node registry` and run `scripts/e2e");
        Self {
            kubectl: PathBuf::from(service_env("CILVEST_K8S_BIN", "k8s")).join("kubectl"),
            helm: PathBuf::from(service_env("CILVEST_HELM", "tools")),
            node_ip: service_env("CILVEST_NODE_IP", "node"),
            registry: e2e("CILVEST_E2E_REGISTRY"),
            operator_digest: e2e("CILVEST_E2E_OPERATOR_DIGEST"),
            worker_digest: e2e("CILVEST_E2E_WORKER_DIGEST"),
            upgrade_tag: e2e("CILVEST_E2E_UPGRADE_TAG"),
        }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        run(Command::new(&self.kubectl).args(args), stdin)
    }

    fn helm(&self, args: &[&str]) -> String {
        run(Command::new(&self.helm).args(args), None)
    }
}

/// Run a user's command; panic with its output when it fails.
fn run(command: &mut Command, stdin: Option<&str>) -> String {
    use std::io::Write;
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for command");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// Poll `check` once a second until it returns `Some`, or panic after `seconds` naming `what`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    seconds: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn create_bucket(name: &str) {
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=cilvest-test"))
        .json(&json!({"name": name}))
        .send()
        .await
        .expect("create bucket request");
    assert!(response.status().is_success(), "create bucket: {}", response.status());
}

/// Every tweet id in the lake's raw objects, with how many times it occurs.
async fn raw_ids(lake: &dyn ObjectStore) -> BTreeMap<u64, usize> {
    let mut ids = BTreeMap::new();
    let paths: Vec<Path> = lake
        .list(Some(&Path::from("raw")))
        .map(|meta| meta.expect("list raw").location)
        .collect()
        .await;
    for path in paths {
        let body = lake
            .get(&path)
            .await
            .expect("get raw")
            .bytes()
            .await
            .expect("raw bytes");
        let mut text = String::new();
        if path.as_ref().ends_with(".gz") {
            flate2::read::MultiGzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .expect("gunzip raw object");
        } else {
            text = String::from_utf8_lossy(&body).into_owned();
        }
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).expect("raw line is JSON");
            let tweet = record.get("tweet").unwrap_or(&record);
            let id = tweet["id"].as_str().and_then(|id| id.parse().ok()).expect("tweet id");
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

fn pipeline_yaml(name: &str, x_url: &str, topic: &str, bucket: &str, dataset: &str, index: &str) -> String {
    let pod_env = |var: &str, service: &str| service_env(var, service);
    format!(
        r##"apiVersion: cilvest.io/v1alpha1
kind: CilvestPipeline
metadata:
  name: {name}
spec:
  keywords:
    - {{name: saham, terms: [saham, "#saham"]}}
    - {{name: reksadana, terms: [reksadana, "reksa dana"]}}
    - {{name: sukuk, terms: [sukuk]}}
  source:
    x:
      apiUrl: {x_url}
      bearerTokenSecretRef: {{name: x-api, key: bearerToken}}
      pollInterval: 5s
      backfill: 48h
  kafka:
    bootstrapServers: {kafka}
  topics:
    raw: {{name: {topic}, partitions: 3}}
  targets:
    lake: {{uri: "gs://{bucket}/lake"}}
    bigquery: {{project: {project}, dataset: {dataset}}}
    elasticsearch:
      index: {index}
      external: {{url: "{search}"}}
  workers:
    env:
      - {{name: CILVEST_GCS_ENDPOINT, value: "{gcs}"}}
      - {{name: CILVEST_BQ_ENDPOINT, value: "{bq}"}}
"##,
        kafka = pod_env("CILVEST_KAFKA_POD_BOOTSTRAP", "kafka"),
        project = pod_env("CILVEST_BQ_PROJECT", "bigquery"),
        search = pod_env("CILVEST_ES_POD_URL", "search"),
        gcs = pod_env("CILVEST_GCS_POD_URL", "gcs"),
        bq = pod_env("CILVEST_BQ_POD_URL", "bigquery"),
    )
}

fn demo_pod(repository: &str, digest: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo", "labels": {"app.kubernetes.io/name": "cilvest-demo"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "demo", "image": format!("{repository}@{digest}"),
                "args": ["--log-format", "text", "demo", "--tweets", "2000"],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    })
    .to_string()
}

async fn deployment_available(client: &Client, ns: &str, name: &str) -> Option<Deployment> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    let status = deployment.status.clone()?;
    let current = status.observed_generation >= deployment.metadata.generation;
    let want = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (current
        && status.updated_replicas == Some(want)
        && status.available_replicas == Some(want)
        && status.replicas == Some(want))
    .then_some(deployment)
}

async fn running_pod(client: &Client, ns: &str, selector: &str) -> Option<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    pods.items.into_iter().find(|pod| {
        pod.metadata.deletion_timestamp.is_none()
            && pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("cilvest-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

fn container_image(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn bigquery_count(dataset: &str, day: NaiveDate) -> i64 {
    let endpoint = service_env("CILVEST_BQ_URL", "bigquery");
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    let warehouse = cilvest_workers::google::bigquery::Warehouse::connect(Some(&endpoint), &project, "asia-southeast2")
        .await
        .expect("warehouse");
    let sql = format!(
        "SELECT COUNT(DISTINCT id) AS n FROM {} WHERE local_date = DATE '{day}'",
        warehouse.table_sql(dataset, "tweets")
    );
    let rows = warehouse
        .query("count the day's tweets", &sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rows.first()
        .and_then(|row| row.get("n"))
        .and_then(|n| n.as_i64().or_else(|| n.as_str().and_then(|s| s.parse().ok())))
        .expect("a count")
}

async fn search_count(index: &str) -> u64 {
    let url = service_env("CILVEST_ES_URL", "search");
    let found: Value = reqwest::Client::new()
        .get(format!("{url}/{index}/_count"))
        .send()
        .await
        .expect("count request")
        .json()
        .await
        .expect("count json");
    found["count"].as_u64().unwrap_or_else(|| panic!("no count in {found}"))
}
