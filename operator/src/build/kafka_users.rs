//! Kafka identities, when the pipeline's Strimzi listener asks for authentication: one Strimzi `KafkaUser` per
//! worker whose ACLs allow only what [`cilvest_crds::kafka_access::grants`] lists, and the wiring of each worker's
//! pod to the Secrets Strimzi makes (the user's, and the cluster CA's on a TLS listener). Secrets are referenced,
//! never read or copied by the operator.
//!
//! ```text
//!  KafkaUser <p>-kafka-producer ──Strimzi User Operator──▶ Secret <p>-kafka-producer ──env/volume──▶ producer pod
//!  Secret <cluster>-cluster-ca-cert (Strimzi) ──────────────────────────────────────────volume──▶ both workers
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount},
};
use kube::{ResourceExt, api::DynamicObject};
use serde_json::json;

use cilvest_crds::{
    Bus, CilvestPipeline, KafkaAuthentication, WorkerConfig,
    kafka_access::{self, Role},
};

use crate::meta::{kafka_user_resource, object_meta};

const CA_DIR: &str = "/var/run/cilvest/kafka-ca";
const USER_DIR: &str = "/var/run/cilvest/kafka-user";

/// The Strimzi cluster and listener, when the pipeline's workers talk to one.
fn strimzi(pipeline: &CilvestPipeline) -> Option<(&str, &cilvest_crds::KafkaListener)> {
    let kafka = &pipeline.spec.kafka;
    if pipeline.spec.bus != Bus::Kafka {
        return None;
    }
    Some((kafka.strimzi_cluster.as_deref()?, kafka.listener.as_ref()?))
}

/// One `KafkaUser` per worker when the listener authenticates; none otherwise (a user left from before is then
/// deleted as an orphan, and Strimzi deletes its Secret and ACLs).
pub(super) fn kafka_users(pipeline: &CilvestPipeline) -> Vec<DynamicObject> {
    let Some((cluster, listener)) = strimzi(pipeline) else {
        return Vec::new();
    };
    let Some(authentication) = listener.authentication else {
        return Vec::new();
    };
    let config = WorkerConfig::for_pipeline(pipeline);
    let resource = kafka_user_resource(pipeline.spec.kafka.topic_api_version);
    Role::ALL
        .into_iter()
        .map(|role| {
            let name = kafka_access::user_name(&pipeline.name_any(), role);
            let mut user = DynamicObject::new(&name, &resource);
            user.metadata = object_meta(pipeline, &name, &format!("{}-kafka-user", role.component()));
            user.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert("strimzi.io/cluster".to_owned(), cluster.to_owned());
            let acls: Vec<_> = kafka_access::grants(role, &config)
                .into_iter()
                .map(|grant| {
                    json!({
                        "resource": {"type": grant.resource.strimzi(), "name": grant.name, "patternType": "literal"},
                        "operations": grant.operations,
                        "host": "*",
                    })
                })
                .collect();
            let kind = match authentication {
                KafkaAuthentication::ScramSha512 => "scram-sha-512",
                KafkaAuthentication::Tls => "tls",
            };
            user.data = json!({"spec": {
                "authentication": {"type": kind},
                "authorization": {"type": "simple", "acls": acls},
            }});
            user
        })
        .collect()
}

/// Give `role`'s pod what it needs to reach the listener: the cluster CA on TLS, and its user's credentials.
pub(super) fn wire(pipeline: &CilvestPipeline, role: Role, deployment: &mut Deployment) {
    let Some((cluster, listener)) = strimzi(pipeline) else {
        return;
    };
    let Some(pod) = deployment.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let user = kafka_access::user_name(&pipeline.name_any(), role);
    let mut env = Vec::new();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let value = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    if listener.tls {
        volumes.push(secret_volume(
            "kafka-ca",
            &format!("{cluster}-cluster-ca-cert"),
            &["ca.crt"],
        ));
        mounts.push(mount("kafka-ca", CA_DIR));
        env.push(value(kafka_access::CA_FILE_ENV, format!("{CA_DIR}/ca.crt")));
    }
    match listener.authentication {
        Some(KafkaAuthentication::ScramSha512) => {
            env.push(value(kafka_access::USERNAME_ENV, user.clone()));
            env.push(EnvVar {
                name: kafka_access::PASSWORD_ENV.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: user,
                        key: "password".to_owned(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
        Some(KafkaAuthentication::Tls) => {
            volumes.push(secret_volume("kafka-user", &user, &["user.crt", "user.key"]));
            mounts.push(mount("kafka-user", USER_DIR));
            env.push(value(kafka_access::CERT_FILE_ENV, format!("{USER_DIR}/user.crt")));
            env.push(value(kafka_access::KEY_FILE_ENV, format!("{USER_DIR}/user.key")));
        }
        None => {}
    }
    pod.volumes.get_or_insert_with(Vec::new).extend(volumes);
    for container in &mut pod.containers {
        // Before the spec's `workers.env`, like the operator's other variables.
        container
            .env
            .get_or_insert_with(Vec::new)
            .splice(0..0, env.iter().cloned());
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(mounts.iter().cloned());
    }
}

fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: (*key).to_owned(),
                        path: (*key).to_owned(),
                        mode: None,
                    })
                    .collect(),
            ),
            // Readable by the pod's group (fsGroup 65532) only.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use cilvest_crds::{KafkaListener, Pipeline};
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;
    use crate::build::{BuildOptions, build, full_example};

    fn with_listener(tls: bool, authentication: Option<KafkaAuthentication>) -> CilvestPipeline {
        let mut pipeline = full_example("markets");
        pipeline.metadata.uid = Some("0b0e7e57-0000-4000-8000-000000000002".to_owned());
        pipeline.spec.kafka.listener = Some(KafkaListener {
            port: 9093,
            tls,
            authentication,
        });
        pipeline
    }

    fn pod(deployment: &Deployment) -> &PodSpec {
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn secret_volume_of<'d>(deployment: &'d Deployment, name: &str) -> &'d SecretVolumeSource {
        pod(deployment)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .and_then(|v| v.secret.as_ref())
            .unwrap_or_else(|| panic!("no Secret volume {name}"))
    }

    fn env(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
        pod(deployment).containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    }

    fn built(pipeline: &CilvestPipeline) -> crate::build::Resources {
        let parsed = Pipeline::new(&pipeline.spec).expect("valid");
        build(
            pipeline,
            &parsed,
            &BuildOptions {
                worker_image: "cilvest:test".to_owned(),
            },
        )
    }

    #[test]
    fn scram_users_get_their_own_topic_and_group_only() {
        let pipeline = with_listener(true, Some(KafkaAuthentication::ScramSha512));
        let name = pipeline.name_any();
        let resources = built(&pipeline);
        let users = &resources.kafka_users;
        assert_eq!(
            users.iter().map(|u| u.name_any()).collect::<Vec<_>>(),
            [format!("{name}-kafka-producer"), format!("{name}-kafka-consumer")]
        );
        let config = WorkerConfig::for_pipeline(&pipeline);
        for user in users {
            assert_eq!(
                user.labels().get("strimzi.io/cluster").map(String::as_str),
                Some("cilvest")
            );
            assert_eq!(user.data["spec"]["authentication"]["type"], "scram-sha-512");
            assert_eq!(user.data["spec"]["authorization"]["type"], "simple");
            assert!(user.owner_references().iter().any(|o| o.kind == "CilvestPipeline"));
            for acl in user.data["spec"]["authorization"]["acls"].as_array().expect("acls") {
                assert_eq!(acl["resource"]["patternType"], "literal", "{acl}");
                let resource = &acl["resource"]["name"];
                let resume = kafka_access::resume_group(&name);
                assert!(
                    [&config.raw_topic, &config.consumer_group, &resume]
                        .contains(&&resource.as_str().unwrap_or_default().to_owned()),
                    "{acl}"
                );
            }
        }
        let ops = |user: &DynamicObject| user.data["spec"]["authorization"]["acls"].to_string();
        assert!(ops(&users[0]).contains("Write"));
        assert!(!ops(&users[1]).contains("Write"));

        let producer = env(&resources.producer);
        assert_eq!(
            producer[kafka_access::USERNAME_ENV].value.as_deref(),
            Some(format!("{name}-kafka-producer").as_str())
        );
        let password = producer[kafka_access::PASSWORD_ENV]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("password from the user's Secret");
        assert_eq!(
            (password.name.as_str(), password.key.as_str()),
            (format!("{name}-kafka-producer").as_str(), "password")
        );
        assert_eq!(
            producer[kafka_access::CA_FILE_ENV].value.as_deref(),
            Some("/var/run/cilvest/kafka-ca/ca.crt")
        );
        let ca = secret_volume_of(&resources.producer, "kafka-ca");
        assert_eq!(ca.secret_name.as_deref(), Some("cilvest-cluster-ca-cert"));
        let consumer = env(&resources.consumer);
        assert_eq!(
            consumer[kafka_access::USERNAME_ENV].value.as_deref(),
            Some(format!("{name}-kafka-consumer").as_str())
        );
        // The workers reach the listener's port.
        assert_eq!(config.kafka_bootstrap, "cilvest-kafka-bootstrap:9093");
    }

    #[test]
    fn mutual_tls_mounts_the_users_certificate_and_no_password() {
        let pipeline = with_listener(true, Some(KafkaAuthentication::Tls));
        let resources = built(&pipeline);
        assert!(
            resources
                .kafka_users
                .iter()
                .all(|u| u.data["spec"]["authentication"]["type"] == "tls")
        );
        let consumer = env(&resources.consumer);
        assert!(!consumer.contains_key(kafka_access::PASSWORD_ENV));
        assert!(!consumer.contains_key(kafka_access::USERNAME_ENV));
        assert_eq!(
            consumer[kafka_access::KEY_FILE_ENV].value.as_deref(),
            Some("/var/run/cilvest/kafka-user/user.key")
        );
        let user = secret_volume_of(&resources.consumer, "kafka-user");
        assert_eq!(
            user.secret_name.as_deref(),
            Some(format!("{}-kafka-consumer", pipeline.name_any()).as_str())
        );
        let mounts = pod(&resources.consumer).containers[0]
            .volume_mounts
            .clone()
            .unwrap_or_default();
        assert!(
            mounts
                .iter()
                .all(|m| m.mount_path == "/tmp" || m.read_only == Some(true))
        );
    }

    #[test]
    fn no_authentication_means_no_users_and_tls_alone_only_the_ca() {
        let tls_only = built(&with_listener(true, None));
        assert!(tls_only.kafka_users.is_empty());
        let producer = env(&tls_only.producer);
        assert!(producer.contains_key(kafka_access::CA_FILE_ENV));
        assert!(!producer.contains_key(kafka_access::USERNAME_ENV));

        let plain = built(&full_example("markets"));
        assert!(plain.kafka_users.is_empty());
        assert!(env(&plain.producer).keys().all(|k| !k.starts_with("CILVEST_KAFKA_")));

        let mut pubsub = with_listener(true, Some(KafkaAuthentication::ScramSha512));
        pubsub.spec.bus = Bus::Pubsub;
        pubsub.spec.pubsub = Some(serde_json::from_value(json!({"project": "cilvest-data"})).expect("pubsub"));
        let pubsub = built(&pubsub);
        assert!(pubsub.kafka_users.is_empty(), "no Kafka on the Pub/Sub bus");
        assert!(env(&pubsub.consumer).keys().all(|k| !k.starts_with("CILVEST_KAFKA_")));
    }
}
