//! Who the workers are on a Strimzi Kafka, and what each may do there: one place for the listener's port, the
//! `KafkaUser` names, the ACLs each worker needs, and the environment that hands a worker its credentials. The
//! operator renders `KafkaUser`s and Deployments from it; the workers read the environment; the tests give a real
//! Kafka exactly these ACLs.

use crate::{
    WorkerConfig,
    spec::{CilvestPipelineSpec, KafkaAuthentication},
};

/// Strimzi's plain listener port on `<cluster>-kafka-bootstrap`, used when the spec names no listener.
pub const STRIMZI_PLAIN_PORT: u16 = 9092;

/// The SASL user name (SCRAM), from the KafkaUser's name.
pub const USERNAME_ENV: &str = "CILVEST_KAFKA_USERNAME";
/// The SCRAM password, from the key `password` of the Secret Strimzi generates for the KafkaUser.
pub const PASSWORD_ENV: &str = "CILVEST_KAFKA_PASSWORD";
/// A PEM file of the CA that signed the brokers' certificates (Strimzi's cluster CA).
pub const CA_FILE_ENV: &str = "CILVEST_KAFKA_CA_FILE";
/// The client certificate (PEM) for mutual TLS.
pub const CERT_FILE_ENV: &str = "CILVEST_KAFKA_CERT_FILE";
/// The client certificate's private key (PEM) for mutual TLS.
pub const KEY_FILE_ENV: &str = "CILVEST_KAFKA_KEY_FILE";

/// The workers that talk to Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Producer, Role::Consumer];

    /// The worker's component name (`producer`, `consumer`).
    pub fn component(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

/// The `KafkaUser` of `role` in `pipeline`, which is also its Secret's name and (SCRAM) its user name:
/// `<pipeline>-kafka-producer`, `<pipeline>-kafka-consumer`.
pub fn user_name(pipeline: &str, role: Role) -> String {
    format!("{pipeline}-kafka-{}", role.component())
}

/// The principal Kafka's ACLs name for `user`: SCRAM users by name, mutual-TLS users by their certificate's
/// subject, which Strimzi's clients CA writes as `CN=<user>`.
pub fn principal(user: &str, authentication: KafkaAuthentication) -> String {
    match authentication {
        KafkaAuthentication::ScramSha512 => format!("User:{user}"),
        KafkaAuthentication::Tls => format!("User:CN={user}"),
    }
}

/// The group id of the producer's resume reader, `cilvest.<pipeline>.resume`. The reader assigns partitions and
/// never joins or commits, but librdkafka polls only with a group and looks up its coordinator, for which Kafka
/// asks `Describe` on the group.
pub fn resume_group(pipeline: &str) -> String {
    format!("cilvest.{pipeline}.resume")
}

/// The port the workers connect to on `<cluster>-kafka-bootstrap`.
pub fn strimzi_port(spec: &CilvestPipelineSpec) -> u16 {
    spec.kafka
        .listener
        .as_ref()
        .and_then(|listener| u16::try_from(listener.port).ok())
        .unwrap_or(STRIMZI_PLAIN_PORT)
}

/// A Kafka resource type an ACL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
}

impl ResourceType {
    /// As Strimzi's `KafkaUser` spells it (`acls[].resource.type`).
    pub fn strimzi(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
        }
    }
}

/// Operations allowed on one literal resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub resource: ResourceType,
    pub name: String,
    /// Kafka's operation names, as `KafkaUser` and `kafka-acls` spell them.
    pub operations: &'static [&'static str],
}

/// What `role` needs in `config`'s pipeline, and nothing more:
/// - the producer writes the raw topic (idempotently: since Kafka 3.0, `Write` on a topic implies
///   `IdempotentWrite`) and reads the topic's last records to find where to resume, naming (never joining) its
///   [`resume_group`];
/// - the consumer reads the raw topic in its group and commits its offsets there.
pub fn grants(role: Role, config: &WorkerConfig) -> Vec<Grant> {
    let topic = |operations| Grant {
        resource: ResourceType::Topic,
        name: config.raw_topic.clone(),
        operations,
    };
    let group = |name: String, operations| Grant {
        resource: ResourceType::Group,
        name,
        operations,
    };
    match role {
        Role::Producer => vec![
            topic(&["Describe", "Write", "Read"]),
            group(resume_group(&config.pipeline), &["Describe"]),
        ],
        Role::Consumer => vec![
            topic(&["Describe", "Read"]),
            group(config.consumer_group.clone(), &["Read"]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::KafkaListener;

    #[test]
    fn users_are_named_per_pipeline_and_role() {
        assert_eq!(user_name("saham", Role::Producer), "saham-kafka-producer");
        assert_eq!(user_name("saham", Role::Consumer), "saham-kafka-consumer");
        assert_eq!(
            principal("saham-kafka-consumer", KafkaAuthentication::Tls),
            "User:CN=saham-kafka-consumer"
        );
        assert_eq!(
            principal("saham-kafka-consumer", KafkaAuthentication::ScramSha512),
            "User:saham-kafka-consumer"
        );
    }

    fn minimal() -> crate::CilvestPipeline {
        let mut pipeline: crate::CilvestPipeline =
            serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).expect("example parses");
        pipeline.metadata.name = Some("saham".to_owned());
        pipeline
    }

    #[test]
    fn no_role_may_touch_another_topic_or_group() {
        let config = WorkerConfig::for_pipeline(&minimal());
        for role in Role::ALL {
            for grant in grants(role, &config) {
                match grant.resource {
                    ResourceType::Topic => assert_eq!(grant.name, "cilvest.saham.raw"),
                    ResourceType::Group => assert!(
                        ["cilvest.saham.lake", "cilvest.saham.resume"].contains(&grant.name.as_str()),
                        "{grant:?}"
                    ),
                }
                assert!(!grant.operations.contains(&"All"), "{role:?} {grant:?}");
            }
        }
        let has = |role, resource, operation| {
            grants(role, &config)
                .iter()
                .any(|g| g.resource == resource && g.operations.contains(&operation))
        };
        assert!(has(Role::Producer, ResourceType::Topic, "Write"));
        assert!(
            !has(Role::Consumer, ResourceType::Topic, "Write"),
            "the consumer never writes"
        );
        assert!(
            !has(Role::Producer, ResourceType::Group, "Read"),
            "the producer joins no group"
        );
        assert!(has(Role::Consumer, ResourceType::Group, "Read"));
    }

    #[test]
    fn the_listener_gives_the_port() {
        let mut spec = minimal().spec;
        assert_eq!(strimzi_port(&spec), 9092);
        spec.kafka.listener = Some(KafkaListener {
            port: 9093,
            tls: true,
            authentication: Some(KafkaAuthentication::ScramSha512),
        });
        assert_eq!(strimzi_port(&spec), 9093);
    }
}
