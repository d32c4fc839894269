//! The worker configuration: what the operator renders from a pipeline into its ConfigMap (`pipeline.json`) and
//! what `cilvest producer|consumer|daily` read. It holds names and addresses, never secrets: those reach the
//! workers as environment variables from Secret references.

use serde::{Deserialize, Serialize};

use crate::spec::{Bus, CilvestPipeline, CilvestPipelineSpec};

/// The ConfigMap key holding the worker configuration.
pub const CONFIG_KEY: &str = "pipeline.json";
/// Environment variable carrying the X bearer token (from the Secret the spec references).
pub const X_BEARER_TOKEN_ENV: &str = "CILVEST_X_BEARER_TOKEN";
/// Environment variable carrying the Elasticsearch password (from ECK's or the external Secret).
pub const ES_PASSWORD_ENV: &str = "CILVEST_ES_PASSWORD";
/// Environment variable carrying the password of the user that imports the Kibana dashboard.
pub const KIBANA_PASSWORD_ENV: &str = "CILVEST_KIBANA_PASSWORD";

/// Everything a worker needs to know about its pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    /// Name of the CilvestPipeline.
    pub pipeline: String,
    /// Namespace of the CilvestPipeline.
    pub namespace: String,
    /// Kafka `host:port` list.
    pub kafka_bootstrap: String,
    /// The raw tweets topic.
    pub raw_topic: String,
    /// Consumer group of the lake writer.
    pub consumer_group: String,
    /// The Pub/Sub topic and subscription, resolved, when the pipeline's bus is Pub/Sub (absent for Kafka).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubConfig>,
    /// Elasticsearch base URL, when the pipeline has a search target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_url: Option<String>,
    /// Elasticsearch user, when the pipeline has a search target with authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_username: Option<String>,
    /// The pipeline's spec, as stored (schema defaults applied).
    pub spec: CilvestPipelineSpec,
}

/// A pipeline's Pub/Sub names with the defaults filled in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PubSubConfig {
    pub project: String,
    pub topic: String,
    pub subscription: String,
    pub ack_deadline_seconds: i32,
}

impl WorkerConfig {
    /// Resolve names and addresses for `pipeline`. Pure: no cluster access.
    pub fn for_pipeline(pipeline: &CilvestPipeline) -> Self {
        let name = pipeline.metadata.name.clone().unwrap_or_default();
        let namespace = pipeline
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let spec = &pipeline.spec;
        let kafka_bootstrap = match (&spec.kafka.bootstrap_servers, &spec.kafka.strimzi_cluster) {
            (Some(servers), _) => servers.clone(),
            // The spec's Strimzi listener (the plain one without) on its bootstrap Service.
            (None, Some(cluster)) => format!("{cluster}-kafka-bootstrap:{}", crate::kafka_access::strimzi_port(spec)),
            (None, None) => String::new(),
        };
        let (search_url, search_username) = match &spec.targets.elasticsearch {
            Some(search) => match (&search.managed, &search.external) {
                // ECK serves HTTPS on `<name>-es-http`; the daily job writes as its own file-realm user.
                (Some(_), _) => (
                    Some(format!("https://{name}-es-http:9200")),
                    Some(managed_search_username(&name)),
                ),
                (None, Some(external)) => (Some(external.url.clone()), external.username.clone()),
                (None, None) => (None, None),
            },
            None => (None, None),
        };
        let pubsub = match (spec.bus, &spec.pubsub) {
            (Bus::Pubsub, Some(pubsub)) => Some(PubSubConfig {
                project: pubsub.project.clone(),
                topic: pubsub.topic.clone().unwrap_or_else(|| format!("cilvest-{name}-raw")),
                subscription: pubsub
                    .subscription
                    .clone()
                    .unwrap_or_else(|| format!("cilvest-{name}-lake")),
                ack_deadline_seconds: pubsub.ack_deadline_seconds,
            }),
            _ => None,
        };
        Self {
            raw_topic: raw_topic_name(&name, spec),
            consumer_group: format!("cilvest.{name}.lake"),
            pipeline: name,
            namespace,
            kafka_bootstrap,
            pubsub,
            search_url,
            search_username,
            spec: spec.clone(),
        }
    }
}

/// The daily job's Elasticsearch user on a managed search target: an ECK file-realm user the operator creates, with
/// a role limited to the pipeline's indices.
pub fn managed_search_username(pipeline: &str) -> String {
    format!("{pipeline}-daily")
}

/// The raw topic's Kafka name: the spec's, or `cilvest.<pipeline>.raw`.
pub fn raw_topic_name(pipeline: &str, spec: &CilvestPipelineSpec) -> String {
    spec.topics
        .raw
        .name
        .clone()
        .unwrap_or_else(|| format!("cilvest.{pipeline}.raw"))
}

/// Why a worker configuration file is not a [`WorkerConfig`]. The caller adds the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not valid JSON: {0}")]
    Syntax(serde_json::Error),
    #[error("{0}")]
    Invalid(serde_json::Error),
    #[error("field {path}: {source}")]
    Field { path: String, source: serde_json::Error },
    /// Unknown fields are typos, or a configuration from a newer operator than this worker: either way the worker
    /// would silently run without a setting someone meant to give it.
    #[error(
        "unknown field{} {}: not part of this worker's configuration",
        if .0.len() == 1 { "" } else { "s" },
        .0.join(", ")
    )]
    Unknown(Vec<String>),
}

impl WorkerConfig {
    /// Read `pipeline.json`, naming the field at fault: a wrong type or a missing field by its path (such as
    /// `spec.topics.raw.partitions`), and every field this version does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(ConfigError::Syntax)?;
        let mut unknown = Vec::new();
        let mut record_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignored = serde_ignored::Deserializer::new(value, &mut record_unknown);
        let config: Self = serde_path_to_error::deserialize(ignored).map_err(|err| {
            let path = err.path().to_string();
            let source = err.into_inner();
            // A missing top-level field has the root as its path; serde's message names the field.
            if path == "." {
                ConfigError::Invalid(source)
            } else {
                ConfigError::Field { path, source }
            }
        })?;
        if unknown.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Unknown(unknown))
        }
    }
}

#[cfg(test)]
mod config_file_tests {
    use super::*;

    fn full_config() -> serde_json::Value {
        let pipeline: CilvestPipeline =
            serde_saphyr::from_str(include_str!("../../examples/cilvest.yaml")).expect("example parses");
        serde_json::to_value(WorkerConfig::for_pipeline(&pipeline)).expect("config to json")
    }

    #[test]
    fn rendered_configurations_read_back() {
        let minimal: CilvestPipeline =
            serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).expect("example parses");
        let minimal = serde_json::to_value(WorkerConfig::for_pipeline(&minimal)).expect("config to json");
        for config in [full_config(), minimal] {
            let read = WorkerConfig::from_json(config.to_string().as_bytes()).expect("reads");
            assert_eq!(serde_json::to_value(read).expect("json"), config);
        }
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_field() {
        let mut wrong_type = full_config();
        wrong_type["spec"]["topics"]["raw"]["partitions"] = "three".into();
        let mut missing = full_config();
        missing.as_object_mut().expect("object").remove("rawTopic");
        let mut wrong_element = full_config();
        wrong_element["spec"]["keywords"][1]["terms"][0] = 5.into();
        for (config, field) in [
            (
                wrong_type,
                "field spec.topics.raw.partitions: invalid type: string \"three\"",
            ),
            (missing, "missing field `rawTopic`"),
            (
                wrong_element,
                "field spec.keywords[1].terms[0]: invalid type: integer `5`",
            ),
        ] {
            let err = WorkerConfig::from_json(config.to_string().as_bytes()).expect_err("rejected");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_named_all_at_once() {
        let mut config = full_config();
        config["kafkaBootstrapServers"] = "kafka:9092".into();
        config["spec"]["topics"]["raw"]["partiton"] = 6.into();
        let err = WorkerConfig::from_json(config.to_string().as_bytes()).expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "unknown fields kafkaBootstrapServers, spec.topics.raw.partiton: not part of this worker's configuration"
        );
    }

    #[test]
    fn what_is_not_json_says_so() {
        for text in ["", "{", "[]", "null", "\u{feff}{}"] {
            let err = WorkerConfig::from_json(text.as_bytes()).expect_err("rejected");
            assert!(!err.to_string().is_empty(), "{text:?}");
        }
    }
}
