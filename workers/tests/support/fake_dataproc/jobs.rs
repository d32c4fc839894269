//! Jobs on a cluster (`jobs:submit`, `jobs.get`) and Dataproc Serverless batches (`batches.create`, `batches.get`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::super::dataproc_fields::unknown_field;
use super::clusters::new_operation;
use super::{Answer, Batch, Effect, FakeState, Job, error, key, not_found, plain};

pub(super) fn submit_job(state: &mut FakeState, project: &str, region: &str, body: &Value) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("submit", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let job = &body["job"];
    let Some(cluster) = job["placement"]["clusterName"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "job.placement.clusterName is required",
        );
    };
    if job["pysparkJob"]["mainPythonFileUri"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "pysparkJob.mainPythonFileUri is required",
        );
    }
    let cluster_id = key(project, region, cluster);
    match state.clusters.get(&cluster_id) {
        None => return not_found("Cluster", cluster),
        Some(c) if c.state != "RUNNING" => {
            return error(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                format!("Cluster {cluster} is in state {}", c.state),
            );
        }
        Some(_) => {}
    }
    let id = job["reference"]["jobId"]
        .as_str()
        .map_or_else(|| format!("job-{}", state.jobs.len() + 1), str::to_owned);
    let job_key = key(project, region, &id);
    if state.jobs.contains_key(&job_key) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Job {id}"),
        );
    }
    let stored = Job {
        id: id.clone(),
        cluster: cluster_id,
        state: "PENDING".into(),
        body: job.clone(),
        polls: 0,
    };
    let mut answer = job.clone();
    answer["status"] = json!({"state": "PENDING"});
    state.jobs.insert(job_key, stored);
    (StatusCode::OK, answer)
}

pub(super) fn get_job(state: &mut FakeState, project: &str, region: &str, id: &str) -> Answer {
    let faults = state.faults.clone();
    let on_done = state.on_done.clone();
    let Some(job) = state.jobs.get_mut(&key(project, region, id)) else {
        return plain(not_found("Job", id));
    };
    job.polls += 1;
    let mut finished = None;
    job.state = match (job.state.as_str(), job.polls) {
        ("PENDING", _) => "RUNNING".into(),
        ("RUNNING", _) if faults.job_hangs => "RUNNING".into(),
        ("RUNNING", polls) if polls >= 3 && faults.job_fails => "ERROR".into(),
        ("RUNNING", polls) if polls >= 3 => {
            finished = on_done.map(|callback| (callback, job.body["pysparkJob"].clone()));
            "DONE".into()
        }
        (state, _) => state.to_owned(),
    };
    let mut answer = job.body.clone();
    answer["status"] = json!({"state": job.state});
    if job.state == "ERROR" {
        answer["status"]["details"] =
            json!("Job failed with message [Py4JJavaError: An error occurred while calling o42.parquet]");
    }
    (StatusCode::OK, answer, finished)
}

pub(super) fn create_batch(
    state: &mut FakeState,
    project: &str,
    region: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    if let Some(message) = unknown_field("batch", body) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    }
    let Some(id) = query.get("batchId") else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "batchId is required");
    };
    let id_ok = (4..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("invalid batchId {id}"),
        );
    }
    if body["pysparkBatch"]["mainPythonFileUri"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "pysparkBatch.mainPythonFileUri is required",
        );
    }
    let batch_key = key(project, region, id);
    if state.batches.contains_key(&batch_key) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Already exists: Batch {id}"),
        );
    }
    state.batches.insert(
        batch_key,
        Batch {
            id: id.clone(),
            state: "PENDING".into(),
            body: body.clone(),
            polls: 0,
        },
    );
    let metadata = json!({
        "@type": "type.googleapis.com/google.cloud.dataproc.v1.BatchOperationMetadata",
        "batch": format!("projects/{project}/locations/{region}/batches/{id}"),
    });
    let operation = new_operation(state, project, region, Effect::None, metadata);
    (StatusCode::OK, operation)
}

pub(super) fn get_batch(state: &mut FakeState, project: &str, region: &str, id: &str) -> Answer {
    let faults = state.faults.clone();
    let on_done = state.on_done.clone();
    let Some(batch) = state.batches.get_mut(&key(project, region, id)) else {
        return plain(not_found("Batch", id));
    };
    batch.polls += 1;
    let mut finished = None;
    batch.state = match (batch.state.as_str(), batch.polls) {
        ("PENDING", _) => "RUNNING".into(),
        ("RUNNING", polls) if polls >= 3 && faults.batch_fails => "FAILED".into(),
        ("RUNNING", polls) if polls >= 3 => {
            finished = on_done.map(|callback| (callback, batch.body["pysparkBatch"].clone()));
            "SUCCEEDED".into()
        }
        (state, _) => state.to_owned(),
    };
    let mut answer = batch.body.clone();
    answer["name"] = json!(format!("projects/{project}/locations/{region}/batches/{id}"));
    answer["state"] = json!(batch.state);
    if batch.state == "FAILED" {
        answer["stateMessage"] = json!("Job failed with message [ModuleNotFoundError: No module named 'zoneinfo']");
    }
    (StatusCode::OK, answer, finished)
}
