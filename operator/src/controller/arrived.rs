//! A child as a watch delivers it, decoded without what the caches drop anyway.
//!
//! The field-manager entries of other managers (kube-controller-manager, the kubelet, kwok, a user's `kubectl`) are
//! the bulk of a live object, a tree of maps per entry; the caches keep only a digest of the operator's own entry
//! ([`super::compact`]). Decoding each page of a watch's initial list into whole typed objects first, every kind's
//! page at the same moment after a restart, raised the operator's heap peak, and the allocator kept that peak as
//! resident memory (BENCHMARKS.md, "Operator memory after a restart"). Here each object is decoded into JSON with only
//! the operator's entries, one at a time, and turned into its cache entry at once ([`super::compact::Compact`]'s
//! `Deserialize`): a page holds cache entries, not objects.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde::{
    Deserializer,
    de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::meta::MANAGER;

/// A kind the caches hold: its `apiVersion` and `kind` when they are known from the type (a list's items leave them
/// out; a custom resource's items, the only dynamic ones, carry them).
/// Implemented beside the caches' list of kinds ([`super::watches`]).
pub trait Watched {
    const TYPE: Option<(&'static str, &'static str)>;
}

/// Decode an object of kind `K`: its JSON without its field-manager entries, and the operator's own entries.
pub fn decode<'de, K: Watched, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(Value, Vec<ManagedFieldsEntry>), D::Error> {
    let mut object = deserializer.deserialize_any(Trimmed(Level::Object))?;
    let mut managed = Vec::new();
    if let Value::Object(fields) = &mut object {
        if let Some(entries) = fields
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|metadata| metadata.remove("managedFields"))
            .filter(|entries| !entries.is_null())
        {
            managed = serde_json::from_value(entries).map_err(D::Error::custom)?;
        }
        if let Some((api_version, kind)) = K::TYPE {
            for (field, value) in [("apiVersion", api_version), ("kind", kind)] {
                fields.entry(field).or_insert_with(|| Value::String(value.to_owned()));
            }
        }
    }
    Ok((object, managed))
}

/// Where in the object a value is: what is decoded whole and what is filtered.
#[derive(Clone, Copy)]
enum Level {
    /// The object: its `metadata` is filtered, the rest decoded whole.
    Object,
    /// The metadata: its `managedFields` are filtered.
    Metadata,
    /// The field-manager entries: only the operator's are kept.
    Managed,
}

/// Decodes a JSON value at `Level`, as `serde_json::Value` would but for what it filters.
struct Trimmed(Level);

impl<'de> DeserializeSeed<'de> for Trimmed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Trimmed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Level::Object => "a Kubernetes object",
            Level::Metadata => "object metadata",
            Level::Managed => "a list of field-manager entries",
        })
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match (self.0, key.as_str()) {
                (Level::Object, "metadata") => map.next_value_seed(Trimmed(Level::Metadata))?,
                (Level::Metadata, "managedFields") => map.next_value_seed(Trimmed(Level::Managed))?,
                _ => map.next_value::<Value>()?,
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut kept = Vec::new();
        while let Some(entry) = seq.next_element::<Value>()? {
            let mine = entry.get("manager").and_then(Value::as_str) == Some(MANAGER);
            if mine || !matches!(self.0, Level::Managed) {
                kept.push(entry);
            }
        }
        Ok(Value::Array(kept))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
    use kube::{ResourceExt, api::DynamicObject};
    use serde_json::json;

    use super::*;
    use crate::controller::compact::Compact;

    fn entry(manager: &str, operation: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    /// A Deployment as a list's item: no `apiVersion` or `kind`, three managers' entries.
    fn deployment() -> Value {
        json!({
            "metadata": {
                "name": "p-producer", "namespace": "ns", "resourceVersion": "42",
                "labels": {"cilvest.io/pipeline": "p"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "managedFields": [
                    entry("kube-controller-manager", "Update", json!({"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}, "f:status": {"f:replicas": {}}})),
                    entry(MANAGER, "Apply", json!({"f:metadata": {"f:labels": {"f:cilvest.io/pipeline": {}}}, "f:spec": {"f:replicas": {}}})),
                    entry("kubectl-edit", "Update", json!({"f:spec": {"f:paused": {}}})),
                ]
            },
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 1, "availableReplicas": 1}
        })
    }

    #[test]
    fn only_the_operators_field_manager_entries_are_kept() {
        let (object, managed) = decode::<Deployment, _>(deployment()).expect("decodes");
        assert_eq!(managed.len(), 1);
        assert_eq!(managed[0].manager.as_deref(), Some(MANAGER));
        assert!(object.pointer("/metadata/managedFields").is_none());
        assert_eq!(object["kind"], "Deployment", "filled in where a list's item has none");
        assert_eq!(object["apiVersion"], "apps/v1");
        assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["image"], "i");
        let (object, _) = decode::<DynamicObject, _>(deployment()).expect("decodes");
        assert!(object.get("kind").is_none(), "a dynamic kind's type is not guessed");
    }

    #[test]
    fn the_cache_holds_the_same_as_from_the_whole_object() {
        let whole: Deployment = serde_json::from_value(deployment()).expect("typed");
        let from_whole = Compact::new(whole);
        let mut decoded: Compact<Deployment> = serde_json::from_value(deployment()).expect("decodes");
        assert_eq!(decoded.name_any(), "p-producer");
        assert_eq!(decoded.namespace().as_deref(), Some("ns"));
        assert_eq!(
            decoded.resource_version().as_deref(),
            Some("42"),
            "the watch resumes from it"
        );
        decoded.forget_version();
        assert_eq!(decoded.resource_version(), None);
        assert!(decoded.applied().digest.is_some(), "the operator's entry is read");
        assert_eq!(decoded.applied(), from_whole.applied());
        assert_eq!(decoded.pipeline(), Some("p"));
        let json = |compact: &Compact<Deployment>| serde_json::to_value(compact.object().expect("body decodes"));
        assert_eq!(json(&decoded).expect("json"), json(&from_whole).expect("json"));
    }

    #[test]
    fn absent_or_null_managed_fields_are_none_and_a_malformed_object_is_an_error() {
        let (_, managed) = decode::<Pod, _>(json!({"metadata": {"name": "x", "managedFields": null}})).expect("null");
        assert!(managed.is_empty());
        let (_, managed) = decode::<Pod, _>(json!({"metadata": {"name": "x"}})).expect("absent");
        assert!(managed.is_empty());
        let error = decode::<Pod, _>(json!("a string")).expect_err("refused");
        assert!(error.to_string().contains("a Kubernetes object"), "{error}");
        let bad_entry = json!({"metadata": {"managedFields": [{"manager": MANAGER, "operation": 3}]}});
        let error = decode::<Pod, _>(bad_entry).expect_err("refused");
        assert!(error.to_string().contains("invalid type"), "{error}");
    }
}
