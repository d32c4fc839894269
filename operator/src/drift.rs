//! Drift: whether a live child still holds every field the operator sets, as Strimzi and ECK check their children.
//! Pure: the desired object and the live one as JSON in, the first field that differs out.
//!
//! Only what the operator declares is compared: fields the API server or other controllers add (defaults, status,
//! `managedFields`, a Deployment's revision annotation) are not drift. Lists of objects that carry a `name`
//! (containers, env, volumes, ports) are matched by name, as server-side apply merges them; other lists must be equal.

use serde_json::Value;

/// Label that makes the operator leave a child alone: no apply, no drift restoration, no orphan deletion.
pub const PAUSED_LABEL: &str = "cilvest.io/paused";

/// The child carries `cilvest.io/paused: "true"`.
pub fn paused(live: &Value) -> bool {
    live.pointer("/metadata/labels")
        .and_then(|labels| labels.get(PAUSED_LABEL))
        .and_then(Value::as_str)
        == Some("true")
}

/// The top-level fields the drift check compares, besides the labels and annotations.
pub const COMPARED: [&str; 6] = [
    "spec",
    "data",
    "rules",
    "subjects",
    "roleRef",
    "automountServiceAccountToken",
];

/// The first field (a dotted path such as `spec.replicas`) where `live` lacks what `desired` sets.
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    let mut path = Vec::new();
    for field in COMPARED {
        if let Some(wanted) = desired.get(field) {
            path.push(field.to_owned());
            if let Some(found) = differs(wanted, live.get(field).unwrap_or(&Value::Null), &mut path) {
                return Some(found);
            }
            path.pop();
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(wanted) = desired.pointer(&format!("/metadata/{field}")) {
            path.extend(["metadata".to_owned(), field.to_owned()]);
            let found = live.pointer(&format!("/metadata/{field}")).unwrap_or(&Value::Null);
            if let Some(found) = differs(wanted, found, &mut path) {
                return Some(found);
            }
            path.truncate(path.len() - 2);
        }
    }
    None
}

fn differs(wanted: &Value, found: &Value, path: &mut Vec<String>) -> Option<String> {
    match (wanted, found) {
        (Value::Object(wanted), Value::Object(found)) => wanted.iter().find_map(|(key, value)| {
            path.push(key.clone());
            let result = differs(value, found.get(key).unwrap_or(&Value::Null), path);
            path.pop();
            result
        }),
        (Value::Array(wanted), Value::Array(found)) if keyed_by_name(wanted) => wanted.iter().find_map(|item| {
            let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
            path.push(format!("[{name}]"));
            let live = found
                .iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(name));
            let result = differs(item, live.unwrap_or(&Value::Null), path);
            path.pop();
            result
        }),
        (Value::Array(wanted), Value::Array(found)) if wanted.len() == found.len() => {
            wanted.iter().zip(found).enumerate().find_map(|(i, (w, f))| {
                path.push(format!("[{i}]"));
                let result = differs(w, f, path);
                path.pop();
                result
            })
        }
        (wanted, found) if same_scalar(wanted, found) => None,
        // An empty list or map is omitted by the API server (`omitempty`): a default-deny NetworkPolicy's
        // `egress: []` comes back without `egress`.
        (Value::Array(wanted), Value::Null) if wanted.is_empty() => None,
        (Value::Object(wanted), Value::Null) if wanted.is_empty() => None,
        _ => Some(render(path)),
    }
}

/// Lists whose every element is an object with a `name`: merged by name.
fn keyed_by_name(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i.get("name").is_some_and(Value::is_string))
}

/// Equal, or equal as the API server stores them: a number the operator writes may come back as a string of the
/// same number (Strimzi's topic config), and `false`/empty values it omits may come back explicit.
fn same_scalar(wanted: &Value, found: &Value) -> bool {
    match (wanted, found) {
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => n.to_string() == *s,
        _ => wanted == found,
    }
}

fn render(path: &[String]) -> String {
    let mut text = String::new();
    for segment in path {
        if !segment.starts_with('[') && !text.is_empty() {
            text.push('.');
        }
        text.push_str(segment);
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(replicas: i64, env: Value) -> Value {
        json!({"metadata": {"name": "p-producer", "labels": {"app": "cilvest"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "producer", "env": env}]}}}})
    }

    #[test]
    fn additions_by_the_server_are_not_drift() {
        let desired = deployment(1, json!([{"name": "A", "value": "1"}]));
        let mut live = desired.clone();
        live["spec"]["progressDeadlineSeconds"] = json!(600);
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "sidecar"}));
        live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
        assert_eq!(first_difference(&desired, &live), None);
    }

    #[test]
    fn edits_and_removals_name_the_field() {
        let desired = deployment(1, json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let scaled = deployment(3, json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        assert_eq!(first_difference(&desired, &scaled).as_deref(), Some("spec.replicas"));
        let removed = deployment(1, json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            first_difference(&desired, &removed).as_deref(),
            Some("spec.template.spec.containers[producer].env[B]")
        );
        let mut relabelled = desired.clone();
        relabelled["metadata"]["labels"]["app"] = json!("other");
        assert_eq!(
            first_difference(&desired, &relabelled).as_deref(),
            Some("metadata.labels.app")
        );
    }

    #[test]
    fn a_number_stored_as_a_string_is_the_same_number() {
        let desired = json!({"spec": {"config": {"retention.ms": 604_800_000}}});
        assert_eq!(
            first_difference(&desired, &json!({"spec": {"config": {"retention.ms": "604800000"}}})),
            None
        );
        assert_eq!(
            first_difference(&desired, &json!({"spec": {"config": {"retention.ms": "1000"}}})).as_deref(),
            Some("spec.config.retention.ms")
        );
    }

    #[test]
    fn a_paused_child_is_recognised() {
        assert!(paused(&json!({"metadata": {"labels": {PAUSED_LABEL: "true"}}})));
        assert!(!paused(&json!({"metadata": {"labels": {PAUSED_LABEL: "false"}}})));
    }

    #[test]
    fn an_empty_list_the_server_omits_is_not_drift() {
        let desired =
            json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}});
        let live = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}});
        assert_eq!(first_difference(&desired, &live), None);
        let opened = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{}]}});
        assert_eq!(first_difference(&opened, &live), Some("spec.egress".to_owned()));
    }
}
