//! The operator's tests against the real API server and controller manager, in one test binary (one link, one
//! compile of the shared helpers; each area is a module). Needs `scripts/testenv up tools k8s` and
//! `eval "$(scripts/testenv env)"`.
//!
//! Two areas that change cluster-wide CRDs are test binaries of their own, because cargo runs test binaries one
//! after another and the tests here run side by side: `tests/chart/` (the chart's CRD install and upgrade) and
//! `tests/missing_crds.rs` (removes the Strimzi CRD).

#[path = "../common/mod.rs"]
mod common;

mod apiserver;
mod cost;
mod crd;
mod drift;
mod faults;
mod health;
mod monitoring;
mod network;
mod reconcile;
mod security;
mod verdicts;
mod x_usage;
