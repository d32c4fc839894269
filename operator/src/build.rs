//! Pure builders: a validated pipeline in, every child object the operator keeps in place out. No client here.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
            EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, ServiceAccount, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{
    Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
};
use serde_json::json;

use cilvest_crds::{
    Bus, CilvestPipeline, StrimziTopicVersion, WorkerConfig,
    validate::parse_duration,
    worker_config::{CONFIG_KEY, ES_PASSWORD_ENV, X_BEARER_TOKEN_ENV},
};

/// Field manager of every write, and the value of the managed-by label.
pub const MANAGER: &str = "cilvest-operator";
/// Label carrying the owning pipeline's name; orphan clean-up selects on it.
pub const PIPELINE_LABEL: &str = "cilvest.io/pipeline";
/// Annotation holding a hash of what the operator last applied, so an unchanged child is not written again.
pub const HASH_ANNOTATION: &str = "cilvest.io/applied-hash";
const CONFIG_DIR: &str = "/etc/cilvest";
const ES_CA_DIR: &str = "/etc/cilvest/es-ca";

/// What the builders need besides the pipeline.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Container image of the `cilvest` workers.
    pub worker_image: String,
}

/// Every child of one pipeline.
#[derive(Clone, Debug)]
pub struct Resources {
    pub config: ConfigMap,
    pub service_accounts: Vec<ServiceAccount>,
    pub producer: Deployment,
    pub consumer: Deployment,
    pub daily: CronJob,
    /// Present when the pipeline's bus is Kafka and it names a Strimzi cluster.
    pub raw_topic: Option<DynamicObject>,
    /// Present with a managed search target.
    pub elasticsearch: Option<DynamicObject>,
    /// Present with a managed search target that asks for Kibana.
    pub kibana: Option<DynamicObject>,
    /// The producer's X usage ConfigMap and its right to write it.
    pub x_usage: crate::x_usage::UsageChildren,
}

/// The external kinds the operator writes, by API version.
pub fn kafka_topic_resource(version: StrimziTopicVersion) -> ApiResource {
    let version = match version {
        StrimziTopicVersion::V1 => "v1",
        StrimziTopicVersion::V1beta2 => "v1beta2",
    };
    external_resource("kafka.strimzi.io", version, "KafkaTopic", "kafkatopics")
}

pub fn elasticsearch_resource() -> ApiResource {
    external_resource("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch", "elasticsearches")
}

pub fn kibana_resource() -> ApiResource {
    external_resource("kibana.k8s.elastic.co", "v1", "Kibana", "kibanas")
}

fn external_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Build every child of `pipeline`. The spec must have passed `validate()`.
pub fn build(pipeline: &CilvestPipeline, options: &BuildOptions) -> Resources {
    let name = pipeline.name_any();
    let config = WorkerConfig::for_pipeline(pipeline);
    let spec = &pipeline.spec;
    let meta = |child: &str, component: &str| object_meta(pipeline, child, component);

    let config_map = ConfigMap {
        metadata: meta(&format!("{name}-config"), "config"),
        // Serializing a plain struct of strings and numbers cannot fail.
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            serde_json::to_string_pretty(&config).unwrap_or_default(),
        )])),
        ..ConfigMap::default()
    };

    let service_accounts = ["producer", "consumer", "daily"]
        .into_iter()
        .map(|component| ServiceAccount {
            metadata: meta(&format!("{name}-{component}"), component),
            // The workers never call the Kubernetes API; they get no token at all.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        })
        .collect();

    let token_env = EnvVar {
        name: X_BEARER_TOKEN_ENV.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: spec.source.x.bearer_token_secret_ref.name.clone(),
                key: spec.source.x.bearer_token_secret_ref.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let producer_replicas = if spec.schedule.suspend { 0 } else { 1 };
    let mut producer = deployment(
        pipeline,
        "producer",
        producer_replicas,
        worker_container(
            options,
            "producer",
            vec![token_env],
            &spec.workers.env,
            ("50m", "64Mi", "256Mi"),
        ),
        Vec::new(),
    );
    // The producer keeps its monthly X usage in a ConfigMap: the only worker with a Kubernetes token.
    if let Some(pod) = producer.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        crate::x_usage::producer_pod(pipeline, pod);
    }
    // Two producers would read (and pay for) every post twice; never overlap them during a rollout.
    if let Some(spec) = producer.spec.as_mut() {
        spec.strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            ..DeploymentStrategy::default()
        });
    }
    let consumer = deployment(
        pipeline,
        "consumer",
        1,
        worker_container(
            options,
            "consumer",
            Vec::new(),
            &spec.workers.env,
            ("100m", "128Mi", "512Mi"),
        ),
        Vec::new(),
    );

    let mut daily_env = Vec::new();
    let mut daily_volumes = Vec::new();
    let mut daily_container = worker_container(
        options,
        "daily",
        Vec::new(),
        &spec.workers.env,
        ("500m", "512Mi", "2Gi"),
    );
    daily_container.ports = None;
    daily_container.liveness_probe = None;
    daily_container.readiness_probe = None;
    // The run summary goes to the termination message, where the operator reads it into status.lastRun.
    daily_container.termination_message_policy = Some("FallbackToLogsOnError".to_owned());
    if let Some(search) = &spec.targets.elasticsearch {
        let secret = match (&search.managed, &search.external) {
            (Some(_), _) => Some((format!("{name}-es-elastic-user"), "elastic".to_owned())),
            (None, Some(external)) => external
                .password_secret_ref
                .as_ref()
                .map(|r| (r.name.clone(), r.key.clone())),
            (None, None) => None,
        };
        if let Some((secret, key)) = secret {
            daily_env.push(EnvVar {
                name: ES_PASSWORD_ENV.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret,
                        key,
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
        let ca = match (&search.managed, &search.external) {
            (Some(_), _) => Some((format!("{name}-es-http-certs-public"), "ca.crt".to_owned())),
            (None, Some(external)) => external.ca_secret_ref.as_ref().map(|r| (r.name.clone(), r.key.clone())),
            (None, None) => None,
        };
        if let Some((secret, key)) = ca {
            daily_volumes.push(Volume {
                name: "es-ca".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                        key,
                        path: "ca.crt".to_owned(),
                        mode: None,
                    }]),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            daily_container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: "es-ca".to_owned(),
                    mount_path: ES_CA_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            daily_container
                .args
                .get_or_insert_with(Vec::new)
                .extend(["--search-ca".to_owned(), format!("{ES_CA_DIR}/ca.crt")]);
        }
    }
    daily_container.env.get_or_insert_with(Vec::new).extend(daily_env);
    let daily_pod = pod_template(pipeline, "daily", daily_container, daily_volumes, "Never");
    let daily = CronJob {
        metadata: meta(&format!("{name}-daily"), "daily"),
        spec: Some(CronJobSpec {
            schedule: spec.schedule.daily.clone(),
            time_zone: Some(spec.schedule.time_zone.clone()),
            suspend: Some(spec.schedule.suspend),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, "daily")),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    // A day's run takes minutes; a stuck one must not block tomorrow's (concurrencyPolicy Forbid).
                    active_deadline_seconds: Some(4 * 3600),
                    template: daily_pod,
                    ..JobSpec::default()
                }),
            },
        }),
        ..CronJob::default()
    };

    // A Pub/Sub pipeline has no Kafka topic: the workers create the Pub/Sub topic and subscription themselves, and
    // a KafkaTopic left from before a switch to Pub/Sub is deleted as an orphan.
    let strimzi_cluster = spec.kafka.strimzi_cluster.as_ref().filter(|_| spec.bus == Bus::Kafka);
    let raw_topic = strimzi_cluster.map(|cluster| {
        let raw = &spec.topics.raw;
        let retention_ms = parse_duration(&raw.retention).map_or(604_800_000, |d| d.as_millis());
        let mut topic = DynamicObject::new(
            &format!("{name}-raw"),
            &kafka_topic_resource(spec.kafka.topic_api_version),
        );
        topic.metadata = meta(&format!("{name}-raw"), "raw-topic");
        topic
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("strimzi.io/cluster".to_owned(), cluster.clone());
        topic.data = json!({"spec": {
            "topicName": config.raw_topic,
            "partitions": raw.partitions,
            "replicas": raw.replicas,
            "config": {"retention.ms": retention_ms, "cleanup.policy": "delete"},
        }});
        topic
    });

    let managed = spec.targets.elasticsearch.as_ref().and_then(|s| s.managed.as_ref());
    let elasticsearch = managed.map(|managed| {
        let mut es = DynamicObject::new(&name, &elasticsearch_resource());
        es.metadata = meta(&name, "elasticsearch");
        es.data = json!({"spec": {
            "version": managed.version,
            "nodeSets": [{
                "name": "default",
                "count": managed.nodes,
                // GKE nodes do not raise vm.max_map_count; this avoids needing a privileged init container.
                "config": {"node.store.allow_mmap": false},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "elasticsearch-data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": managed.storage}}},
                }],
            }],
        }});
        es
    });
    let kibana = managed.filter(|m| m.kibana).map(|managed| {
        let mut kibana = DynamicObject::new(&name, &kibana_resource());
        kibana.metadata = meta(&name, "kibana");
        kibana.data = json!({"spec": {"version": managed.version, "count": 1, "elasticsearchRef": {"name": name}}});
        kibana
    });

    Resources {
        config: config_map,
        service_accounts,
        producer,
        consumer,
        daily,
        raw_topic,
        elasticsearch,
        kibana,
        x_usage: crate::x_usage::build(pipeline),
    }
}

/// Name of the Job that deletes a Dataproc pipeline's clusters when the pipeline is deleted.
pub fn dataproc_cleanup_name(pipeline: &str) -> String {
    format!("{pipeline}-dataproc-cleanup")
}

/// The Job that runs `cilvest dataproc-cleanup` as the daily job's ServiceAccount (which holds the Google
/// identity), for a pipeline with a Dataproc engine. It has no owner reference and mounts nothing the pipeline
/// owns, so that it still runs while the pipeline and its children are being deleted.
pub fn dataproc_cleanup_job(
    pipeline: &CilvestPipeline,
    options: &BuildOptions,
) -> Option<k8s_openapi::api::batch::v1::Job> {
    let dataproc = pipeline.spec.transform.dataproc.as_ref()?;
    let name = pipeline.name_any();
    let mut container = worker_container(
        options,
        "dataproc-cleanup",
        Vec::new(),
        &pipeline.spec.workers.env,
        ("50m", "64Mi", "256Mi"),
    );
    container.args = Some(
        [
            "dataproc-cleanup",
            "--project",
            &dataproc.project,
            "--region",
            &dataproc.region,
            "--namespace",
            &pipeline.namespace().unwrap_or_default(),
            "--pipeline",
            &name,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    container.ports = None;
    container.liveness_probe = None;
    container.readiness_probe = None;
    container.volume_mounts = None;
    let mut pod = pod_template(pipeline, "daily", container, Vec::new(), "Never");
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
    }
    let mut metadata = object_meta(pipeline, &dataproc_cleanup_name(&name), "dataproc-cleanup");
    metadata.owner_references = None;
    Some(k8s_openapi::api::batch::v1::Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(1800),
            ttl_seconds_after_finished: Some(300),
            template: pod,
            ..JobSpec::default()
        }),
        ..Default::default()
    })
}

/// Labels every child carries; the last two make orphans findable.
pub fn labels(pipeline: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "cilvest".to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned()),
        (PIPELINE_LABEL.to_owned(), pipeline.to_owned()),
    ])
}

/// The label selector matching every child of `pipeline`.
pub fn children_selector(pipeline: &str) -> String {
    format!("app.kubernetes.io/managed-by={MANAGER},{PIPELINE_LABEL}={pipeline}")
}

/// Metadata of a child: name, namespace, labels and the controller owner reference to the pipeline, so that
/// deleting the pipeline garbage-collects it.
pub fn object_meta(pipeline: &CilvestPipeline, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: pipeline.namespace(),
        labels: Some(labels(&pipeline.name_any(), component)),
        owner_references: owner_reference(pipeline).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(pipeline: &CilvestPipeline) -> Option<OwnerReference> {
    // `render` works on files without a uid; the API server adds nothing there, so leave the reference out.
    pipeline.meta().uid.as_ref()?;
    pipeline.controller_owner_ref(&())
}

fn deployment(
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

fn pod_template(
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
fn worker_container(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(yaml: &str) -> CilvestPipeline {
        let mut pipeline: CilvestPipeline = serde_saphyr::from_str(yaml).expect("example");
        pipeline.metadata.namespace = Some("markets".to_owned());
        pipeline.metadata.uid = Some("0b0e7e57-0000-4000-8000-000000000001".to_owned());
        pipeline
    }

    fn options() -> BuildOptions {
        BuildOptions {
            worker_image: "cilvest:test".to_owned(),
        }
    }

    #[test]
    fn full_example_builds_every_child_owned_and_labelled() {
        let resources = build(&pipeline(include_str!("../../examples/cilvest.yaml")), &options());
        let topic = resources.raw_topic.expect("strimzi topic");
        assert_eq!(
            topic.types.as_ref().map(|t| t.api_version.as_str()),
            Some("kafka.strimzi.io/v1")
        );
        assert_eq!(
            topic.labels().get("strimzi.io/cluster").map(String::as_str),
            Some("cilvest")
        );
        assert_eq!(topic.data["spec"]["topicName"], "cilvest.tweets.raw");
        assert_eq!(topic.data["spec"]["partitions"], 3);
        assert_eq!(topic.data["spec"]["config"]["retention.ms"], 604_800_000u64);
        assert!(resources.elasticsearch.is_some() && resources.kibana.is_some());
        assert_eq!(
            resources.kibana.expect("kibana").data["spec"]["elasticsearchRef"]["name"],
            "cilvest"
        );

        for meta in [
            &resources.producer.metadata,
            &resources.consumer.metadata,
            &resources.daily.metadata,
        ] {
            let owner = meta.owner_references.as_ref().and_then(|o| o.first()).expect("owner");
            assert_eq!((owner.kind.as_str(), owner.controller), ("CilvestPipeline", Some(true)));
            assert_eq!(
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(PIPELINE_LABEL))
                    .map(String::as_str),
                Some("cilvest")
            );
        }
        let cron = resources.daily.spec.expect("cron spec");
        assert_eq!(cron.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(cron.time_zone.as_deref(), Some("Asia/Jakarta"));
        assert_eq!(cron.schedule, "30 1 * * *");
    }

    #[test]
    fn every_pod_runs_under_the_restricted_profile_and_secrets_stay_references() {
        let resources = build(&pipeline(include_str!("../../examples/cilvest.yaml")), &options());
        let pods = [
            resources.producer.spec.map(|s| s.template),
            resources.consumer.spec.map(|s| s.template),
            resources
                .daily
                .spec
                .and_then(|s| s.job_template.spec)
                .map(|s| s.template),
        ];
        for pod in pods.into_iter().map(|p| p.and_then(|t| t.spec).expect("pod spec")) {
            let pod_sc = pod.security_context.expect("pod security context");
            assert_eq!(pod_sc.run_as_non_root, Some(true));
            for container in pod.containers {
                let sc = container.security_context.expect("container security context");
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
                assert_eq!(sc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
                for env in container.env.unwrap_or_default() {
                    assert!(
                        // Literal values are names, never secrets: the log format and the usage ConfigMap.
                        env.value.is_none()
                            || env.name == "CILVEST_LOG_FORMAT"
                            || env.name == cilvest_crds::usage::USAGE_CONFIGMAP_ENV,
                        "{} has a literal value",
                        env.name
                    );
                }
            }
        }
        let config = resources.config.data.expect("config data");
        let text = config.get(CONFIG_KEY).expect("pipeline.json");
        let parsed: WorkerConfig = serde_json::from_str(text).expect("worker config parses");
        assert_eq!(parsed.raw_topic, "cilvest.tweets.raw");
        assert_eq!(parsed.search_url.as_deref(), Some("https://cilvest-es-http:9200"));
    }

    #[test]
    fn external_kafka_and_no_search_build_no_topic_or_eck_objects() {
        let mut p = pipeline(include_str!("../../examples/minimal.yaml"));
        p.spec.kafka.strimzi_cluster = None;
        p.spec.kafka.bootstrap_servers = Some("kafka.example:9092".to_owned());
        let resources = build(&p, &options());
        assert!(resources.raw_topic.is_none() && resources.elasticsearch.is_none() && resources.kibana.is_none());
    }

    #[test]
    fn pubsub_bus_builds_no_kafka_topic_and_tells_the_workers_its_names() {
        let resources = build(&pipeline(include_str!("../../examples/pubsub.yaml")), &options());
        assert!(resources.raw_topic.is_none(), "no KafkaTopic for a Pub/Sub pipeline");
        let config = resources.config.data.expect("config data");
        let parsed: WorkerConfig =
            serde_json::from_str(config.get(CONFIG_KEY).expect("pipeline.json")).expect("parses");
        let pubsub = parsed.pubsub.expect("pub/sub settings");
        assert_eq!(
            (
                pubsub.project.as_str(),
                pubsub.topic.as_str(),
                pubsub.subscription.as_str()
            ),
            ("cilvest-demo", "cilvest-cilvest-raw", "cilvest-cilvest-lake")
        );
        assert_eq!(pubsub.ack_deadline_seconds, 60);

        // Switching an existing Strimzi pipeline to Pub/Sub drops the topic from the desired children, so the
        // apply pass deletes the live KafkaTopic as an orphan.
        let mut kafka = pipeline(include_str!("../../examples/cilvest.yaml"));
        assert!(build(&kafka, &options()).raw_topic.is_some());
        kafka.spec.bus = Bus::Pubsub;
        kafka.spec.pubsub = Some(cilvest_crds::PubSub {
            project: "cilvest-demo".to_owned(),
            topic: Some("tweets".to_owned()),
            subscription: None,
            ack_deadline_seconds: 30,
        });
        let switched = build(&kafka, &options());
        assert!(switched.raw_topic.is_none());
        let config = switched.config.data.expect("config data");
        let parsed: WorkerConfig =
            serde_json::from_str(config.get(CONFIG_KEY).expect("pipeline.json")).expect("parses");
        assert_eq!(parsed.pubsub.map(|p| p.topic), Some("tweets".to_owned()));
    }

    #[test]
    fn workers_env_reaches_every_worker_container() {
        let mut p = pipeline(include_str!("../../examples/minimal.yaml"));
        p.spec.workers.env = vec![EnvVar {
            name: "HTTPS_PROXY".to_owned(),
            value: Some("http://proxy.internal:3128".to_owned()),
            ..EnvVar::default()
        }];
        let resources = build(&p, &options());
        let containers = [
            resources.producer.spec.and_then(|s| s.template.spec),
            resources.consumer.spec.and_then(|s| s.template.spec),
            resources
                .daily
                .spec
                .and_then(|s| s.job_template.spec)
                .and_then(|s| s.template.spec),
        ];
        for pod in containers.into_iter().map(|p| p.expect("pod spec")) {
            let env = pod.containers[0].env.clone().unwrap_or_default();
            assert!(
                env.iter()
                    .any(|e| e.name == "HTTPS_PROXY" && e.value.as_deref() == Some("http://proxy.internal:3128")),
                "{env:?}"
            );
        }
    }

    #[test]
    fn suspend_stops_the_producer_and_the_cron_job() {
        let mut p = pipeline(include_str!("../../examples/minimal.yaml"));
        p.spec.schedule.suspend = true;
        let resources = build(&p, &options());
        assert_eq!(resources.producer.spec.and_then(|s| s.replicas), Some(0));
        assert_eq!(resources.daily.spec.and_then(|s| s.suspend), Some(true));
    }
}
