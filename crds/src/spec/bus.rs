//! The bus between producer and consumer: Kafka (Strimzi or external) and its raw topic, or Google Cloud Pub/Sub.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::rules::{DURATION_PATTERN, duration_within};

/// The bus between producer and consumer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Bus {
    #[default]
    Kafka,
    Pubsub,
}

/// Google Cloud Pub/Sub as the bus. The producer and the consumer create the topic and the subscription when
/// they are missing (or create them beforehand, e.g. with Config Connector, and grant only publish and consume).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PubSub {
    /// Google Cloud project ID of the topic and the subscription (6-30 lowercase letters, digits or `-`, starting
    /// with a letter; not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Topic ID: 3-255 letters, digits or `- . _ ~ + %`, starting with a letter, not with `goog`. Defaults to
    /// `cilvest-<pipeline>-raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"))]
    #[x_kube(validation = Rule::new("!self.lowerAscii().startsWith('goog')").message("Pub/Sub names may not start with goog"))]
    pub topic: Option<String>,
    /// Subscription ID the consumer pulls from, as for `topic`. Defaults to `cilvest-<pipeline>-lake`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"))]
    #[x_kube(validation = Rule::new("!self.lowerAscii().startsWith('goog')").message("Pub/Sub names may not start with goog"))]
    pub subscription: Option<String>,
    /// Acknowledgement deadline of the subscription in seconds, 10-600. The consumer extends it while a batch is
    /// open, so it only bounds how soon a crashed consumer's messages are delivered again.
    #[serde(default = "default_ack_deadline_seconds")]
    #[schemars(range(min = 10, max = 600))]
    pub ack_deadline_seconds: i32,
}

/// Which Kafka cluster to use: a Strimzi-managed cluster in this namespace, or external bootstrap servers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.strimziCluster) != has(self.bootstrapServers)").message("set exactly one of kafka.strimziCluster and kafka.bootstrapServers"))]
#[x_kube(validation = Rule::new("!has(self.listener) || has(self.strimziCluster)").message("kafka.listener applies to a Strimzi cluster: set kafka.strimziCluster").field_path(".listener"))]
pub struct Kafka {
    /// Name of a Strimzi `Kafka` cluster in this namespace. The operator then creates `KafkaTopic`s labelled
    /// `strimzi.io/cluster` and the workers connect to `<cluster>-kafka-bootstrap` on the `listener`'s port
    /// (9092, Strimzi's plain listener, without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub strimzi_cluster: Option<String>,
    /// Comma-separated `host:port` list of an external Kafka, such as `kafka-0.example:9092,kafka-1.example:9092`.
    /// Topics must then exist already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[^\s,]+:[0-9]{1,5}(,[^\s,]+:[0-9]{1,5})*$"),
        length(min = 1, max = 1024)
    )]
    pub bootstrap_servers: Option<String>,
    /// The Strimzi listener of `strimziCluster` the workers connect to, and how they authenticate on it. Without
    /// one: the plain listener on 9092, no TLS, no authentication (development clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<KafkaListener>,
    /// The API version of the Strimzi `KafkaTopic` and `KafkaUser` the operator writes: `v1` (Strimzi 0.49 and
    /// later, required from 1.0) or `v1beta2` for older installs.
    #[serde(default)]
    pub topic_api_version: StrimziTopicVersion,
}

/// One listener of a Strimzi `Kafka` (its `spec.kafka.listeners[]`), as the workers see it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication != 'tls' || self.tls").message("authentication tls (mutual TLS) needs a TLS listener: set tls: true").field_path(".authentication"))]
pub struct KafkaListener {
    /// The listener's `port` on `<cluster>-kafka-bootstrap`, 1-65535 (Strimzi's examples: 9092 plain, 9093 TLS).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The listener's `tls`: the workers then verify the brokers against the cluster CA certificate that Strimzi
    /// keeps in the Secret `<cluster>-cluster-ca-cert`.
    #[serde(default)]
    pub tls: bool,
    /// The listener's `authentication.type`, `scram-sha-512` or `tls`. The operator then creates one `KafkaUser`
    /// per worker (`<pipeline>-kafka-producer`, `<pipeline>-kafka-consumer`) whose ACLs allow only the pipeline's
    /// topic and consumer group, and each worker uses the Secret Strimzi's User Operator generates for its user.
    /// Without it the workers connect anonymously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<KafkaAuthentication>,
}

/// The listener's `authentication.type`: `scram-sha-512` or `tls` (mutual TLS). The operator then creates one
/// `KafkaUser` per worker (`<pipeline>-kafka-producer`, `<pipeline>-kafka-consumer`) whose ACLs allow only the
/// pipeline's topic and groups, and each worker uses the Secret Strimzi's User Operator makes for its user.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaAuthentication {
    /// SASL SCRAM-SHA-512 with the password in the user's Secret (key `password`).
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// Mutual TLS with the certificate and key in the user's Secret (keys `user.crt`, `user.key`).
    #[serde(rename = "tls")]
    Tls,
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            strimzi_cluster: Some("cilvest".to_owned()),
            bootstrap_servers: None,
            listener: None,
            topic_api_version: StrimziTopicVersion::default(),
        }
    }
}

/// Strimzi `KafkaTopic` API versions the operator can write.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StrimziTopicVersion {
    #[default]
    V1,
    V1beta2,
}

/// The Kafka topics of a pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Topics {
    /// The topic that carries raw tweets from the producer to the consumer.
    #[serde(default)]
    pub raw: Topic,
}

/// One Kafka topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.partitions) || self.partitions >= oldSelf.partitions").message("partitions can only be increased: Kafka cannot remove partitions").field_path(".partitions"))]
pub struct Topic {
    /// Kafka topic name: 1-249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`. Defaults to `cilvest.<pipeline>.raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 249))]
    #[x_kube(validation = Rule::new("!(self in ['.', '..'])").message("a Kafka topic may not be named . or .."))]
    pub name: Option<String>,
    /// Number of partitions, 1-1000; the consumer Deployment runs at most this many useful replicas. Can only grow.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    /// Replication factor, 1-10.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    /// How long Kafka keeps records, such as `7d`; at least 1m. The lake is the durable copy; Kafka only needs to
    /// cover outages.
    #[serde(default = "default_retention")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(MINUTE, None, "retention must be at least 1m"))]
    pub retention: String,
}

impl Default for Topic {
    fn default() -> Self {
        Self {
            name: None,
            partitions: default_partitions(),
            replicas: default_replicas(),
            retention: default_retention(),
        }
    }
}
