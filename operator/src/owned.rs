//! What the operator owns in a live child: the fields its server-side apply set, read from the child's
//! `managedFields`, and one digest of them that a reconcile compares with the same digest of what it would apply.
//!
//! This is how the caches keep a number per child instead of its body (BENCHMARKS.md, issue 25). The digest covers
//! what the drift check compares ([`crate::drift::COMPARED`] and the labels and annotations), after dropping what
//! the API server omits (nulls, empty lists and maps) and writing numbers as text (as the drift check compares
//! them), so an undrifted child's owned fields digest to the number of the object the operator applied. A hand
//! edit of an owned field moves that field to the editor's manager (or removes it): the digests differ, and the
//! reconcile fetches the child and runs the drift check on its whole body. A digest that differs for another reason
//! (the API server writing a value in another form) costs a fetch, never a missed drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Map, Value};

use crate::drift::COMPARED;

/// The fields of `live` that `manager` set by server-side apply, from the object's `managedFields` entries; `None`
/// when there is no such entry, or more than one for its main resource (say, one per API version).
pub fn owned(live: &Value, entries: &[ManagedFieldsEntry], manager: &str) -> Option<Value> {
    let mut mine = entries.iter().filter(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().is_none_or(str::is_empty)
    });
    let entry = mine.next()?;
    if mine.next().is_some() {
        return None;
    }
    Some(project(live, entry.fields_v1.as_ref()?.0.as_object()?))
}

/// `live` cut down to the members of a `FieldsV1` set: `f:<field>` for a field, `k:<key fields>` for an item of a
/// list keyed by those fields, `v:<value>` for an item of a set; a member with no members of its own is owned whole.
fn project(live: &Value, fields: &Map<String, Value>) -> Value {
    let members: Vec<(&str, &Map<String, Value>)> = fields
        .iter()
        .filter(|(key, _)| key.as_str() != ".")
        .filter_map(|(key, sub)| Some((key.as_str(), sub.as_object()?)))
        .collect();
    if members.is_empty() {
        return live.clone();
    }
    match live {
        Value::Object(object) => Value::Object(
            members
                .iter()
                .filter_map(|(key, sub)| {
                    let name = key.strip_prefix("f:")?;
                    Some((name.to_owned(), project(object.get(name)?, sub)))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|item| {
                    let (_, sub) = members.iter().find(|(key, _)| is_member(key, item))?;
                    Some(project(item, sub))
                })
                .collect(),
        ),
        scalar => scalar.clone(),
    }
}

/// Whether a list item is the one a `k:` or `v:` member names.
fn is_member(key: &str, item: &Value) -> bool {
    if let Some(keys) = key.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
            return false;
        };
        keys.iter().all(|(field, value)| item.get(field) == Some(value))
    } else if let Some(value) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|value| &value == item)
    } else {
        false
    }
}

/// The digest of what the drift check compares in `object` (desired, or a live child's owned fields).
pub fn digest(object: &Value) -> u64 {
    let mut compared = Map::new();
    for field in COMPARED {
        if let Some(value) = object.get(field) {
            compared.insert(field.to_owned(), value.clone());
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(value) = object.pointer(&format!("/metadata/{field}")) {
            compared.insert(format!("metadata.{field}"), value.clone());
        }
    }
    let canonical = canonical(&Value::Object(compared)).unwrap_or(Value::Null);
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `value` without nulls and empty lists and maps, its numbers as text and its keys sorted; `None` if nothing is left.
fn canonical(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Number(number) => Some(Value::String(match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => format!("{}", float as i64),
            _ => number.to_string(),
        })),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|item| canonical(item).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            let map: Map<String, Value> = keys
                .into_iter()
                .filter_map(|key| Some((key.clone(), canonical(&object[key])?)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A Deployment as the API server returns it after the operator applied `applied`: defaults and status added, one
    /// env var and a label set by someone else.
    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "p-producer", "namespace": "ns",
                "labels": {"app": "cilvest", "team": "data"},
                "annotations": {"cilvest.io/applied-hash": "abc", "deployment.kubernetes.io/revision": "1"},
                "managedFields": [
                    {"manager": "cilvest-operator", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}, "f:annotations": {"f:cilvest.io/applied-hash": {}}},
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"producer\"}": {".": {}, "f:name": {}, "f:args": {}, "f:env": {
                                "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}
                            }, "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
                        }}}}
                     }},
                    {"manager": "cilvest-operator", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
                    {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}}
                ]
            },
            "spec": {
                "replicas": 1, "revisionHistoryLimit": 10,
                "template": {"spec": {"dnsPolicy": "ClusterFirst", "containers": [{
                    "name": "producer", "args": ["producer"], "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "set by hand"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}]
                }]}}
            },
            "status": {"availableReplicas": 1}
        })
    }

    fn applied() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "p-producer", "labels": {"app": "cilvest"}, "annotations": {"cilvest.io/applied-hash": "abc"}},
            "spec": {"replicas": 1.0, "template": {"spec": {"volumes": [], "containers": [{
                "name": "producer", "args": ["producer"], "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 8080}], "securityContext": null
            }]}}}
        })
    }

    /// `owned` of a whole object with its `managedFields`, as the caches call it.
    fn owned_of(object: &Value) -> Option<Value> {
        let entries: Vec<ManagedFieldsEntry> = object
            .pointer("/metadata/managedFields")
            .and_then(|entries| serde_json::from_value(entries.clone()).ok())
            .unwrap_or_default();
        owned(object, &entries, "cilvest-operator")
    }

    #[test]
    fn the_owned_fields_of_an_undrifted_child_digest_as_what_was_applied() {
        let owned = owned_of(&live()).expect("an Apply entry");
        assert_eq!(
            owned["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert!(
            owned["spec"].get("revisionHistoryLimit").is_none(),
            "defaults are not owned"
        );
        assert!(owned.get("status").is_none());
        assert_eq!(owned["metadata"]["labels"], json!({"app": "cilvest"}));
        assert_eq!(digest(&owned), digest(&applied()));
    }

    #[test]
    fn an_owned_field_taken_or_removed_by_a_hand_edit_changes_the_digest() {
        let mut scaled = live();
        // `kubectl scale` (an Update) takes `spec.replicas` from the operator's entry.
        scaled["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
            .as_object_mut()
            .expect("spec")
            .remove("f:replicas");
        scaled["spec"]["replicas"] = json!(3);
        let owned_scaled = owned_of(&scaled).expect("an Apply entry");
        assert_ne!(digest(&owned_scaled), digest(&applied()));

        let mut removed = live();
        removed["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "B", "value": "set by hand"}]);
        let owned_removed = owned_of(&removed).expect("an Apply entry");
        assert_ne!(digest(&owned_removed), digest(&applied()));
    }

    #[test]
    fn no_single_apply_entry_means_no_owned_fields() {
        let mut other = live();
        other["metadata"]["managedFields"][0]["manager"] = json!("someone-else");
        assert!(owned_of(&other).is_none());
        let mut twice = live();
        let entry = twice["metadata"]["managedFields"][0].clone();
        twice["metadata"]["managedFields"]
            .as_array_mut()
            .expect("list")
            .push(entry);
        assert!(owned_of(&twice).is_none());
        let mut none = live();
        none["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("managedFields");
        assert!(owned_of(&none).is_none());
    }

    #[test]
    fn set_members_and_unknown_members_are_projected_by_value_or_left_out() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"list": [1, 2]}});
        let fields = json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}, "f:spec": {"f:list": {"i:0": {}}}});
        let projected = project(&live, fields.as_object().expect("fields"));
        assert_eq!(projected["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(
            projected["spec"]["list"],
            json!([]),
            "index members are not matched: a fetch decides"
        );
    }
}
