//! What the caches hold: of each child, the few fields the reconcile reads, not the object.
//!
//! A child costs its name and namespace (the store's key), its pipeline and component labels as two strings (the
//! mapping to its pipeline and the caches' filters), what the apply step needs to tell whether it changed
//! ([`LiveChild`]: the applied-hash annotation, the paused label, the digest of the fields the operator owns, see
//! [`crate::owned`]), and, as JSON text, the little that status reads: a Deployment's wanted replicas and status, a
//! CronJob's schedule, suspension and status, a Job's status, a pod's phase, conditions and container states, the
//! `data` of a ConfigMap that the operator does not own (the producer's X usage), an external child's status.
//! ServiceAccounts, Roles, RoleBindings and NetworkPolicies keep no JSON at all: status reads nothing of them.
//! Everything else (pod templates, policies, defaults, the label map) is dropped when the watch event arrives: at
//! 2,000 pipelines whole children were 70 MB of JSON, and a label map alone costs a B-tree node of about half a
//! kilobyte per child (BENCHMARKS.md, issue 25). A drift check that needs a whole child fetches it
//! ([`crate::apply`]).

use std::{borrow::Cow, collections::BTreeMap, marker::PhantomData, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::arrived::{self, Watched};
use crate::{
    apply::LiveChild,
    drift::{self, PAUSED_LABEL},
    meta::{COMPONENT_LABEL, HASH_ANNOTATION, MANAGER, PIPELINE_LABEL},
    owned,
};

/// The labels kept: the pipeline and component (the caches' filters), a pod's Job, the paused label.
const KEPT_LABELS: [&str; 4] = [PIPELINE_LABEL, COMPONENT_LABEL, "job-name", PAUSED_LABEL];

/// The kinds whose status nothing reads: they keep no JSON body.
const BODILESS: [&str; 4] = ["ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"];

/// A cached child of kind `K`: its index, what the apply step compares, and what status reads as JSON.
pub struct Compact<K> {
    /// Name and namespace only.
    meta: ObjectMeta,
    pipeline: Option<String>,
    component: Option<String>,
    applied: LiveChild,
    body: Option<Arc<[u8]>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            pipeline: self.pipeline.clone(),
            component: self.component.clone(),
            applied: self.applied.clone(),
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Compact<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compact")
            .field("meta", &self.meta)
            .field("pipeline", &self.pipeline)
            .field("component", &self.component)
            .field("applied", &self.applied)
            .field("bytes", &self.body.as_ref().map(|body| body.len()))
            .finish()
    }
}

/// Decoding an object as the watches deliver it: straight into its cache entry ([`super::arrived`]). The resource
/// version is kept for the watch to resume from; [`Compact::forget_version`] drops it before the entry is cached.
impl<'de, K: Watched> Deserialize<'de> for Compact<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (object, managed) = arrived::decode::<K, D>(deserializer)?;
        let mut compact = Self::from_value(&object, &managed);
        compact.meta.resource_version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(compact)
    }
}

impl<K: Resource + Serialize> Compact<K> {
    /// Keep of `object` what the reconcile reads. Serialising a decoded object cannot fail in practice; if it did,
    /// the child is kept with no owned fields (its next drift check fetches it).
    pub fn new(mut object: K) -> Self {
        // Taken out before the object is turned into JSON: they are about as large as the rest of it.
        let managed = object.meta_mut().managed_fields.take().unwrap_or_default();
        Self::from_value(&serde_json::to_value(&object).unwrap_or_default(), &managed)
    }
}

impl<K> Compact<K> {
    /// Drop the resource version, which only the watch reads: the cache keeps a name and namespace per child.
    pub fn forget_version(&mut self) {
        self.meta.resource_version = None;
    }

    fn from_value(object: &Value, managed: &[ManagedFieldsEntry]) -> Self {
        let owned = owned::owned(object, managed, MANAGER);
        let applied = LiveChild {
            hash: object
                .pointer("/metadata/annotations")
                .and_then(|annotations| annotations.get(HASH_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_owned),
            paused: drift::paused(object),
            digest: owned.as_ref().map(owned::digest),
        };
        let labels: BTreeMap<String, String> = KEPT_LABELS
            .into_iter()
            .filter_map(|key| {
                Some((
                    key.to_owned(),
                    object.pointer("/metadata/labels")?.get(key)?.as_str()?.to_owned(),
                ))
            })
            .collect();
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let meta = ObjectMeta {
            name: text("/metadata/name"),
            namespace: text("/metadata/namespace"),
            ..ObjectMeta::default()
        };
        let kind = object["kind"].as_str().unwrap_or_default();
        let body = (!BODILESS.contains(&kind)).then(|| {
            serde_json::to_vec(&body(object, owned.as_ref(), &labels))
                .unwrap_or_default()
                .into()
        });
        Self {
            meta,
            pipeline: labels.get(PIPELINE_LABEL).cloned(),
            component: labels.get(COMPONENT_LABEL).cloned(),
            applied,
            body,
            kind: PhantomData,
        }
    }

    /// The pipeline the child belongs to (its pipeline label).
    pub fn pipeline(&self) -> Option<&str> {
        self.pipeline.as_deref()
    }

    /// The child's component label.
    pub fn component(&self) -> Option<&str> {
        self.component.as_deref()
    }

    /// What the apply step compares.
    pub fn applied(&self) -> &LiveChild {
        &self.applied
    }

    /// What status reads, decoded as the child's kind (its other fields absent; of a kind that keeps no body, only
    /// its name and namespace).
    pub fn object(&self) -> Result<K, serde_json::Error>
    where
        K: DeserializeOwned,
    {
        match &self.body {
            Some(body) => serde_json::from_slice(body),
            None => serde_json::from_value(serde_json::json!({
                "metadata": {"name": self.meta.name, "namespace": self.meta.namespace}
            })),
        }
    }
}

/// The JSON that status reads of `object`, by its kind.
fn body(object: &Value, owned: Option<&Value>, labels: &BTreeMap<String, String>) -> Value {
    let mut body = Map::new();
    for field in ["apiVersion", "kind"] {
        if let Some(value) = object.get(field) {
            body.insert(field.to_owned(), value.clone());
        }
    }
    let mut metadata = Map::new();
    for field in ["name", "namespace", "creationTimestamp"] {
        if let Some(value) = object.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.to_owned(), value.clone());
        }
    }
    metadata.insert("labels".to_owned(), serde_json::json!(labels));
    body.insert("metadata".to_owned(), Value::Object(metadata));
    let mut body = Value::Object(body);
    let kind = object["kind"].as_str().unwrap_or_default();
    // Required fields of the typed spec that status does not read, so that the body decodes.
    let (kept, placeholders): (&[&str], &[&str]) = match kind {
        "Deployment" => (&["/spec/replicas", "/status"], &["/spec/selector", "/spec/template"]),
        "CronJob" => (&["/spec/schedule", "/spec/suspend", "/status"], &["/spec/jobTemplate"]),
        "Pod" => (
            &["/status/phase", "/status/conditions", "/status/containerStatuses"],
            &[],
        ),
        "ConfigMap" => (&[], &[]),
        _ => (&["/status"], &[]),
    };
    for pointer in kept {
        if let Some(value) = object.pointer(pointer) {
            put(&mut body, pointer, value.clone());
        }
    }
    if body.get("spec").is_some() {
        for pointer in placeholders {
            put(&mut body, pointer, Value::Object(Map::new()));
        }
    }
    if kind == "ConfigMap" {
        // The entries someone else writes (the producer's usage record); the operator's own are in the digest.
        let data: Map<String, Value> = object["data"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| {
                owned
                    .and_then(|owned| owned.pointer("/data")?.get(key.as_str()))
                    .is_none()
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !data.is_empty() {
            put(&mut body, "/data", Value::Object(data));
        }
    }
    body
}

/// Set `value` at `pointer` in `object`, making the maps on the way.
fn put(object: &mut Value, pointer: &str, value: Value) {
    let mut at = object;
    let mut segments = pointer.trim_start_matches('/').split('/').peekable();
    while let Some(segment) = segments.next() {
        let Some(map) = at.as_object_mut() else { return };
        if segments.peek().is_none() {
            map.insert(segment.to_owned(), value);
            return;
        }
        at = map
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

impl<K: Resource> Resource for Compact<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Pod},
    };
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    fn managed(fields: Value) -> Value {
        json!([{"manager": MANAGER, "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": fields}])
    }

    #[test]
    fn a_config_map_keeps_only_the_data_someone_else_writes() {
        let map: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": "p-x-usage", "namespace": "ns",
                "labels": {PIPELINE_LABEL: "p", "app.kubernetes.io/name": "cilvest"},
                "annotations": {HASH_ANNOTATION: "h1", "other": "x"},
                "managedFields": managed(json!({"f:metadata": {"f:labels": {f_label(PIPELINE_LABEL): {}}, "f:annotations": {f_label(HASH_ANNOTATION): {}}}, "f:data": {"f:mine": {}}}))
            },
            "data": {"mine": "operator's", "usage": "{\"reads\": 3}"}
        }))
        .expect("config map");
        let compact = Compact::new(map);
        assert_eq!(compact.name_any(), "p-x-usage");
        assert_eq!(compact.namespace().as_deref(), Some("ns"));
        assert!(compact.labels().is_empty(), "no label map is kept");
        assert_eq!(compact.pipeline(), Some("p"));
        assert_eq!(compact.applied().hash.as_deref(), Some("h1"));
        assert!(!compact.applied().paused);
        let owned = json!({"metadata": {"labels": {PIPELINE_LABEL: "p"}, "annotations": {HASH_ANNOTATION: "h1"}}, "data": {"mine": "operator's"}});
        assert_eq!(compact.applied().digest, Some(owned::digest(&owned)));
        let back = compact.object().expect("decodes");
        assert_eq!(
            back.data,
            Some(BTreeMap::from([("usage".to_owned(), "{\"reads\": 3}".to_owned())]))
        );
        assert!(back.metadata.annotations.is_none() && back.metadata.managed_fields.is_none());
    }

    fn f_label(key: &str) -> String {
        format!("f:{key}")
    }

    #[test]
    fn a_deployment_keeps_its_wanted_replicas_and_status_and_decodes() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "p-producer", "namespace": "ns", "labels": {"cilvest.io/paused": "true"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"availableReplicas": 0, "conditions": [{"type": "Available", "status": "True"}]}
        }))
        .expect("deployment");
        let compact = Compact::new(deployment);
        assert!(compact.applied().paused);
        assert_eq!(compact.applied().digest, None, "no Apply entry of the operator");
        let back = compact.object().expect("decodes");
        let spec = back.spec.expect("spec");
        assert_eq!(spec.replicas, Some(0));
        assert!(spec.template.spec.is_none(), "the pod template is dropped");
        assert_eq!(back.status.and_then(|s| s.conditions).map(|c| c.len()), Some(1));
    }

    #[test]
    fn a_pod_keeps_its_job_label_and_container_states_only() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p-daily-1-x", "namespace": "ns", "labels": {"job-name": "p-daily-1", PIPELINE_LABEL: "p"}},
            "spec": {"containers": [{"name": "daily", "image": "i"}]},
            "status": {"phase": "Failed", "hostIP": "10.0.0.1", "containerStatuses": [{
                "name": "daily", "image": "i", "imageID": "sha", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": "{}"}}
            }]}
        }))
        .expect("pod");
        let back = Compact::new(pod).object().expect("decodes");
        assert!(back.spec.is_none());
        assert_eq!(back.labels().get("job-name").map(String::as_str), Some("p-daily-1"));
        let status = back.status.expect("status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert!(status.host_ip.is_none());
        assert_eq!(status.container_statuses.map(|c| c.len()), Some(1));
    }
}
