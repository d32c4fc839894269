//! Helpers shared by the tests that run against the real API server of `scripts/testenv up k8s`.
#![allow(dead_code)] // each test binary uses its own subset

pub mod alerts;
pub mod chart;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        batch::v1::CronJob,
        core::v1::{ConfigMap, Namespace, Secret, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;

pub async fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: start the control plane with `scripts/testenv up k8s` and `eval \"$(scripts/testenv env)\"`")
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "KUBECONFIG {path} does not exist: run `scripts/testenv up k8s`"
    );
    Client::try_default().await.expect("kube client from KUBECONFIG")
}

/// A fresh namespace for one test, named after it.
pub async fn temp_namespace(client: &Client, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{test}-{:x}", nanos ^ std::process::id());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

pub async fn within<T>(what: &str, seconds: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {seconds}s waiting for {what}"))
}

pub async fn install_crd(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = CilvestPipeline::crd();
    let name = crd.name_any();
    crds.patch(&name, &PatchParams::apply("cilvest-tests").force(), &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    within(
        "CRD established",
        30,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("watch CRD");
}

pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// `kubectl` from the test environment's build when there is one, else the one on PATH.
pub fn kubectl() -> std::process::Command {
    let bin = std::env::var("CILVEST_K8S_BIN").map(|dir| format!("{dir}/kubectl"));
    let bin = bin
        .ok()
        .filter(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| "kubectl".to_owned());
    std::process::Command::new(bin)
}

/// Poll `check` every 300 ms until it returns `Some`, or fail after `seconds` saying what was awaited.
pub async fn wait_until<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(what, seconds, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
}

/// Server-side apply every CRD in a multi-document YAML and wait until each is established.
pub async fn install_crds_yaml(client: &Client, yaml: &str) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(yaml).expect("CRD fixture parses");
    for crd in docs {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("cilvest-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("apply fixture CRD");
        within(
            "fixture CRD established",
            30,
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("watch CRD");
    }
}

/// Strimzi's KafkaTopic and KafkaUser.
pub const STRIMZI_CRD: &str = include_str!("../fixtures/strimzi-crds.yaml");
pub const ECK_CRDS: &str = include_str!("../fixtures/eck-crds.yaml");

/// A free port on 127.0.0.1 for an operator's metrics endpoint.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `cilvest-operator run` subprocess, killed when dropped; its stderr goes to a log file for assertions.
pub struct Operator {
    child: std::process::Child,
    pub metrics_port: u16,
    pub log: std::path::PathBuf,
}

impl Operator {
    /// Start an operator that watches only `namespace`; `lease` enables leader election in that namespace.
    pub fn start(namespace: &str, lease: Option<(&str, &str)>) -> Self {
        Self::start_binary(env!("CARGO_BIN_EXE_cilvest-operator").as_ref(), namespace, lease)
    }

    /// [`Operator::start`] of another build of the operator (the bench compares trees over the same cluster).
    pub fn start_binary(binary: &std::path::Path, namespace: &str, lease: Option<(&str, &str)>) -> Self {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("cilvest-operator-{namespace}-{metrics_port}.log"));
        let stderr = std::fs::File::create(&log).expect("operator log file");
        let mut command = std::process::Command::new(binary);
        command
            .args([
                "run",
                "--namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .env("RUST_LOG", "info,cilvest_operator=debug,kube=warn")
            .stderr(stderr);
        match lease {
            Some((lease_namespace, identity)) => {
                command.args(["--lease-namespace", lease_namespace, "--identity", identity]);
            }
            None => {
                command.args(["--leader-election", "false"]);
            }
        }
        let child = command.spawn().expect("start cilvest-operator");
        Self {
            child,
            metrics_port,
            log,
        }
    }

    /// Start `cilvest-operator` with exactly `args` (say, the container args of the chart's Deployment, without
    /// `--metrics-addr`) and extra environment (say, `KUBECONFIG` of its ServiceAccount); only the metrics address,
    /// a free port on 127.0.0.1, is the test's.
    pub fn start_with(args: &[String], env: &[(&str, &str)]) -> Self {
        Self::start_binary_with(env!("CARGO_BIN_EXE_cilvest-operator").as_ref(), args, env)
    }

    /// [`Operator::start_with`] of another build of the operator.
    pub fn start_binary_with(binary: &std::path::Path, args: &[String], env: &[(&str, &str)]) -> Self {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("cilvest-operator-args-{metrics_port}.log"));
        let stderr = std::fs::File::create(&log).expect("operator log file");
        let child = std::process::Command::new(binary)
            .args(args)
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "info,cilvest_operator=debug,kube=warn")
            .envs(env.iter().copied())
            .stderr(stderr)
            .spawn()
            .expect("start cilvest-operator");
        Self {
            child,
            metrics_port,
            log,
        }
    }

    /// The value of one metric line (e.g. `cilvest_operator_reconciles_total`), or 0 before it is served.
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(response) = reqwest::get(&url).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Resident memory of the operator process in MiB, from /proc.
    pub fn rss_mib(&self) -> f64 {
        status_kib(&self.child.id().to_string(), "VmRSS:").unwrap_or(0.0) / 1024.0
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every child the operator labelled in `ns` (ConfigMaps, ServiceAccounts, Deployments, CronJobs, KafkaTopics,
/// Elasticsearch and Kibana), keyed `Kind/name`, with its metadata.
pub async fn labelled_children(client: &Client, ns: &str) -> BTreeMap<String, ObjectMeta> {
    let selector = ListParams::default().labels("app.kubernetes.io/managed-by=cilvest-operator");
    let gvk =
        |group: &str, version: &str, kind: &str| ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let kinds = [
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<CronJob>(&()),
        gvk("kafka.strimzi.io", "v1", "KafkaTopic"),
        gvk("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch"),
        gvk("kibana.k8s.elastic.co", "v1", "Kibana"),
    ];
    let mut out = BTreeMap::new();
    for kind in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind);
        for object in api.list(&selector).await.expect("list").items {
            let key = format!("{}/{}", kind.kind, object.name_any());
            assert!(out.insert(key.clone(), object.metadata).is_none(), "{key} twice");
        }
    }
    out
}

/// The X token Secret every example pipeline references (`cilvest-x-api`, key `bearerToken`).
pub async fn create_token_secret(client: &Client, ns: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cilvest-x-api"},
        "stringData": {"bearerToken": "test-token-not-real"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
}

/// Status, reason and message of one of the pipeline's conditions.
pub fn condition(pipeline: &CilvestPipeline, type_: &str) -> Option<(String, String, String)> {
    let status = pipeline.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The Events in `ns` as `kubectl get <resource> -o json` lists them (`events`, the core kind with `involvedObject`,
/// or `events.events.k8s.io` with `regarding`).
pub fn events(ns: &str, resource: &str) -> Vec<serde_json::Value> {
    let output = kubectl()
        .args(["get", resource, "-n", ns, "-o", "json"])
        .output()
        .expect("kubectl get events");
    let events: serde_json::Value = serde_json::from_slice(&output.stdout).expect("events json");
    events["items"].as_array().cloned().unwrap_or_default()
}

/// One field of `/proc/<pid>/status`, in kB (or a count, for `Threads:`).
pub fn status_kib(pid: &str, name: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
}
