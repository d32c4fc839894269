//! Object metadata in one place: the field manager, the labels every child carries, the owner reference, and the
//! API resources of the external kinds (Strimzi, ECK) the operator writes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt, api::ApiResource};
use serde::Serialize;

use cilvest_crds::{CilvestPipeline, StrimziTopicVersion};

/// Field manager of every write, and the value of the managed-by label.
pub const MANAGER: &str = "cilvest-operator";
/// Label carrying the owning pipeline's name; orphan clean-up selects on it.
pub const PIPELINE_LABEL: &str = "cilvest.io/pipeline";
/// Label naming which part of the pipeline a child is (`producer`, `daily`, `kibana-setup`, …).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Annotation holding a hash of what the operator last applied, so an unchanged child is not written again.
pub const HASH_ANNOTATION: &str = "cilvest.io/applied-hash";

/// The external kinds the operator writes, by API version.
pub fn kafka_topic_resource(version: StrimziTopicVersion) -> ApiResource {
    let version = match version {
        StrimziTopicVersion::V1 => "v1",
        StrimziTopicVersion::V1beta2 => "v1beta2",
    };
    external_resource("kafka.strimzi.io", version, "KafkaTopic", "kafkatopics")
}

/// Strimzi's `KafkaUser`, at the same API version as the pipeline's `KafkaTopic`.
pub fn kafka_user_resource(version: StrimziTopicVersion) -> ApiResource {
    let version = match version {
        StrimziTopicVersion::V1 => "v1",
        StrimziTopicVersion::V1beta2 => "v1beta2",
    };
    external_resource("kafka.strimzi.io", version, "KafkaUser", "kafkausers")
}

pub fn elasticsearch_resource() -> ApiResource {
    external_resource("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch", "elasticsearches")
}

pub fn kibana_resource() -> ApiResource {
    external_resource("kibana.k8s.elastic.co", "v1", "Kibana", "kibanas")
}

fn external_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Labels every child carries; the last two make orphans findable.
pub fn labels(pipeline: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "cilvest".to_owned()),
        (COMPONENT_LABEL.to_owned(), component.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned()),
        (PIPELINE_LABEL.to_owned(), pipeline.to_owned()),
    ])
}

/// The label selector matching every child of `pipeline`.
pub fn children_selector(pipeline: &str) -> String {
    format!("app.kubernetes.io/managed-by={MANAGER},{PIPELINE_LABEL}={pipeline}")
}

/// Metadata of a child: name, namespace, labels and the controller owner reference to the pipeline, so that
/// deleting the pipeline garbage-collects it.
pub fn object_meta(pipeline: &CilvestPipeline, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: pipeline.namespace(),
        labels: Some(labels(&pipeline.name_any(), component)),
        owner_references: owner_reference(pipeline).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(pipeline: &CilvestPipeline) -> Option<OwnerReference> {
    // `render` works on files without a uid; the API server adds nothing there, so leave the reference out.
    pipeline.meta().uid.as_ref()?;
    pipeline.controller_owner_ref(&())
}

/// A stable 64-bit FNV-1a hash of the object's JSON. Stable across builds, unlike `DefaultHasher`, so an operator
/// upgrade that renders the same objects writes nothing.
pub fn fingerprint<K: Serialize>(object: &K) -> String {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
