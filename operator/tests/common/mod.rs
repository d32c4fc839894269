//! Helpers shared by the tests that run against the real API server of `scripts/testenv up k8s`.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{Patch, PatchParams, PostParams},
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
