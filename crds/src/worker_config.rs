//! The worker configuration: what the operator renders from a pipeline into its ConfigMap (`pipeline.json`) and
//! what `cilvest producer|consumer|daily` read. It holds names and addresses, never secrets: those reach the
//! workers as environment variables from Secret references.

use serde::{Deserialize, Serialize};

use crate::spec::{CilvestPipeline, CilvestPipelineSpec};

/// The ConfigMap key holding the worker configuration.
pub const CONFIG_KEY: &str = "pipeline.json";
/// Environment variable carrying the X bearer token (from the Secret the spec references).
pub const X_BEARER_TOKEN_ENV: &str = "CILVEST_X_BEARER_TOKEN";
/// Environment variable carrying the Elasticsearch password (from ECK's or the external Secret).
pub const ES_PASSWORD_ENV: &str = "CILVEST_ES_PASSWORD";

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
    /// Elasticsearch base URL, when the pipeline has a search target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_url: Option<String>,
    /// Elasticsearch user, when the pipeline has a search target with authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_username: Option<String>,
    /// The pipeline's spec, as stored (schema defaults applied).
    pub spec: CilvestPipelineSpec,
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
            // Strimzi's plain listener on its bootstrap Service.
            (None, Some(cluster)) => format!("{cluster}-kafka-bootstrap:9092"),
            (None, None) => String::new(),
        };
        let (search_url, search_username) = match &spec.targets.elasticsearch {
            Some(search) => match (&search.managed, &search.external) {
                // ECK serves HTTPS on `<name>-es-http` with the built-in `elastic` user.
                (Some(_), _) => (Some(format!("https://{name}-es-http:9200")), Some("elastic".to_owned())),
                (None, Some(external)) => (Some(external.url.clone()), external.username.clone()),
                (None, None) => (None, None),
            },
            None => (None, None),
        };
        Self {
            raw_topic: raw_topic_name(&name, spec),
            consumer_group: format!("cilvest.{name}.lake"),
            pipeline: name,
            namespace,
            kafka_bootstrap,
            search_url,
            search_username,
            spec: spec.clone(),
        }
    }
}

/// The raw topic's Kafka name: the spec's, or `cilvest.<pipeline>.raw`.
pub fn raw_topic_name(pipeline: &str, spec: &CilvestPipelineSpec) -> String {
    spec.topics
        .raw
        .name
        .clone()
        .unwrap_or_else(|| format!("cilvest.{pipeline}.raw"))
}
