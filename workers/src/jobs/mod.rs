//! One module per `cilvest` command. Each is a `run()` over the clients and the domain; no job imports another,
//! except the demo, which runs the consumer and the daily step in one process.

pub mod consumer;
pub mod daily;
pub mod dataproc_cleanup;
pub mod demo;
pub mod kibana_setup;
pub mod producer;
