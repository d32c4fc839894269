//! When and how the day runs: the schedule and the transform engine (native, Dataproc, Dataproc Serverless).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::rules::{DURATION_PATTERN, cron_field, cron_shape, duration_within};

/// When the daily job runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// When the daily transform of the previous local day runs, as the CronJob controller reads it: 5 fields
    /// separated by single spaces (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week
    /// 0-6 or sun-sat; each `*`, a value, a range `a-b` with a <= b, or a comma list of those, with an optional
    /// `/step`), or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. At most 64
    /// characters. The time zone is `timeZone`'s, never a `TZ=` prefix.
    #[serde(default = "default_daily_cron")]
    #[schemars(regex(pattern = r"^[ -~]+$"), length(min = 1, max = 64))]
    #[x_kube(validation = cron_shape())]
    #[x_kube(validation = cron_field(0))]
    #[x_kube(validation = cron_field(1))]
    #[x_kube(validation = cron_field(2))]
    #[x_kube(validation = cron_field(3))]
    #[x_kube(validation = cron_field(4))]
    pub daily: String,
    /// IANA time zone for the schedule and for the local day and hour of every tweet, such as `Asia/Jakarta`
    /// (one of the names of the IANA database).
    #[serde(default = "default_time_zone")]
    #[schemars(schema_with = "crate::rules::time_zone_schema")]
    pub time_zone: String,
    /// Suspend the daily job and the producer. Existing data stays.
    #[serde(default)]
    pub suspend: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            daily: default_daily_cron(),
            time_zone: default_time_zone(),
            suspend: false,
        }
    }
}

/// The daily transform engine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// `native` (default) runs in the daily Job's own process; `dataproc` creates an ephemeral Dataproc cluster
    /// that is always deleted; `dataprocServerless` submits a Dataproc Serverless batch.
    #[serde(default)]
    pub engine: Engine,
    /// Settings of the ephemeral Dataproc cluster; required when engine is `dataproc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataproc: Option<Dataproc>,
    /// Settings of the Dataproc Serverless batch; required when engine is `dataprocServerless`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataproc_serverless: Option<DataprocServerless>,
}

/// Transform engines.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Engine {
    #[default]
    Native,
    Dataproc,
    DataprocServerless,
}

/// An ephemeral Dataproc cluster, created for one run and always deleted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.workers != 1").message("Dataproc needs 0 workers (a single-node cluster) or at least 2").field_path(".workers"))]
pub struct Dataproc {
    /// Google Cloud project ID that runs the cluster (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Compute region, such as `asia-southeast2` (Jakarta); a region, not a zone such as `asia-southeast2-a`.
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"))]
    pub region: String,
    /// Machine type of the master node, such as `n2-standard-2`.
    #[serde(default = "default_machine_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"), length(max = 63))]
    pub master_machine_type: String,
    /// Machine type of the worker nodes.
    #[serde(default = "default_machine_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"), length(max = 63))]
    pub worker_machine_type: String,
    /// Number of primary workers: 0 (a single-node cluster) or 2-100.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 0, max = 100))]
    pub workers: i32,
    /// Dataproc image version, such as `2.2-debian12` or `2.2.30-debian12`.
    #[serde(default = "default_image_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z0-9]+)*$"), length(max = 63))]
    pub image_version: String,
    /// Hard upper bound on the cluster's life (`lifecycleConfig.autoDeleteTtl`): even a crashed run cannot
    /// leave a cluster running longer. 10m to 14d, the range Dataproc accepts.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(10 * MINUTE, Some(14 * DAY), "maxLifetime must be between 10m and 14d, the range Dataproc accepts"))]
    pub max_lifetime: String,
}

/// A Dataproc Serverless batch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataprocServerless {
    /// Google Cloud project ID that runs the batch (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Compute region, such as `asia-southeast2`; a region, not a zone.
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"))]
    pub region: String,
    /// Upper bound on the batch's run time (`environmentConfig.executionConfig.ttl`): 10m to 14d.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(10 * MINUTE, Some(14 * DAY), "maxLifetime must be between 10m and 14d, the range Dataproc accepts"))]
    pub max_lifetime: String,
}
