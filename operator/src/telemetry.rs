//! The operator's metrics and its `/livez`, `/readyz` and `/metrics` endpoint.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

type Labels = Vec<(String, String)>;

/// Reconcile metrics. Labels are low-cardinality: error category and phase, never a pipeline name.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<Labels, Counter>,
    pub duration: Histogram,
    phases: Family<Labels, Gauge>,
    phase_of: Arc<Mutex<HashMap<String, String>>>,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cilvest_operator");
        let reconciles = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let phases = Family::<Labels, Gauge>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciles by category", errors.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        registry.register("pipelines", "Pipelines by phase", phases.clone());
        Self {
            reconciles,
            errors,
            duration,
            phases,
            phase_of: Arc::default(),
            registry: Arc::new(registry),
            ready: Arc::default(),
        }
    }

    /// Remember the phase of `pipeline` (`namespace/name`) and recount the pipelines per phase.
    pub fn record_phase(&self, pipeline: &str, phase: &str) {
        let mut phase_of = self.phase_of.lock().unwrap_or_else(|p| p.into_inner());
        phase_of.insert(pipeline.to_owned(), phase.to_owned());
        self.recount(&phase_of);
    }

    /// Forget a deleted pipeline (`namespace/name`).
    pub fn forget(&self, pipeline: &str) {
        let mut phase_of = self.phase_of.lock().unwrap_or_else(|p| p.into_inner());
        if phase_of.remove(pipeline).is_some() {
            self.recount(&phase_of);
        }
    }

    fn recount(&self, phase_of: &HashMap<String, String>) {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for phase in phase_of.values() {
            *counts.entry(phase.as_str()).or_default() += 1;
        }
        self.phases.clear();
        for (phase, count) in counts {
            self.phases
                .get_or_create(&vec![("phase".to_owned(), phase.to_owned())])
                .set(count);
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Serve the endpoints on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let app = Router::new()
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await
    }
}

async fn readyz(State(metrics): State<Metrics>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_are_counted_per_phase_by_namespace_and_name_and_forgotten_when_deleted() {
        let metrics = Metrics::new();
        metrics.record_phase("a/cilvest", "Ready");
        metrics.record_phase("b/cilvest", "Ready");
        metrics.record_phase("b/other", "Degraded");
        assert!(
            metrics
                .encode()
                .contains(r#"cilvest_operator_pipelines{phase="Ready"} 2"#),
            "{}",
            metrics.encode()
        );
        metrics.forget("a/cilvest");
        metrics.record_phase("b/other", "Ready");
        let text = metrics.encode();
        assert!(
            text.contains(r#"cilvest_operator_pipelines{phase="Ready"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"phase="Degraded""#), "{text}");
    }
}
