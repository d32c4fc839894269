//! The request bodies and names Dataproc gets: the `clusters.create` body, labels, resource names, the
//! transform's script path and its one argument.

use std::time::Duration;

use chrono::NaiveDate;
use cilvest_crds::CilvestPipelineSpec;
use serde_json::{Value, json};

use super::{DATE_LABEL, IDLE_DELETE_TTL, NAMESPACE_LABEL, PIPELINE_LABEL, TRANSFORM_PY};

/// A cluster to create: its name, its pipeline and the `clusters.create` body.
#[derive(Clone, Debug)]
pub struct ClusterRequest {
    pub name: String,
    pub namespace: String,
    pub pipeline: String,
    pub body: Value,
}

/// The labels of a run's cluster, job or batch.
pub fn labels(namespace: &str, pipeline: &str, date: NaiveDate) -> Value {
    json!({
        NAMESPACE_LABEL: label_value(namespace),
        PIPELINE_LABEL: label_value(pipeline),
        DATE_LABEL: date.to_string(),
        "managed-by": "cilvest",
    })
}

/// The `clusters.create` request for one run of `pipeline` on `date`; `run` makes the name unique per attempt.
/// `lifetime` is the spec's `maxLifetime`, parsed (`cilvest_crds::Pipeline::dataproc_max_lifetime`).
pub fn cluster_request(
    settings: &cilvest_crds::Dataproc,
    lifetime: Duration,
    namespace: &str,
    pipeline: &str,
    date: NaiveDate,
    run: &str,
) -> ClusterRequest {
    let name = resource_name(pipeline, date, run, 51);
    let vms = &settings.vms;
    let mut master = json!({"numInstances": 1, "machineTypeUri": settings.master_machine_type});
    let mut config = json!({
        "softwareConfig": {"imageVersion": settings.image_version},
        "lifecycleConfig": {
            "autoDeleteTtl": duration_string(lifetime),
            "idleDeleteTtl": duration_string(IDLE_DELETE_TTL.min(lifetime)),
        },
    });
    let mut gce = serde_json::Map::new();
    if let Some(account) = &vms.service_account {
        gce.insert("serviceAccount".into(), json!(account));
        // A custom service account gets the default scopes unless asked otherwise; IAM decides what it may do.
        gce.insert("serviceAccountScopes".into(), json!([CLOUD_PLATFORM_SCOPE]));
    }
    if let Some(subnetwork) = &vms.subnetwork {
        gce.insert("subnetworkUri".into(), json!(subnetwork));
    }
    if let Some(internal) = vms.internal_ip_only {
        gce.insert("internalIpOnly".into(), json!(internal));
    }
    if let Some(zone) = &vms.zone {
        gce.insert("zoneUri".into(), json!(zone));
    }
    if !gce.is_empty() {
        config["gceClusterConfig"] = Value::Object(gce);
    }
    let mut disk = serde_json::Map::new();
    if let Some(kind) = vms.boot_disk_type {
        disk.insert("bootDiskType".into(), json!(kind.as_str()));
    }
    if let Some(size) = vms.boot_disk_size_gb {
        disk.insert("bootDiskSizeGb".into(), json!(size));
    }
    if !disk.is_empty() {
        master["diskConfig"] = Value::Object(disk.clone());
    }
    if settings.workers > 0 {
        let mut workers = json!({"numInstances": settings.workers, "machineTypeUri": settings.worker_machine_type});
        if !disk.is_empty() {
            workers["diskConfig"] = Value::Object(disk);
        }
        config["workerConfig"] = workers;
    } else {
        config["softwareConfig"]["properties"] = json!({"dataproc:dataproc.allow.zero.workers": "true"});
    }
    config["masterConfig"] = master;
    ClusterRequest {
        body: json!({
            "projectId": settings.project,
            "clusterName": name,
            "labels": with_user_labels(labels(namespace, pipeline, date), &settings.labels),
            "config": config,
        }),
        name,
        namespace: namespace.to_owned(),
        pipeline: pipeline.to_owned(),
    }
}

/// `labels` with the spec's own labels added; Cilvest's win on a clash, since runs find their clusters by them.
pub fn with_user_labels(
    mut labels: Value,
    user: &std::collections::BTreeMap<String, cilvest_crds::LabelValue>,
) -> Value {
    if let Some(ours) = labels.as_object_mut() {
        for (key, value) in user {
            ours.entry(key.clone()).or_insert_with(|| json!(value.0));
        }
    }
    labels
}

/// `environmentConfig.executionConfig` of a Serverless batch: its time limit, and where and as whom it runs.
pub fn batch_execution(settings: &cilvest_crds::DataprocServerless, ttl: Duration) -> Value {
    let mut execution = json!({"ttl": duration_string(ttl)});
    if let Some(account) = &settings.service_account {
        execution["serviceAccount"] = json!(account);
    }
    if let Some(subnetwork) = &settings.subnetwork {
        execution["subnetworkUri"] = json!(subnetwork);
    }
    execution
}

/// The OAuth scope a custom VM service account is given: all of Google Cloud, limited by IAM.
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `cilvest-<pipeline>-<yyyymmdd>-<run>` within `limit` characters (clusters: 51, batches: 63): lowercase letters,
/// digits and hyphens, starting with a letter. The pipeline part is shortened, never the run, so names stay unique.
pub fn resource_name(pipeline: &str, date: NaiveDate, run: &str, limit: usize) -> String {
    let run = label_value(run).replace('_', "-");
    let fixed = "cilvest---".len() + 8 + run.len();
    let mut pipeline = label_value(pipeline).replace('_', "-");
    pipeline.truncate(limit.saturating_sub(fixed));
    let pipeline = pipeline.trim_matches('-');
    format!("cilvest-{pipeline}-{}-{run}", date.format("%Y%m%d"))
}

/// A protobuf Duration in JSON: whole seconds, `"7200s"`.
pub fn duration_string(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// Label values: lowercase letters, digits, `-` and `_`, at most 63 characters.
pub fn label_value(text: &str) -> String {
    let mut value: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '-',
        })
        .collect();
    value.truncate(63);
    value
}

pub(super) fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Idempotency key of a create or submit call (at most 40 characters), so a retried request cannot create a
/// second cluster. The end of the name is kept: it holds the run id that tells attempts apart.
pub(super) fn request_id(name: &str) -> String {
    let id: Vec<char> = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    id[id.len().saturating_sub(40)..].iter().collect()
}

/// `jobs/transform-<sha256 prefix>.py`: the script's lake path, named by its content so runs never overwrite a
/// version another run is still reading.
pub fn script_path() -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, TRANSFORM_PY.as_bytes());
    let hex: String = digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("jobs/transform-{hex}.py")
}

/// The one argument of `transform.py`: the pipeline's rules and the day's input and output folders.
pub fn transform_config(spec: &CilvestPipelineSpec, date: NaiveDate, raw: &str, out: &str) -> String {
    json!({
        "keywords": spec.keywords.iter().map(|k| json!({"name": k.name, "terms": k.terms})).collect::<Vec<_>>(),
        "mode": spec.matching.mode,
        "language": spec.language,
        "dropRetweets": spec.drop_retweets,
        "timeZone": spec.schedule.time_zone,
        "runs": [{"date": date.to_string(), "raw": raw, "out": out}],
    })
    .to_string()
}
