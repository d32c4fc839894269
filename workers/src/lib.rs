//! The `cilvest` workers: producer, consumer and daily job, with the clients they share.
//!
//! ```text
//!  X API ──producer──▶ Kafka raw topic ──consumer──▶ lake raw/ ──daily──▶ lake curated/ ─▶ BigQuery + marts
//!                      (or Pub/Sub)
//!                                                                                       └─▶ Elasticsearch
//! ```
//! One module per outside system: `lake` (GCS or a local directory), `warehouse` (BigQuery), `search`
//! (Elasticsearch), `bus` (Kafka), `pubsub` (Google Cloud Pub/Sub).
#![forbid(unsafe_code)]

pub mod budget;
pub mod bus;
pub mod cli;
pub mod consumer;
pub mod counts;
pub mod daily;
pub mod dataproc;
pub mod demo;
pub mod lake;
pub mod producer;
pub mod pubsub;
pub mod search;
pub mod source;
pub mod telemetry;
pub mod transform;
pub mod tweet;
pub mod usage;
pub mod warehouse;
pub mod x_cost;
