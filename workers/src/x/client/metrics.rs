//! What the X source exposes on `/metrics`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What the X source exposes on `/metrics`.
#[derive(Clone, Default)]
pub struct SourceMetrics {
    requests: Family<OutcomeLabels, Counter>,
    pub(super) posts_read: Counter,
    pub(super) rate_limit_remaining: Gauge,
    pub(super) rate_limit_waits: Counter,
    pub(super) configuration_error: Gauge,
}

impl SourceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "x_requests",
            "X API search requests by outcome (ok or the failure category)",
            self.requests.clone(),
        );
        registry.register(
            "x_posts_read",
            "Posts returned by the X API; the monthly post cap X bills counts these",
            self.posts_read.clone(),
        );
        registry.register(
            "x_rate_limit_remaining",
            "Requests left in the current X rate-limit window, from x-rate-limit-remaining",
            self.rate_limit_remaining.clone(),
        );
        registry.register(
            "x_rate_limit_waits",
            "Times the producer paused until an X rate-limit window reset",
            self.rate_limit_waits.clone(),
        );
        registry.register(
            "x_configuration_error",
            "1 while X rejects the token or the query (HTTP 401, 403 or 400), else 0",
            self.configuration_error.clone(),
        );
    }

    pub(super) fn outcome(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Posts read so far (for tests and logs).
    pub fn posts_read(&self) -> u64 {
        self.posts_read.get()
    }
}
