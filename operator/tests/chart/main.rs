//! How people meet Cilvest: the Helm chart against the real API server (lint, render, server-side dry run, install,
//! upgrade), the operator running with nothing but the chart's RBAC, the CRD upgrade path, and the Argo CD health
//! check in Lua 5.1. Its own test binary because it changes the cluster-wide CRD (cargo runs test binaries one
//! after another); inside it, the tests that touch the CRD take `CRD_LOCK`.
//!
//! Needs `scripts/testenv up tools k8s` (helm, lua5.1, the control plane) and `eval "$(scripts/testenv env)"`.

mod argocd;
#[path = "../common/mod.rs"]
mod common;
mod rbac;
mod render;
mod upgrade;

use std::{path::PathBuf, process::Stdio};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ApiResource, GroupVersionKind, ListParams},
};
use serde_json::{Value, json};

use common::{
    chart::{chart, helm, repo, run, tool},
    kubectl, wait_until,
};

const CRD_NAME: &str = "cilvestpipelines.cilvest.io";
/// The tests that install the chart run an operator with `--install-crd`, and the upgrade test changes the live CRD
/// on purpose: one at a time.
static CRD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A kubeconfig that authenticates as `service_account` (a bound token), against the same server and CA.
fn service_account_kubeconfig(namespace: &str, service_account: &str) -> PathBuf {
    let token = run(
        kubectl().args(["create", "token", service_account, "-n", namespace, "--duration=1h"]),
        "kubectl create token",
    );
    let admin: Value = serde_json::from_str(&run(
        kubectl().args(["config", "view", "--raw", "--minify", "--flatten", "-o", "json"]),
        "kubectl config view",
    ))
    .expect("kubeconfig json");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": service_account, "user": {"token": token.trim()}}],
        "contexts": [{"name": service_account, "context": {"cluster": "testenv", "user": service_account}}],
        "current-context": service_account,
    });
    let path = std::env::temp_dir().join(format!("{namespace}-{service_account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&config).expect("kubeconfig")).expect("write kubeconfig");
    path
}

/// `helm install --wait`, then wait until every pod of the release runs (kwok plays their kubelet).
async fn install(client: &Client, release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut command = helm();
    command
        .args(["install", release])
        .arg(chart())
        .args(["--namespace", namespace, "--wait", "--timeout", "90s"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let notes = run(&mut command, "helm install");
    running_pods(client, release, namespace, 1).await;
    notes
}

async fn running_pods(client: &Client, release: &str, namespace: &str, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    wait_until(&format!("{count} running operator pod(s)"), 60, || async {
        let list = pods.list(&selector).await.ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == count).then_some(())
    })
    .await;
}

/// The live operator Deployment's container args, minus the metrics address (the test picks a free port).
async fn deployment_args(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("operator Deployment");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod spec");
    pod.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.starts_with("--metrics-addr"))
        .collect()
}

/// The Argo CD health script's verdict on `object` (JSON), run by Lua 5.1 as Argo CD would.
fn argocd_health(object: &[u8]) -> (String, String) {
    let mut child = tool("CILVEST_LUA")
        .arg(repo("deploy/argocd/testdata/run.lua"))
        .arg(repo("deploy/argocd/health.lua"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lua");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(object)
            .expect("write object");
    }
    let output = child.wait_with_output().expect("lua");
    assert!(
        output.status.success(),
        "the health script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}
