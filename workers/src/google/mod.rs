//! Google Cloud clients: one token provider (`auth`), BigQuery (`bigquery`) and Dataproc (`dataproc`). Pub/Sub's
//! client lives with the other bus in `crate::bus` and takes its token from `auth`.

pub mod auth;
pub mod bigquery;
pub mod dataproc;
