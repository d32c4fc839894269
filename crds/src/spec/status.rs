//! What the operator reports: conditions, children, the last daily run and the X usage.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed; written only through the status subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CilvestPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary phase: Pending, Progressing, Ready, Degraded or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The keyword names, comma-separated, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
    /// Ready, Progressing and Degraded conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Health of each child, copied in because Argo CD does not look at children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildStatus>,
    /// The most recent daily run: of the days the newest daily Job processed, the first that failed, else the
    /// newest day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DailyRun>,
    /// The latest run of each of the newest days processed (at most 14), newest day first: a day processed again
    /// (catch-up, late data, a backfill) replaces its entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<DailyRun>,
    /// What the producer read from X this month, and what that costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_usage: Option<XUsage>,
    /// The rest of the monthly spend: what Google bills for the pipeline as declared, estimated by the operator's
    /// price table (`cilvest-operator cost -f` prints the whole estimate and cheaper profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_cost: Option<GoogleCost>,
}

/// The operator's monthly estimate of the Google part of a pipeline's bill.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCost {
    /// Estimated US dollars a month, such as `96.89`.
    #[serde(rename = "estimatedMonthlyUSD")]
    pub estimated_monthly_usd: String,
    /// What the estimate assumes: volume, where the pods run, the price table's version.
    pub basis: String,
}

/// The X API usage of one calendar month (UTC), as the producer counted it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct XUsage {
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Posts returned by recent search: what X bills per read.
    #[serde(default)]
    pub posts_read: i64,
    /// Recent search requests made.
    #[serde(default)]
    pub requests: i64,
    /// Counts requests made: what X bills per request.
    #[serde(default)]
    pub count_requests: i64,
    /// Estimated spend this month in US dollars at the spec's prices, such as `12.35`.
    #[serde(default, rename = "estimatedSpendUSD")]
    pub estimated_spend_usd: String,
    /// The monthly read budget in posts, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_posts: Option<i64>,
}

/// Health of one child object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChildStatus {
    /// Kind of the child, such as `KafkaTopic` or `Deployment`.
    pub kind: String,
    /// Name of the child.
    pub name: String,
    /// Whether the child reports itself ready.
    pub ready: bool,
    /// Why it is not ready, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Summary of one daily run, taken from the daily Job's termination message.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DailyRun {
    /// The local day that was processed, `YYYY-MM-DD`.
    pub date: String,
    /// `Succeeded` or `Failed`.
    pub result: String,
    /// Tweets read from the lake for that day.
    #[serde(default)]
    pub tweets_in: i64,
    /// Tweets kept after language, retweet and duplicate filtering.
    #[serde(default)]
    pub tweets_kept: i64,
    /// Lines that were not valid tweet envelopes.
    #[serde(default)]
    pub rejected: i64,
    /// Run time in seconds.
    #[serde(default)]
    pub duration_seconds: f64,
    /// Error message of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
