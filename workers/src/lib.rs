//! The `cilvest` workers: producer, consumer and daily job, with the clients they share.
//!
//! ```text
//!  X API ──producer──▶ Kafka raw topic ──consumer──▶ lake raw/ ──daily──▶ lake curated/ ─▶ BigQuery + marts
//!                                                                                       └─▶ Elasticsearch
//! ```
//! One module per outside system: `lake` (GCS or a local directory), `warehouse` (BigQuery), `search`
//! (Elasticsearch).
#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod consumer;
pub mod daily;
pub mod dataproc;
pub mod demo;
pub mod lake;
pub mod producer;
pub mod search;
pub mod source;
pub mod telemetry;
pub mod transform;
pub mod tweet;
pub mod warehouse;
