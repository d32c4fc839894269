//! The `cilvest` workers: producer, consumer and daily job, with the clients they share.
//!
//! ```text
//!  X API ──producer──▶ Kafka raw topic ──consumer──▶ lake raw/ ──daily──▶ lake curated/ ─▶ BigQuery + marts
//!                      (or Pub/Sub)
//!                                                                                       └─▶ Elasticsearch
//! ```
//! Modules by role; dependencies point down this list, never up:
//! - `cli`, `jobs`: one module per command (`producer`, `consumer`, `daily`, `demo`, `dataproc_cleanup`,
//!   `kibana_setup`), each a `run()` over the layers below.
//! - `x`: the X API (recent search client, counts, read budget, monthly usage and its cost).
//! - `lake` (GCS or a local directory), `bus` (Kafka, Pub/Sub), `google` (auth, BigQuery, Dataproc), `search`
//!   (Elasticsearch, and the Kibana dashboard): the clients of outside systems.
//! - `transform`, `tweet`: the domain (what a tweet is, cleaning, matching, a day's counts); `retry`, the one
//!   backoff; `telemetry` (the `cilvest-telemetry` crate).
#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod google;
pub mod jobs;
pub mod lake;
pub mod retry;
pub mod search;
pub use cilvest_telemetry as telemetry;
pub mod transform;
pub mod tweet;
pub mod x;
