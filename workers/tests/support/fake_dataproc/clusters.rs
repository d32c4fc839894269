//! Clusters and their long-running operations: `clusters.create` (only fields the API has, valid labels), `list` with
//! its filters, `delete`, and `operations.get`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::super::dataproc_fields::unknown_field;
use super::{Cluster, Effect, FakeState, Operation, error, key, not_found};

pub(super) fn cluster_json(project: &str, region: &str, cluster: &Cluster) -> Value {
    let mut value = cluster.body.clone();
    value["projectId"] = json!(project);
    value["clusterName"] = json!(cluster.name);
    value["labels"] = json!(cluster.labels);
    value["status"] = json!({"state": cluster.state});
    if cluster.state == "ERROR" {
        value["status"]["detail"] = json!("Initialization action failed");
    }
    let _ = region;
    value
}

pub(super) fn new_operation(
    state: &mut FakeState,
    project: &str,
    region: &str,
    effect: Effect,
    metadata: Value,
) -> Value {
    let name = format!(
        "projects/{project}/regions/{region}/operations/op-{}",
        state.next_operation
    );
    state.next_operation += 1;
    let operation = Operation {
        name: name.clone(),
        done: false,
        error: None,
        effect,
        metadata,
    };
    let value = operation_json(&operation);
    state.operations.insert(name, operation);
    value
}

fn operation_json(operation: &Operation) -> Value {
    let mut value = json!({"name": operation.name, "metadata": operation.metadata, "done": operation.done});
    if let Some(error) = &operation.error {
        value["error"] = error.clone();
    }
    value
}

/// Label keys and values as the API validates them: lowercase letters, digits, `_` and `-`, at most 63 characters.
fn valid_label(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) fn create_cluster(state: &mut FakeState, project: &str, region: &str, body: &Value) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("cluster", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let Some(name) = body["clusterName"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "clusterName is required");
    };
    if body["projectId"].as_str() != Some(project) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "projectId must match the request's project",
        );
    }
    let name_ok = name.len() <= 51
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("invalid cluster name {name}"),
        );
    }
    let labels: BTreeMap<String, String> = match serde_json::from_value(body["labels"].clone()) {
        Ok(labels) => labels,
        Err(_) if body["labels"].is_null() => BTreeMap::new(),
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", format!("labels: {e}")),
    };
    if !labels.iter().all(|(k, v)| valid_label(k) && valid_label(v)) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "invalid label");
    }
    for ttl in ["autoDeleteTtl", "idleDeleteTtl"] {
        let value = &body["config"]["lifecycleConfig"][ttl];
        if !value.is_null()
            && !value
                .as_str()
                .is_some_and(|v| v.ends_with('s') && v[..v.len() - 1].parse::<u64>().is_ok())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("invalid duration {ttl}: {value}"),
            );
        }
    }
    if state.faults.create_refused {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            format!("Insufficient 'CPUS' quota. Requested 8.0, available 4.0 in region {region}."),
        );
    }
    let id = key(project, region, name);
    if state.clusters.contains_key(&id) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Cluster {name}"),
        );
    }
    state.clusters.insert(
        id,
        Cluster {
            name: name.to_owned(),
            state: "CREATING".into(),
            labels,
            body: body.clone(),
        },
    );
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
        "clusterName": name,
        "operationType": "CREATE",
        "status": {"state": "PENDING"},
    });
    let operation = new_operation(
        state,
        project,
        region,
        Effect::ClusterCreated(key(project, region, name)),
        metadata,
    );
    (StatusCode::OK, operation)
}

/// `field = value [AND field = value]`: every clause must hold.
fn matches_filter(cluster: &Cluster, filter: &str) -> Result<bool, String> {
    let normalized = filter.replace(" AND ", " ");
    let tokens: Vec<&str> = normalized.split_whitespace().collect();
    if !tokens.len().is_multiple_of(3) {
        return Err(format!("invalid filter {filter:?}"));
    }
    for clause in tokens.chunks(3) {
        let [field, "=", value] = clause else {
            return Err(format!("invalid filter {filter:?}"));
        };
        let holds = match *field {
            "clusterName" => *value == "*" || cluster.name == *value,
            "status.state" => match *value {
                "ACTIVE" => matches!(cluster.state.as_str(), "CREATING" | "UPDATING" | "RUNNING"),
                "INACTIVE" => matches!(cluster.state.as_str(), "DELETING" | "ERROR" | "STOPPING" | "STOPPED"),
                state => cluster.state == state,
            },
            label if label.starts_with("labels.") => {
                let actual = cluster.labels.get(&label["labels.".len()..]);
                actual.is_some_and(|actual| *value == "*" || actual == value)
            }
            other => return Err(format!("invalid filter field {other:?}")),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn list_clusters(
    state: &FakeState,
    project: &str,
    region: &str,
    query: &BTreeMap<String, String>,
) -> (StatusCode, Value) {
    let filter = query.get("filter").map(String::as_str).unwrap_or("");
    let prefix = key(project, region, "");
    let mut clusters = Vec::new();
    for (id, cluster) in &state.clusters {
        if !id.starts_with(&prefix) {
            continue;
        }
        match matches_filter(cluster, filter) {
            Ok(true) => clusters.push(cluster_json(project, region, cluster)),
            Ok(false) => {}
            Err(message) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message),
        }
    }
    // The real API leaves `clusters` out of an empty answer.
    if clusters.is_empty() {
        (StatusCode::OK, json!({}))
    } else {
        (StatusCode::OK, json!({"clusters": clusters}))
    }
}

pub(super) fn delete_cluster(state: &mut FakeState, project: &str, region: &str, name: &str) -> (StatusCode, Value) {
    if state.faults.delete_unavailable > 0 {
        state.faults.delete_unavailable -= 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        );
    }
    let id = key(project, region, name);
    let Some(cluster) = state.clusters.get_mut(&id) else {
        return not_found("Cluster", name);
    };
    if cluster.state == "DELETING" {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!("Cluster {name} is in state DELETING and cannot be deleted"),
        );
    }
    cluster.state = "DELETING".into();
    // Jobs of a deleted cluster die with it.
    for job in state.jobs.values_mut() {
        if job.cluster == id && !matches!(job.state.as_str(), "DONE" | "ERROR" | "CANCELLED") {
            job.state = "ERROR".into();
        }
    }
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
        "clusterName": name,
        "operationType": "DELETE",
    });
    (
        StatusCode::OK,
        new_operation(state, project, region, Effect::ClusterDeleted(id), metadata),
    )
}

pub(super) fn get_operation(state: &mut FakeState, name: &str) -> (StatusCode, Value) {
    let cluster_error = state.faults.cluster_error;
    let Some(operation) = state.operations.get_mut(name) else {
        return not_found("Operation", name);
    };
    if !operation.done {
        operation.done = true;
        match operation.effect.clone() {
            Effect::ClusterCreated(id) => {
                if let Some(cluster) = state.clusters.get_mut(&id) {
                    if cluster_error {
                        cluster.state = "ERROR".into();
                        operation.error = Some(json!({"code": 13, "message": "Initialization action failed: exit 1"}));
                    } else {
                        cluster.state = "RUNNING".into();
                    }
                }
            }
            Effect::ClusterDeleted(id) => {
                state.clusters.remove(&id);
            }
            Effect::None => {}
        }
    }
    (StatusCode::OK, operation_json(operation))
}
