//! The field names of the Dataproc v1 REST resources the fake accepts, as the API reference lists them
//! (`Cluster`, `ClusterConfig`, `GceClusterConfig`, `InstanceGroupConfig`, `DiskConfig`, `SoftwareConfig`,
//! `LifecycleConfig`, `SubmitJobRequest`, `Job`, `JobReference`, `JobPlacement`, `PySparkJob`, `Batch`,
//! `PySparkBatch`, `EnvironmentConfig`, `ExecutionConfig`). The real API refuses any other field with 400
//! `INVALID_ARGUMENT` ("Unknown name ... Cannot find field"), so a misspelt field fails here as it would there,
//! instead of being ignored. Maps (`labels`, `properties`, `metadata`) take any key.

use serde_json::Value;

/// The message at `path` (dotted, from the request's root), and the fields it has; `None` for a map or a scalar.
fn fields(path: &str) -> Option<&'static [&'static str]> {
    const INSTANCE_GROUP: &[&str] = &[
        "numInstances",
        "instanceNames",
        "instanceReferences",
        "imageUri",
        "machineTypeUri",
        "diskConfig",
        "isPreemptible",
        "preemptibility",
        "managedGroupConfig",
        "accelerators",
        "minCpuPlatform",
        "minNumInstances",
        "instanceFlexibilityPolicy",
        "startupConfig",
    ];
    const DISK: &[&str] = &[
        "bootDiskType",
        "bootDiskSizeGb",
        "numLocalSsds",
        "localSsdInterface",
        "bootDiskProvisionedIops",
        "bootDiskProvisionedThroughput",
    ];
    const PYSPARK: &[&str] = &[
        "mainPythonFileUri",
        "args",
        "pythonFileUris",
        "jarFileUris",
        "fileUris",
        "archiveUris",
        "properties",
        "loggingConfig",
    ];
    Some(match path {
        "cluster" => &["projectId", "clusterName", "config", "virtualClusterConfig", "labels"],
        "cluster.config" => &[
            "configBucket",
            "tempBucket",
            "gceClusterConfig",
            "masterConfig",
            "workerConfig",
            "secondaryWorkerConfig",
            "softwareConfig",
            "initializationActions",
            "encryptionConfig",
            "autoscalingConfig",
            "securityConfig",
            "lifecycleConfig",
            "endpointConfig",
            "metastoreConfig",
            "dataprocMetricConfig",
            "auxiliaryNodeGroups",
        ],
        "cluster.config.gceClusterConfig" => &[
            "zoneUri",
            "networkUri",
            "subnetworkUri",
            "internalIpOnly",
            "privateIpv6GoogleAccess",
            "serviceAccount",
            "serviceAccountScopes",
            "tags",
            "metadata",
            "reservationAffinity",
            "nodeGroupAffinity",
            "shieldedInstanceConfig",
            "confidentialInstanceConfig",
        ],
        "cluster.config.masterConfig" | "cluster.config.workerConfig" | "cluster.config.secondaryWorkerConfig" => {
            INSTANCE_GROUP
        }
        "cluster.config.masterConfig.diskConfig"
        | "cluster.config.workerConfig.diskConfig"
        | "cluster.config.secondaryWorkerConfig.diskConfig" => DISK,
        "cluster.config.softwareConfig" => &["imageVersion", "properties", "optionalComponents"],
        "cluster.config.lifecycleConfig" => &["idleDeleteTtl", "autoDeleteTime", "autoDeleteTtl"],
        "submit" => &["job", "requestId"],
        "submit.job" => &[
            "reference",
            "placement",
            "pysparkJob",
            "sparkJob",
            "hadoopJob",
            "hiveJob",
            "pigJob",
            "sparkRJob",
            "sparkSqlJob",
            "prestoJob",
            "trinoJob",
            "flinkJob",
            "labels",
            "scheduling",
            "driverSchedulingConfig",
        ],
        "submit.job.reference" => &["projectId", "jobId"],
        "submit.job.placement" => &["clusterName", "clusterUuid", "clusterLabels"],
        "submit.job.pysparkJob" => PYSPARK,
        "batch" => &[
            "pysparkBatch",
            "sparkBatch",
            "sparkRBatch",
            "sparkSqlBatch",
            "runtimeConfig",
            "environmentConfig",
            "labels",
        ],
        "batch.pysparkBatch" => &PYSPARK[..6],
        "batch.environmentConfig" => &["executionConfig", "peripheralsConfig"],
        "batch.environmentConfig.executionConfig" => &[
            "serviceAccount",
            "networkUri",
            "subnetworkUri",
            "networkTags",
            "kmsKey",
            "idleTtl",
            "ttl",
            "stagingBucket",
            "authenticationConfig",
        ],
        _ => return None,
    })
}

/// The first field of `body` (a `root` message: `cluster`, `submit` or `batch`) that its message does not have, as
/// the API's error message words it.
pub fn unknown_field(root: &str, body: &Value) -> Option<String> {
    check(root, body)
}

fn check(path: &str, value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            let known = fields(path)?;
            map.iter().find_map(|(key, child)| {
                if known.contains(&key.as_str()) {
                    check(&format!("{path}.{key}"), child)
                } else {
                    Some(format!(
                        "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
                    ))
                }
            })
        }
        Value::Array(items) => items.iter().find_map(|item| check(path, item)),
        _ => None,
    }
}
