//! The operator's metrics, served by the one health and metrics endpoint of `cilvest-telemetry`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use cilvest_telemetry::Telemetry;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};

type Labels = Vec<(String, String)>;

/// Reconcile metrics, and one series per pipeline for what alerts need (like kube-state-metrics: labelled
/// `namespace` and `pipeline`, dropped when the pipeline is deleted). The reconcile counters' labels stay
/// low-cardinality: error category and phase.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<Labels, Counter>,
    pub duration: Histogram,
    /// Children read from the API server for a drift check (their owned fields' digest differed).
    pub drift_fetches: Counter,
    phases: Family<Labels, Gauge>,
    degraded: Family<Labels, Gauge>,
    daily_failed: Family<Labels, Gauge>,
    daily_success: Family<Labels, Gauge>,
    tracked: Arc<Mutex<HashMap<String, Tracked>>>,
    telemetry: Telemetry,
}

/// What the per-pipeline series of one pipeline say, as last recorded.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tracked {
    phase: String,
    health: Health,
}

/// A pipeline's health as its alerts see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// The reason of `Degraded=True`, if it holds.
    pub degraded: Option<String>,
    /// Whether the last daily run failed; `None` before any run.
    pub daily_failed: Option<bool>,
    /// When the daily CronJob last completed a Job (its `status.lastSuccessfulTime`), in Unix seconds; `None` while
    /// none has, or while the schedule is suspended (a paused pipeline misses no run).
    pub daily_succeeded_at: Option<i64>,
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
        let drift_fetches = Counter::default();
        let phases = Family::<Labels, Gauge>::default();
        let degraded = Family::<Labels, Gauge>::default();
        let daily_failed = Family::<Labels, Gauge>::default();
        let daily_success = Family::<Labels, Gauge>::default();
        telemetry.register(|registry| {
            registry.register("reconciles", "Reconciles run", reconciles.clone());
            registry.register("reconcile_errors", "Failed reconciles by category", errors.clone());
            registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
            registry.register(
                "drift_fetches",
                "Children read from the API server because the digest of their owned fields differed",
                drift_fetches.clone(),
            );
            registry.register("pipelines", "Pipelines by phase", phases.clone());
            registry.register(
                "pipeline_degraded",
                "1 while a pipeline is Degraded, labelled with the condition's reason",
                degraded.clone(),
            );
            registry.register(
                "daily_last_run_failed",
                "1 when a pipeline's last daily run failed, 0 when it succeeded",
                daily_failed.clone(),
            );
            registry.register(
                "daily_last_success_timestamp_seconds",
                "When a pipeline's daily CronJob last completed a run (absent while its schedule is suspended)",
                daily_success.clone(),
            );
        });
        Self {
            reconciles,
            errors,
            duration,
            drift_fetches,
            phases,
            degraded,
            daily_failed,
            daily_success,
            tracked: Arc::default(),
            telemetry,
        }
    }

    /// Remember the phase of `pipeline` (`namespace/name`) and recount the pipelines per phase.
    pub fn record_phase(&self, pipeline: &str, phase: &str) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        tracked.entry(pipeline.to_owned()).or_default().phase = phase.to_owned();
        self.recount(&tracked);
    }

    /// Set the per-pipeline series of `pipeline` (`namespace/name`) to `health`.
    pub fn record_health(&self, pipeline: &str, health: Health) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tracked.entry(pipeline.to_owned()).or_default();
        if entry.health == health {
            return;
        }
        self.remove_series(pipeline, &entry.health);
        let labels = pipeline_labels(pipeline);
        if let Some(reason) = &health.degraded {
            let mut with_reason = labels.clone();
            with_reason.push(("reason".to_owned(), reason.clone()));
            self.degraded.get_or_create(&with_reason).set(1);
        }
        if let Some(failed) = health.daily_failed {
            self.daily_failed.get_or_create(&labels).set(i64::from(failed));
        }
        if let Some(at) = health.daily_succeeded_at {
            self.daily_success.get_or_create(&labels).set(at);
        }
        entry.health = health;
    }

    /// Forget a deleted pipeline (`namespace/name`).
    pub fn forget(&self, pipeline: &str) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gone) = tracked.remove(pipeline) {
            self.remove_series(pipeline, &gone.health);
            self.recount(&tracked);
        }
    }

    fn remove_series(&self, pipeline: &str, health: &Health) {
        let labels = pipeline_labels(pipeline);
        if let Some(reason) = &health.degraded {
            let mut with_reason = labels.clone();
            with_reason.push(("reason".to_owned(), reason.clone()));
            self.degraded.remove(&with_reason);
        }
        self.daily_failed.remove(&labels);
        self.daily_success.remove(&labels);
    }

    fn recount(&self, tracked: &HashMap<String, Tracked>) {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for phase in tracked.values().map(|t| t.phase.as_str()).filter(|p| !p.is_empty()) {
            *counts.entry(phase).or_default() += 1;
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

/// `namespace` and `pipeline` labels from `namespace/name`.
fn pipeline_labels(pipeline: &str) -> Labels {
    let (namespace, name) = pipeline.split_once('/').unwrap_or(("", pipeline));
    vec![
        ("namespace".to_owned(), namespace.to_owned()),
        ("pipeline".to_owned(), name.to_owned()),
    ]
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

    #[test]
    fn per_pipeline_series_follow_the_health_and_go_with_the_pipeline() {
        let metrics = Metrics::new();
        let failed = Health {
            degraded: Some("DailyRunFailed".to_owned()),
            daily_failed: Some(true),
            daily_succeeded_at: Some(1_764_800_000),
        };
        metrics.record_health("jkt/cilvest", failed);
        let text = metrics.telemetry.encode();
        for line in [
            r#"cilvest_operator_pipeline_degraded{namespace="jkt",pipeline="cilvest",reason="DailyRunFailed"} 1"#,
            r#"cilvest_operator_daily_last_run_failed{namespace="jkt",pipeline="cilvest"} 1"#,
            r#"cilvest_operator_daily_last_success_timestamp_seconds{namespace="jkt",pipeline="cilvest"} 1764800000"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.record_health(
            "jkt/cilvest",
            Health {
                degraded: None,
                daily_failed: Some(false),
                daily_succeeded_at: None,
            },
        );
        let text = metrics.telemetry.encode();
        assert!(!text.contains("reason=\"DailyRunFailed\""), "{text}");
        assert!(
            text.contains(r#"cilvest_operator_daily_last_run_failed{namespace="jkt",pipeline="cilvest"} 0"#),
            "{text}"
        );
        assert!(!text.contains("daily_last_success_timestamp_seconds{"), "{text}");
        metrics.forget("jkt/cilvest");
        assert!(!metrics.telemetry.encode().contains("pipeline=\"cilvest\""));
    }
}
