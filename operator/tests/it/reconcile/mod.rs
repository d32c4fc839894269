//! The operator against the real API server and controller manager: children, owner references, the restricted
//! security context, updates, orphan deletion, garbage collection, status conditions and zero-write resyncs.

use crate::common;
mod dataproc;
mod kafka_users;
mod leader_election;
mod lifecycle;
mod render;

use std::collections::BTreeMap;

use cilvest_crds::CilvestPipeline;
use kube::{
    Api, Client,
    api::{ApiResource, GroupVersionKind},
};

use common::{ECK_CRDS, STRIMZI_CRD, client, install_crd, install_crds_yaml, labelled_children, temp_namespace};

const FULL: &str = include_str!("../../../../examples/cilvest.yaml");

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn full_pipeline() -> CilvestPipeline {
    serde_saphyr::from_str(FULL).expect("example")
}

async fn setup(test: &str) -> (Client, String, Api<CilvestPipeline>) {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ns = temp_namespace(&client, test).await;
    (client.clone(), ns.clone(), Api::namespaced(client, &ns))
}

/// resourceVersion of every child, for the zero-write check.
async fn versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    labelled_children(client, ns)
        .await
        .into_iter()
        .map(|(key, meta)| (key, meta.resource_version.unwrap_or_default()))
        .collect()
}
