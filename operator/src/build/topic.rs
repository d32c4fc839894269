//! The raw topic as a Strimzi `KafkaTopic`, when the pipeline's bus is Kafka on a Strimzi cluster. A Pub/Sub
//! pipeline has none: the workers create the Pub/Sub topic and subscription, and a KafkaTopic left from before a
//! switch to Pub/Sub is deleted as an orphan.

use std::collections::BTreeMap;

use kube::{ResourceExt, api::DynamicObject};
use serde_json::json;

use cilvest_crds::{Bus, CilvestPipeline, Pipeline, worker_config::raw_topic_name};

use crate::meta::{kafka_topic_resource, object_meta};

pub(super) fn raw_topic(pipeline: &CilvestPipeline, parsed: &Pipeline) -> Option<DynamicObject> {
    let spec = &pipeline.spec;
    let cluster = spec.kafka.strimzi_cluster.as_ref().filter(|_| spec.bus == Bus::Kafka)?;
    let name = format!("{}-raw", pipeline.name_any());
    let raw = &spec.topics.raw;
    let mut topic = DynamicObject::new(&name, &kafka_topic_resource(spec.kafka.topic_api_version));
    topic.metadata = object_meta(pipeline, &name, "raw-topic");
    topic
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("strimzi.io/cluster".to_owned(), cluster.clone());
    topic.data = json!({"spec": {
        "topicName": raw_topic_name(&pipeline.name_any(), spec),
        "partitions": raw.partitions,
        "replicas": raw.replicas,
        "config": {"retention.ms": parsed.raw_retention.as_millis(), "cleanup.policy": "delete"},
    }});
    Some(topic)
}
