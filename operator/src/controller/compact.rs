//! What the caches hold: each child as its JSON text, not as a decoded object.
//!
//! A decoded `k8s-openapi` object spends most of its memory on empty optional fields and small allocations: at 500
//! pipelines the cached children are 12.6 MB of JSON but cost about 55 MiB resident as typed objects (BENCHMARKS.md,
//! issue 20). Kept as text, a child costs its length plus a small `ObjectMeta` (name, namespace, the pipeline and
//! component labels, owner references: what the store's key, the controller's owner mapping and the filters read). A
//! reconcile decodes only its own pipeline's children, a dozen objects, when it needs them.

use std::{borrow::Cow, collections::BTreeMap, marker::PhantomData, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, runtime::watcher::Event};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

use crate::meta::{COMPONENT_LABEL, PIPELINE_LABEL};

/// A cached child of kind `K`: the few metadata fields the caches index by, and the whole object as JSON (without
/// `managedFields`, which nothing reads).
pub struct Compact<K> {
    meta: ObjectMeta,
    json: Arc<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            json: self.json.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Compact<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compact")
            .field("meta", &self.meta)
            .field("bytes", &self.json.len())
            .finish()
    }
}

/// Decoding a whole object (kube-runtime's `watches_stream` asks for it; the caches are fed by [`Compact::event`]).
impl<'de, K: Resource + Serialize + DeserializeOwned> Deserialize<'de> for Compact<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(Self::new)
    }
}

impl<K: Resource + Serialize> Compact<K> {
    /// Keep `object` as text. Serialising a decoded object cannot fail in practice; if it did, the child is kept
    /// with empty text and its reader reports the decode error ([`Compact::value`]).
    pub fn new(mut object: K) -> Self {
        object.meta_mut().managed_fields = None;
        let json = serde_json::to_vec(&object).unwrap_or_default();
        let full = object.meta();
        let labels: BTreeMap<String, String> = [PIPELINE_LABEL, COMPONENT_LABEL]
            .into_iter()
            .filter_map(|key| full.labels.as_ref()?.get_key_value(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let meta = ObjectMeta {
            name: full.name.clone(),
            namespace: full.namespace.clone(),
            labels: Some(labels),
            owner_references: full.owner_references.clone(),
            ..ObjectMeta::default()
        };
        Self {
            meta,
            json: json.into(),
            kind: PhantomData,
        }
    }

    /// Map a watch event of whole objects to one of compact ones.
    pub fn event(event: Event<K>) -> Event<Self> {
        match event {
            Event::Apply(object) => Event::Apply(Self::new(object)),
            Event::Delete(object) => Event::Delete(Self::new(object)),
            Event::Init => Event::Init,
            Event::InitApply(object) => Event::InitApply(Self::new(object)),
            Event::InitDone => Event::InitDone,
        }
    }
}

impl<K> Compact<K> {
    /// The child as a JSON tree, for the drift check.
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// The child decoded, for status (Deployments, CronJobs, Jobs, pods).
    pub fn object(&self) -> Result<K, serde_json::Error>
    where
        K: DeserializeOwned,
    {
        serde_json::from_slice(&self.json)
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
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::ResourceExt;

    use super::*;

    #[test]
    fn keeps_the_whole_object_but_indexes_only_what_the_caches_read() {
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some("p-config".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([
                    (PIPELINE_LABEL.to_owned(), "p".to_owned()),
                    ("app.kubernetes.io/name".to_owned(), "cilvest".to_owned()),
                ])),
                annotations: Some(BTreeMap::from([("a".to_owned(), "b".to_owned())])),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("pipeline.json".to_owned(), "{}".to_owned())])),
            ..ConfigMap::default()
        };
        let compact = Compact::new(map.clone());
        assert_eq!(compact.name_any(), "p-config");
        assert_eq!(compact.namespace().as_deref(), Some("ns"));
        assert_eq!(
            compact.labels().len(),
            1,
            "only the pipeline and component labels are indexed"
        );
        assert!(compact.annotations().is_empty());
        let back = compact.object().expect("decodes");
        assert_eq!(back.data, map.data);
        assert_eq!(back.metadata.annotations, map.metadata.annotations);
        assert_eq!(back.metadata.labels, map.metadata.labels);
        assert!(back.metadata.managed_fields.is_none(), "managedFields are not kept");
        assert_eq!(
            compact.value().expect("parses")["data"]["pipeline.json"],
            serde_json::json!("{}")
        );
    }
}
