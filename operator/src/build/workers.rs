//! The worker children: the ConfigMap holding `pipeline.json`, one ServiceAccount per worker, the producer and
//! consumer Deployments, and the pod and container shape every worker shares (restricted pod security profile).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
            EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SeccompProfile, SecretKeySelector, SecurityContext, ServiceAccount, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::ResourceExt;

use cilvest_crds::{
    CilvestPipeline, WorkerConfig,
    worker_config::{CONFIG_KEY, X_BEARER_TOKEN_ENV},
};

use super::BuildOptions;
use crate::meta::{PIPELINE_LABEL, labels, object_meta};

const CONFIG_DIR: &str = "/etc/cilvest";

/// The ConfigMap every worker mounts: the pipeline as the workers read it (`pipeline.json`).
pub(super) fn config_map(pipeline: &CilvestPipeline) -> ConfigMap {
    let config = WorkerConfig::for_pipeline(pipeline);
    ConfigMap {
        metadata: object_meta(pipeline, &format!("{}-config", pipeline.name_any()), "config"),
        // Serializing a plain struct of strings and numbers cannot fail.
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            serde_json::to_string_pretty(&config).unwrap_or_default(),
        )])),
        ..ConfigMap::default()
    }
}

/// GKE Workload Identity: the Google service account a Kubernetes ServiceAccount acts as.
pub const WORKLOAD_IDENTITY_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// One ServiceAccount per worker, without a token (and with its Google service account when the spec names one): the workers never call the Kubernetes API (the producer's
/// usage ConfigMap is the one exception, see [`super::x_usage`]).
pub(super) fn service_accounts(pipeline: &CilvestPipeline) -> Vec<ServiceAccount> {
    let name = pipeline.name_any();
    let kibana = super::kibana::wanted(pipeline).then_some(super::kibana::COMPONENT);
    ["producer", "consumer", "daily"]
        .into_iter()
        .chain(kibana)
        .map(|component| {
            let mut metadata = object_meta(pipeline, &format!("{name}-{component}"), component);
            if let Some(account) = pipeline.spec.workers.google_service_accounts.of(component) {
                metadata.annotations = Some(BTreeMap::from([(
                    WORKLOAD_IDENTITY_ANNOTATION.to_owned(),
                    account.to_owned(),
                )]));
            }
            ServiceAccount {
                metadata,
                automount_service_account_token: Some(false),
                ..ServiceAccount::default()
            }
        })
        .collect()
}

/// The producer: one replica (none when suspended), the X token from its Secret, never two at once.
pub(super) fn producer(pipeline: &CilvestPipeline, options: &BuildOptions) -> Deployment {
    let spec = &pipeline.spec;
    let x = &spec.source.x;
    let token_env = EnvVar {
        name: X_BEARER_TOKEN_ENV.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: x.bearer_token_secret_ref.name.clone(),
                key: x.bearer_token_secret_ref.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let replicas = if spec.schedule.suspend { 0 } else { 1 };
    let container = worker_container(
        options,
        "producer",
        vec![token_env],
        &spec.workers.env,
        ("50m", "64Mi", "256Mi"),
    );
    let mut producer = deployment(pipeline, "producer", replicas, container, Vec::new());
    // The producer keeps its monthly X usage in a ConfigMap: the only worker with a Kubernetes token.
    if let Some(pod) = producer.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        super::x_usage::producer_pod(pipeline, pod);
    }
    // Two producers would read (and pay for) every post twice; never overlap them during a rollout.
    if let Some(spec) = producer.spec.as_mut() {
        spec.strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            ..DeploymentStrategy::default()
        });
    }
    producer
}

/// The consumer: one replica streaming the raw topic into the lake.
pub(super) fn consumer(pipeline: &CilvestPipeline, options: &BuildOptions) -> Deployment {
    let container = worker_container(
        options,
        "consumer",
        Vec::new(),
        &pipeline.spec.workers.env,
        ("100m", "128Mi", "512Mi"),
    );
    deployment(pipeline, "consumer", 1, container, Vec::new())
}

pub(super) fn deployment(
    pipeline: &CilvestPipeline,
    component: &str,
    replicas: i32,
    container: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    let name = pipeline.name_any();
    let selector = BTreeMap::from([
        (PIPELINE_LABEL.to_owned(), name.clone()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
    ]);
    Deployment {
        metadata: object_meta(pipeline, &format!("{name}-{component}"), component),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: pod_template(pipeline, component, container, volumes, "Always"),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub(super) fn pod_template(
    pipeline: &CilvestPipeline,
    component: &str,
    container: Container,
    extra_volumes: Vec<Volume>,
    restart_policy: &str,
) -> PodTemplateSpec {
    let name = pipeline.name_any();
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{name}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // The root filesystem is read-only; this is the only writable place.
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("1Gi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(extra_volumes);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&name, component)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(format!("{name}-{component}")),
            automount_service_account_token: Some(false),
            restart_policy: Some(restart_policy.to_owned()),
            termination_grace_period_seconds: Some(60),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65532),
                run_as_group: Some(65532),
                fs_group: Some(65532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// A worker container running `cilvest <command>` under the restricted pod security profile. `extra_env` is the
/// spec's `workers.env`, after the operator's own variables (validation keeps their names apart).
pub(super) fn worker_container(
    options: &BuildOptions,
    command: &str,
    env: Vec<EnvVar>,
    extra_env: &[EnvVar],
    (cpu, memory, memory_limit): (&str, &str, &str),
) -> Container {
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mut env = env;
    env.push(EnvVar {
        name: "CILVEST_LOG_FORMAT".to_owned(),
        value: Some("json".to_owned()),
        ..EnvVar::default()
    });
    env.extend_from_slice(extra_env);
    Container {
        name: command.to_owned(),
        image: Some(options.worker_image.clone()),
        args: Some(vec![
            command.to_owned(),
            "--config".to_owned(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: 8080,
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/livez")),
        readiness_probe: Some(probe("/readyz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(memory.to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(memory_limit.to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".to_owned(),
                mount_path: CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}
