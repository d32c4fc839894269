//! Start-up times of the real pods of the e2e test, for `scripts/bench --sections startup`: written to the file that
//! `CILVEST_E2E_TIMINGS` names, when it is set. The test asserts nothing about them (a benchmark is not a test).
//!
//! From the API server, at its one-second resolution: pod created -> scheduled -> container started -> Ready (or,
//! for a pod that runs to completion, finished); and the image pull as the kubelet's `Pulled` event reports it, in
//! milliseconds.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::{Api, Client, api::ListParams};
use serde_json::{Map, Value, json};

/// Record the start-up of the oldest pod matching `selector` in `namespace` as `label`, if timings are wanted.
pub async fn record(client: &Client, label: &str, namespace: &str, selector: &str) {
    let Some(path) = std::env::var_os("CILVEST_E2E_TIMINGS").map(PathBuf::from) else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(selector)).await else {
        return;
    };
    let Some(pod) = list
        .items
        .into_iter()
        .min_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return;
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let pulled = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name},reason=Pulled")))
        .await
        .ok()
        .and_then(|list| list.items.into_iter().find_map(|event| event.message));
    let timing = timing(&serde_json::to_value(&pod).unwrap_or_default(), pulled);
    let mut all: Map<String, Value> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    all.insert(label.to_owned(), timing);
    if let Err(error) = std::fs::write(&path, Value::Object(all).to_string()) {
        eprintln!("could not write {}: {error}", path.display());
    }
}

/// Seconds from the pod's creation to each step, and the pull as the kubelet reported it.
fn timing(pod: &Value, pulled: Option<String>) -> Value {
    let at = |pointer: &str| {
        pod.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
    };
    let condition = |kind: &str| {
        pod.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind && c["status"] == "True"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
    };
    let created = at("/metadata/creationTimestamp");
    let since = |time: Option<DateTime<Utc>>| Some((time? - created?).num_milliseconds() as f64 / 1000.0);
    let started = at("/status/containerStatuses/0/state/running/startedAt")
        .or_else(|| at("/status/containerStatuses/0/state/terminated/startedAt"));
    let pull_ms = pulled.as_deref().and_then(pull_ms);
    json!({
        "pod": pod.pointer("/metadata/name"),
        "image": pod.pointer("/spec/containers/0/image"),
        "scheduled_s": since(condition("PodScheduled")),
        "started_s": since(started),
        "ready_s": since(condition("Ready")),
        "finished_s": since(at("/status/containerStatuses/0/state/terminated/finishedAt")),
        "pulled": pulled,
        "pull_ms": pull_ms,
    })
}

/// The pull time of a kubelet `Pulled` message (`Successfully pulled image "x" in 512ms (...)`), in milliseconds;
/// `None` when the image was already present.
fn pull_ms(message: &str) -> Option<f64> {
    let after = message.split(" in ").nth(1)?;
    let duration = after.split_whitespace().next()?;
    let (number, scale) = if let Some(ms) = duration.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = duration.strip_suffix('s') {
        (s, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}
