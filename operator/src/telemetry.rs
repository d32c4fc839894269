//! The operator's metrics, served by the one health and metrics endpoint of `cilvest-telemetry`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use cilvest_telemetry::Telemetry;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};

type Labels = Vec<(String, String)>;

/// Reconcile metrics. Labels are low-cardinality: error category and phase, never a pipeline name.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<Labels, Counter>,
    pub duration: Histogram,
    phases: Family<Labels, Gauge>,
    phase_of: Arc<Mutex<HashMap<String, String>>>,
    telemetry: Telemetry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let telemetry = Telemetry::new("cilvest_operator");
        let reconciles = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let phases = Family::<Labels, Gauge>::default();
        telemetry.register(|registry| {
            registry.register("reconciles", "Reconciles run", reconciles.clone());
            registry.register("reconcile_errors", "Failed reconciles by category", errors.clone());
            registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
            registry.register("pipelines", "Pipelines by phase", phases.clone());
        });
        Self {
            reconciles,
            errors,
            duration,
            phases,
            phase_of: Arc::default(),
            telemetry,
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
        self.telemetry.set_ready(ready);
    }

    /// Serve `/livez`, `/readyz` and `/metrics` on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        self.telemetry.serve(addr).await
    }
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
                .telemetry
                .encode()
                .contains(r#"cilvest_operator_pipelines{phase="Ready"} 2"#),
            "{}",
            metrics.telemetry.encode()
        );
        metrics.forget("a/cilvest");
        metrics.record_phase("b/other", "Ready");
        let text = metrics.telemetry.encode();
        assert!(
            text.contains(r#"cilvest_operator_pipelines{phase="Ready"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"phase="Degraded""#), "{text}");
    }
}
