//! Pure builders: a validated pipeline in, every child object the operator keeps in place out. No client here.
//! One module per child; object metadata comes from [`crate::meta`].

mod daily;
mod kafka_users;
pub mod kibana;
mod network;
pub mod search;
mod topic;
mod workers;
pub mod x_usage;

use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::{CronJob, Job},
    core::v1::ConfigMap,
    core::v1::ServiceAccount,
    networking::v1::NetworkPolicy,
};
use kube::api::DynamicObject;

use cilvest_crds::{CilvestPipeline, Pipeline};

pub use daily::{dataproc_cleanup_job, dataproc_cleanup_name};

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
    /// The producer's and the consumer's `KafkaUser`s, when the Strimzi listener authenticates.
    pub kafka_users: Vec<DynamicObject>,
    /// Present with a managed search target.
    pub elasticsearch: Option<DynamicObject>,
    /// Present with a managed search target that asks for Kibana.
    pub kibana: Option<DynamicObject>,
    /// The import of the pipeline's Kibana dashboard, with Kibana.
    pub kibana_setup: Option<Job>,
    /// The producer's X usage ConfigMap and its right to write it.
    pub x_usage: x_usage::UsageChildren,
    /// Deny by default, then each worker's ports (none when `spec.networkPolicies.enabled` is false).
    pub network_policies: Vec<NetworkPolicy>,
}

/// Build every child of `pipeline`, whose spec `parsed` is (the operator reads the object's name, namespace and
/// uid; every value of the spec that needs parsing comes from `parsed`).
pub fn build(pipeline: &CilvestPipeline, parsed: &Pipeline, options: &BuildOptions) -> Resources {
    let mut producer = workers::producer(pipeline, options);
    kafka_users::wire(pipeline, cilvest_crds::kafka_access::Role::Producer, &mut producer);
    let mut consumer = workers::consumer(pipeline, options);
    kafka_users::wire(pipeline, cilvest_crds::kafka_access::Role::Consumer, &mut consumer);
    Resources {
        config: workers::config_map(pipeline),
        service_accounts: workers::service_accounts(pipeline),
        producer,
        consumer,
        daily: daily::cron_job(pipeline, options),
        raw_topic: topic::raw_topic(pipeline, parsed),
        kafka_users: kafka_users::kafka_users(pipeline),
        elasticsearch: search::elasticsearch(pipeline),
        kibana: search::kibana(pipeline),
        kibana_setup: kibana::setup_job(pipeline, options),
        x_usage: x_usage::children(pipeline),
        network_policies: network::network_policies(pipeline, parsed),
    }
}

/// `examples/cilvest.yaml` (managed Elasticsearch and Kibana) in `namespace`, for the builders' tests.
#[cfg(test)]
fn full_example(namespace: &str) -> CilvestPipeline {
    let mut pipeline: CilvestPipeline =
        serde_saphyr::from_str(include_str!("../../../examples/cilvest.yaml")).expect("example");
    pipeline.metadata.namespace = Some(namespace.to_owned());
    pipeline
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::EnvVar;
    use kube::ResourceExt;

    use cilvest_crds::{Bus, WorkerConfig, worker_config::CONFIG_KEY};

    use super::*;
    use crate::meta::PIPELINE_LABEL;

    fn pipeline(yaml: &str) -> CilvestPipeline {
        let mut pipeline: CilvestPipeline = serde_saphyr::from_str(yaml).expect("example");
        pipeline.metadata.namespace = Some("markets".to_owned());
        pipeline.metadata.uid = Some("0b0e7e57-0000-4000-8000-000000000001".to_owned());
        pipeline
    }

    fn built(pipeline: &CilvestPipeline) -> Resources {
        let parsed = Pipeline::new(&pipeline.spec).expect("a valid example");
        build(pipeline, &parsed, &options())
    }

    fn options() -> BuildOptions {
        BuildOptions {
            worker_image: "cilvest:test".to_owned(),
        }
    }

    #[test]
    fn full_example_builds_every_child_owned_and_labelled() {
        let resources = built(&pipeline(include_str!("../../../examples/cilvest.yaml")));
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
        let resources = built(&pipeline(include_str!("../../../examples/cilvest.yaml")));
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
        let mut p = pipeline(include_str!("../../../examples/minimal.yaml"));
        p.spec.kafka.strimzi_cluster = None;
        p.spec.kafka.bootstrap_servers = Some("kafka.example:9092".to_owned());
        let resources = built(&p);
        assert!(resources.raw_topic.is_none() && resources.elasticsearch.is_none() && resources.kibana.is_none());
    }

    #[test]
    fn network_policies_deny_by_default_and_open_each_workers_ports() {
        let resources = built(&pipeline(include_str!("../../../examples/cilvest.yaml")));
        let policies: BTreeMap<String, serde_json::Value> = resources
            .network_policies
            .iter()
            .map(|p| (p.name_any(), serde_json::to_value(p).expect("json")))
            .collect();
        assert_eq!(
            policies.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "cilvest-consumer",
                "cilvest-daily",
                "cilvest-default-deny",
                "cilvest-kibana-setup",
                "cilvest-producer"
            ]
        );
        let deny = &policies["cilvest-default-deny"]["spec"];
        assert_eq!(
            deny["podSelector"]["matchLabels"],
            serde_json::json!({PIPELINE_LABEL: "cilvest"})
        );
        assert_eq!(deny["egress"], serde_json::json!([]));
        assert_eq!(deny["ingress"], serde_json::json!([]));
        let ports = |name: &str, direction: &str| -> Vec<i64> {
            policies[name]["spec"][direction]
                .as_array()
                .expect("rules")
                .iter()
                .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|port| port["port"].as_i64())
                .collect()
        };
        assert_eq!(ports("cilvest-producer", "egress"), [53, 53, 443, 6443, 9092]);
        assert_eq!(ports("cilvest-consumer", "egress"), [53, 53, 443, 6443, 9092]);
        assert_eq!(ports("cilvest-daily", "egress"), [53, 53, 443, 6443, 9200]);
        assert_eq!(ports("cilvest-producer", "ingress"), [8080]);
        assert!(ports("cilvest-daily", "ingress").is_empty());
        // The search port only towards the ECK cluster's own pods.
        let search = &policies["cilvest-daily"]["spec"]["egress"][2]["to"][0]["podSelector"]["matchLabels"];
        assert_eq!(search["elasticsearch.k8s.elastic.co/cluster-name"], "cilvest");
        // The dashboard import reaches only its Kibana's pods, on Kibana's port.
        assert_eq!(ports("cilvest-kibana-setup", "egress"), [53, 53, 5601]);
        assert!(ports("cilvest-kibana-setup", "ingress").is_empty());
        let kibana = &policies["cilvest-kibana-setup"]["spec"]["egress"][1]["to"][0]["podSelector"]["matchLabels"];
        assert_eq!(kibana["kibana.k8s.elastic.co/name"], "cilvest");

        let pubsub = built(&pipeline(include_str!("../../../examples/pubsub.yaml")));
        let producer = pubsub
            .network_policies
            .iter()
            .find(|p| p.name_any().ends_with("-producer"))
            .expect("producer policy");
        let egress = serde_json::to_string(&producer.spec).expect("json");
        assert!(!egress.contains("9092"), "no Kafka port on the Pub/Sub bus: {egress}");

        let mut off = pipeline(include_str!("../../../examples/minimal.yaml"));
        off.spec.network_policies.enabled = false;
        assert!(built(&off).network_policies.is_empty());
    }

    #[test]
    fn workload_identity_in_the_spec_annotates_only_the_named_workers_service_accounts() {
        let mut p = pipeline(include_str!("../../../examples/minimal.yaml"));
        p.spec.workers.google_service_accounts.daily =
            Some("cilvest-daily@cilvest-prod.iam.gserviceaccount.com".into());
        let resources = built(&p);
        let annotation = |component: &str| {
            let account = resources
                .service_accounts
                .iter()
                .find(|a| a.metadata.name.as_deref() == Some(&format!("minimal-{component}")))
                .expect("service account");
            account
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(workers::WORKLOAD_IDENTITY_ANNOTATION).cloned())
        };
        assert_eq!(
            annotation("daily").as_deref(),
            Some("cilvest-daily@cilvest-prod.iam.gserviceaccount.com")
        );
        assert_eq!(annotation("producer"), None);
        assert_eq!(annotation("consumer"), None);
    }

    #[test]
    fn pubsub_bus_builds_no_kafka_topic_and_tells_the_workers_its_names() {
        let resources = built(&pipeline(include_str!("../../../examples/pubsub.yaml")));
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
        let mut kafka = pipeline(include_str!("../../../examples/cilvest.yaml"));
        assert!(built(&kafka).raw_topic.is_some());
        kafka.spec.bus = Bus::Pubsub;
        kafka.spec.pubsub = Some(cilvest_crds::PubSub {
            project: "cilvest-demo".to_owned(),
            topic: Some("tweets".to_owned()),
            subscription: None,
            ack_deadline_seconds: 30,
        });
        let switched = built(&kafka);
        assert!(switched.raw_topic.is_none());
        let config = switched.config.data.expect("config data");
        let parsed: WorkerConfig =
            serde_json::from_str(config.get(CONFIG_KEY).expect("pipeline.json")).expect("parses");
        assert_eq!(parsed.pubsub.map(|p| p.topic), Some("tweets".to_owned()));
    }

    #[test]
    fn workers_env_reaches_every_worker_container() {
        let mut p = pipeline(include_str!("../../../examples/minimal.yaml"));
        p.spec.workers.env = vec![EnvVar {
            name: "HTTPS_PROXY".to_owned(),
            value: Some("http://proxy.internal:3128".to_owned()),
            ..EnvVar::default()
        }];
        let resources = built(&p);
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
        let mut p = pipeline(include_str!("../../../examples/minimal.yaml"));
        p.spec.schedule.suspend = true;
        let resources = built(&p);
        assert_eq!(resources.producer.spec.and_then(|s| s.replicas), Some(0));
        assert_eq!(resources.daily.spec.and_then(|s| s.suspend), Some(true));
    }
}
