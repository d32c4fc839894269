//! `cilvest-operator`: keeps each CilvestPipeline's children in place and reports their health.
//!
//! ```text
//!  watch CilvestPipeline + owned children
//!        │
//!        ▼
//!  validate (pure, cilvest-crds) ─▶ build (pure) ─▶ apply (server-side apply, skip unchanged)
//!        │                                             │
//!        │                          delete labelled orphans
//!        ▼                                             ▼
//!  Degraded condition                        status (Ready / Progressing / Degraded)
//! ```
#![forbid(unsafe_code)]

pub mod apply;
pub mod build;
pub mod cli;
pub mod controller;
pub mod cost;
pub mod drift;
pub mod health;
pub mod leader;
pub mod lint;
pub mod meta;
pub mod owned;
pub mod status;
pub mod telemetry;
pub mod x_usage;
