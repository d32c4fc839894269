//! What the producer adds around its X source to keep the bill visible, bounded and avoidable: the monthly
//! budget with its stored usage record (`budget`, `usage`), the pace between polls, and the counts job (`counts`).
//!
//! ```text
//!  start ─▶ usage record from the ConfigMap (retried: a wrong count would break the budget) ─▶ XSource
//!  loop  ─▶ counts due? ─▶ counts/recent per counts keyword ─▶ lake counts/
//!        ─▶ poll (search within the budget) ─▶ wait: pollInterval | 4 x pollInterval | until the month turns
//! ```

use std::time::Duration;

use chrono::Utc;
use cilvest_crds::{CilvestPipelineSpec, Pipeline, WorkerConfig, usage::USAGE_CONFIGMAP_ENV};

use crate::{
    lake,
    telemetry::Telemetry,
    x::budget::{Budget, BudgetMetrics, Pace, SLOW_FACTOR},
    x::client::{RetryPolicy, XSource},
    x::counts::{CountsError, CountsJob},
    x::usage::UsageStore,
};

/// Longest single sleep while the budget is spent, so that the month's turn is noticed promptly after a clock
/// jump and the process stays responsive to SIGTERM in the caller's `select!`.
const MAX_STOPPED_WAIT: Duration = Duration::from_secs(3600);

/// Producer flags of the cost controls.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CostArgs {
    /// ConfigMap (in the pipeline's namespace) that keeps the month's X usage across restarts; the operator
    /// names it. Without it the usage is kept in memory only.
    #[arg(long, env = USAGE_CONFIGMAP_ENV)]
    pub x_usage_configmap: Option<String>,
    /// Lake for counted volumes instead of the pipeline's `targets.lake.uri` (`file:///dir` for local runs).
    #[arg(long, env = "CILVEST_LAKE")]
    pub lake: Option<String>,
    /// GCS emulator base URL for `gs://` lakes (no OAuth).
    #[arg(long, env = lake::GCS_ENDPOINT_ENV)]
    pub gcs_endpoint: Option<String>,
    /// Override the pipeline's `source.x.countsInterval`.
    #[arg(long, value_parser = cilvest_crds::values::duration_arg)]
    pub counts_interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("invalid worker configuration: {0}")]
    Spec(#[from] cilvest_crds::InvalidSpec),
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    #[error(transparent)]
    Counts(#[from] CountsError),
    #[error("failed to read the X usage ConfigMap at start: {0}")]
    Usage(#[from] crate::x::usage::UsageError),
}

/// The producer's cost controls.
pub struct CostControl {
    spec: CilvestPipelineSpec,
    namespace: String,
    usage_configmap: Option<String>,
    counts: Option<CountsJob>,
    metrics: BudgetMetrics,
}

impl CostControl {
    /// From the worker configuration; registers the budget metrics on `telemetry`.
    pub fn new(config: &WorkerConfig, args: &CostArgs, telemetry: &Telemetry) -> Result<Self, CostError> {
        let spec = config.spec.clone();
        let metrics = BudgetMetrics::default();
        telemetry.register(|registry| metrics.register(registry));
        let counts = if spec.keywords.iter().any(|k| k.mode.counts()) {
            let pipeline = Pipeline::parse(&spec)?;
            let interval = args.counts_interval.unwrap_or(pipeline.counts_interval);
            let time_zone = pipeline.time_zone;
            let lake_uri = args.lake.as_deref().unwrap_or(&spec.targets.lake.uri);
            let lake = lake::open(lake_uri, args.gcs_endpoint.as_deref().filter(|e| !e.is_empty()))?;
            CountsJob::new(&spec, interval, time_zone, lake)?
        } else {
            None
        };
        Ok(Self {
            spec,
            namespace: config.namespace.clone(),
            usage_configmap: args.x_usage_configmap.clone().filter(|n| !n.is_empty()),
            counts,
            metrics,
        })
    }

    /// Give `x` the month's budget, continuing the stored record. Reading it is retried until the API server
    /// answers: starting the month from zero would let the producer spend the budget twice.
    pub async fn attach(&self, x: &mut XSource, retry: RetryPolicy) {
        let store = match &self.usage_configmap {
            None => UsageStore::Memory,
            Some(name) => self.connect(name, retry).await,
        };
        let mut failures = 0u32;
        let stored = loop {
            match store.load().await {
                Ok(stored) => break stored,
                Err(error) => {
                    failures += 1;
                    let wait = retry.backoff(failures);
                    tracing::warn!(error = %error, retry_in = ?wait, "failed to read the X usage record");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let budget = Budget::new(&self.spec.source.x, stored, Utc::now());
        tracing::info!(
            month = %budget.usage().month,
            posts_read = budget.usage().posts_read,
            budget_posts = ?budget.limit(),
            "X read budget"
        );
        x.set_budget(budget, store, self.metrics.clone());
    }

    async fn connect(&self, name: &str, retry: RetryPolicy) -> UsageStore {
        let mut failures = 0u32;
        loop {
            match UsageStore::config_map(&self.namespace, name).await {
                Ok(store) => return store,
                Err(error) => {
                    failures += 1;
                    let wait = retry.backoff(failures);
                    tracing::warn!(error = %error, retry_in = ?wait, "failed to connect for the X usage record");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Fetch the counted volumes when they are due. A failed lake write is logged and tried again next time.
    pub async fn run_counts(&mut self, x: &mut XSource) -> Result<(), CostError> {
        let Some(counts) = &mut self.counts else {
            return Ok(());
        };
        match counts.run_if_due(x).await {
            Ok(()) => Ok(()),
            Err(CountsError::Write { path, source }) => {
                tracing::warn!(path = %path, error = %source, "failed to store counted volumes; retrying next time");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// How long to wait before the next poll at the budget's pace.
    pub fn wait(&self, x: &mut XSource, poll_interval: Duration) -> Duration {
        match x.pace() {
            Pace::Normal => poll_interval,
            Pace::Slow => poll_interval.saturating_mul(SLOW_FACTOR),
            Pace::Stopped { until } => {
                let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tracing::info!(until = %until, "the monthly X read budget is spent: no search until the month turns");
                left.clamp(poll_interval.min(MAX_STOPPED_WAIT), MAX_STOPPED_WAIT)
            }
        }
    }
}
