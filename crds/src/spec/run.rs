//! When and how the day runs: the schedule and the transform engine (native, Dataproc, Dataproc Serverless).

use std::collections::BTreeMap;

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
    /// How many days before yesterday each daily run looks back at: a day that was never processed, whose run
    /// failed, or whose raw tweets or counts changed since its run (late data) is processed again, oldest first,
    /// before yesterday. 0 processes yesterday only. Default 7; at most 31.
    #[serde(default = "default_catch_up_days")]
    #[schemars(range(max = 31))]
    pub catch_up_days: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            daily: default_daily_cron(),
            time_zone: default_time_zone(),
            suspend: false,
            catch_up_days: default_catch_up_days(),
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
#[x_kube(validation = Rule::new("!has(self.vms) || !has(self.vms.zone) || self.vms.zone.startsWith(self.region + '-')").message("vms.zone must be a zone of the region").field_path(".vms.zone"))]
pub struct Dataproc {
    /// Google Cloud project ID that runs the cluster (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Compute region, such as `asia-southeast2` (Jakarta); a region, not a zone such as `asia-southeast2-a`.
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"), length(max = 63))]
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
    /// Where and as whom the cluster's VMs run (`config.gceClusterConfig` and the nodes' boot disks).
    #[serde(default, skip_serializing_if = "DataprocVms::is_empty")]
    pub vms: DataprocVms,
    /// Labels for the cluster and its job, besides the ones Cilvest sets (which win on a clash); for billing reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, LabelValue>,
}

/// A Dataproc label value: lowercase letters, digits, `_` and `-`, at most 63 characters. (Keys follow the same rule
/// and must start with a letter; a schema cannot constrain a map's keys without a CEL rule too costly for the API
/// server's budget, so Dataproc itself refuses a bad key, and the run fails naming it.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct LabelValue(#[schemars(regex(pattern = r"^[-_a-z0-9]{0,63}$"), length(max = 63))] pub String);
/// A subnetwork by short name (`cilvest-jkt`) or as `projects/P/regions/R/subnetworks/S` (optionally the full URL).
const SUBNETWORK_PATTERN: &str = r"^([a-z]([-a-z0-9]{0,61}[a-z0-9])?|(https://www\.googleapis\.com/compute/v1/)?projects/[-a-z0-9]+/regions/[a-z]+-[a-z]+[0-9]+/subnetworks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?)$";

/// The cluster's VMs: identity, network and boot disks. Without these the VMs run as the Compute Engine default
/// service account, on the project's default network, with Dataproc's default disks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.zone) || !has(self.subnetwork) || !self.subnetwork.contains('/regions/') || self.subnetwork.contains('/regions/' + self.zone.substring(0, self.zone.lastIndexOf('-')) + '/')").message("vms.subnetwork must be in the zone's region").field_path(".subnetwork"))]
pub struct DataprocVms {
    /// The service account the VMs run as (`gceClusterConfig.serviceAccount`, with the `cloud-platform` scope):
    /// it needs `roles/dataproc.worker` and the lake and BigQuery roles (docs/gke.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::GSA_PATTERN))]
    pub service_account: Option<String>,
    /// The subnetwork (`gceClusterConfig.subnetworkUri`); the project's default network when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SUBNETWORK_PATTERN), length(max = 512))]
    pub subnetwork: Option<String>,
    /// Internal IP addresses only (`gceClusterConfig.internalIpOnly`); the subnetwork then needs Private Google
    /// Access. Dataproc's own default applies when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip_only: Option<bool>,
    /// A zone of the region, such as `asia-southeast2-a` (`gceClusterConfig.zoneUri`); Dataproc picks one when left
    /// out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"), length(max = 63))]
    pub zone: Option<String>,
    /// Boot disk type of every node: `pd-standard`, `pd-balanced` or `pd-ssd` (`diskConfig.bootDiskType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_disk_type: Option<BootDiskType>,
    /// Boot disk size of every node in GB, 30 to 65536 (`diskConfig.bootDiskSizeGb`; Dataproc's default is 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 65536))]
    pub boot_disk_size_gb: Option<i32>,
}

impl DataprocVms {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Compute Engine persistent disk types Dataproc accepts for boot disks.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDiskType {
    #[serde(rename = "pd-standard")]
    Standard,
    #[serde(rename = "pd-balanced")]
    Balanced,
    #[serde(rename = "pd-ssd")]
    Ssd,
}

impl BootDiskType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "pd-standard",
            Self::Balanced => "pd-balanced",
            Self::Ssd => "pd-ssd",
        }
    }
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
    /// The service account the batch runs as (`environmentConfig.executionConfig.serviceAccount`); the Compute
    /// Engine default service account when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::GSA_PATTERN))]
    pub service_account: Option<String>,
    /// The subnetwork the batch runs in (`executionConfig.subnetworkUri`); it needs Private Google Access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SUBNETWORK_PATTERN), length(max = 512))]
    pub subnetwork: Option<String>,
    /// Labels for the batch, besides the ones Cilvest sets (which win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, LabelValue>,
}
