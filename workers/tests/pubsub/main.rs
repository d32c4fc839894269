//! `spec.bus: pubsub` against the real Pub/Sub emulator (and the GCS emulator for the producer's checkpoint):
//! the producer publishes every tweet the fake X API serves with its id as an attribute and resumes from its
//! checkpoint without reading a tweet twice; the consumer, SIGKILLed again and again, gets every tweet into the
//! lake (at least once) and the daily transform keeps each exactly once. Some kills are aimed through a proxy that
//! holds the consumer's acknowledgements back ([`AckGate`](consumer::AckGate)), so that a kill after a write and
//! before its acknowledgement happens on every run, however fast the machine.
//!
//! Needs `scripts/testenv up pubsub gcs` and `eval "$(scripts/testenv env)"`.

mod consumer;
mod producer;
#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;

use cilvest_workers::bus::pubsub::{Client, Names};
use serde_json::{Value, json};

use support::{service_env, unique};

const PROJECT: &str = "cilvest-test";
const CILVEST_QUERY: &str =
    r##"(saham OR #saham OR reksadana OR "reksa dana" OR #reksadana OR sukuk OR #sukuk) lang:id -is:retweet"##;
/// The shortest ack deadline Pub/Sub allows: how long a killed consumer's messages wait before coming again.
const ACK_DEADLINE: i32 = 10;

/// Both tests share two cores and the emulator; one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client() -> Client {
    Client::emulator(&service_env("PUBSUB_EMULATOR_HOST", "pubsub")).expect("pub/sub client")
}

fn names(prefix: &str) -> Names {
    Names {
        project: PROJECT.to_owned(),
        topic: unique(&format!("{prefix}-topic")),
        subscription: unique(&format!("{prefix}-sub")),
    }
}

fn spec_json(lake: &str) -> Value {
    json!({
        "keywords": [
            {"name": "saham", "terms": ["saham", "#saham"]},
            {"name": "reksadana", "terms": ["reksadana", "reksa dana", "#reksadana"]},
            {"name": "sukuk", "terms": ["sukuk", "#sukuk"]}
        ],
        "language": "id",
        "dropRetweets": true,
        "source": {"x": {"pollInterval": "60s", "backfill": "1h"}},
        "bus": "pubsub",
        "pubsub": {"project": PROJECT},
        "targets": {
            "lake": {"uri": lake},
            "bigquery": {"project": "cilvest-test", "dataset": "cilvest"}
        }
    })
}

/// A worker configuration for a Pub/Sub pipeline, written to a fresh temporary directory.
fn write_config(pipeline: &str, names: &Names, lake: &str) -> PathBuf {
    let config = json!({
        "pipeline": pipeline,
        "namespace": "default",
        "kafkaBootstrap": "unused:9092",
        "rawTopic": "unused",
        "consumerGroup": "unused",
        "pubsub": {
            "project": names.project,
            "topic": names.topic,
            "subscription": names.subscription,
            "ackDeadlineSeconds": ACK_DEADLINE,
        },
        "spec": spec_json(lake),
    });
    let dir = std::env::temp_dir().join(unique("cilvest-pubsub-config"));
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config json")).expect("write config");
    path
}
