//! The X usage path from the producer to the pipeline's status: its objects are built in `build::x_usage`, and
//! read back here into `status.xUsage` and the `XBudget` condition (pure, no client).
//!
//! ```text
//!  operator ─applies─▶ ConfigMap <pipeline>-x-usage (metadata only)  +  Role get,patch on it  +  RoleBinding
//!  producer (token mounted) ─server-side applies data as cilvest-producer─▶ month, postsRead, requests, ...
//!  operator reconcile ─reads it─▶ status.xUsage + condition XBudget (WithinBudget | BudgetNearlySpent | BudgetSpent)
//! ```
//! The producer is the only worker with a Kubernetes token, and it can read and patch exactly that one object.

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use cilvest_crds::{
    CilvestPipelineSpec, XUsage,
    usage::UsageRecord,
    values::{budget_posts, parse_usd},
};

/// The condition type.
pub const CONDITION: &str = "XBudget";
/// Share of the budget from which the producer slows down (the same rule as the producer's).
const SLOW_FROM: f64 = 0.8;

/// `status.xUsage` and the `XBudget` condition from the usage ConfigMap's `data` (none yet: no usage, no
/// condition). The condition's transition time moves only when its status or reason changes.
pub fn status(
    spec: &CilvestPipelineSpec,
    data: Option<&BTreeMap<String, String>>,
    previous: &[Condition],
    generation: Option<i64>,
) -> (Option<XUsage>, Option<Condition>) {
    let Some(record) = data.and_then(UsageRecord::from_data) else {
        return (None, None);
    };
    let x = &spec.source.x;
    let budget = x
        .monthly_read_budget
        .as_ref()
        .and_then(|b| budget_posts(b, &x.price_per_read_usd));
    let spend = record.posts_read as f64 * parse_usd(&x.price_per_read_usd).unwrap_or(0.0)
        + record.count_requests as f64 * parse_usd(&x.price_per_count_request_usd).unwrap_or(0.0);
    let usage = XUsage {
        month: record.month.clone(),
        posts_read: i64::try_from(record.posts_read).unwrap_or(i64::MAX),
        requests: i64::try_from(record.requests).unwrap_or(i64::MAX),
        count_requests: i64::try_from(record.count_requests).unwrap_or(i64::MAX),
        estimated_spend_usd: format!("{spend:.2}"),
        budget_posts: budget.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
    };
    let (status, reason, message) = match budget {
        None => (
            "True",
            "WithinBudget",
            format!(
                "no monthly read budget; {} posts read in {}",
                record.posts_read, record.month
            ),
        ),
        Some(limit) if record.posts_read >= limit => (
            "False",
            "BudgetSpent",
            format!(
                "{} of {limit} posts read in {} (UTC): search is stopped until the month turns; unread posts are \
                 read then, within X's 7-day window",
                record.posts_read, record.month
            ),
        ),
        Some(limit) if record.posts_read as f64 >= limit as f64 * SLOW_FROM => (
            "True",
            "BudgetNearlySpent",
            format!(
                "{} of {limit} posts read in {} (UTC): polling is slowed to a quarter of its rate",
                record.posts_read, record.month
            ),
        ),
        Some(limit) => (
            "True",
            "WithinBudget",
            format!("{} of {limit} posts read in {} (UTC)", record.posts_read, record.month),
        ),
    };
    let unchanged = previous
        .iter()
        .find(|c| c.type_ == CONDITION && c.status == status && c.reason == reason);
    let condition = Condition {
        type_: CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: unchanged.map_or_else(|| Time(Timestamp::now()), |c| c.last_transition_time.clone()),
    };
    (Some(usage), Some(condition))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cilvest_crds::{CilvestPipeline, ReadBudget};

    fn spec(posts: Option<i64>) -> CilvestPipelineSpec {
        let pipeline: CilvestPipeline =
            serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).expect("example");
        let mut spec = pipeline.spec;
        spec.source.x.monthly_read_budget = posts.map(|posts| ReadBudget {
            posts: Some(posts),
            usd: None,
        });
        spec
    }

    fn data(posts_read: u64) -> BTreeMap<String, String> {
        UsageRecord {
            month: "2026-11".into(),
            posts_read,
            requests: 3,
            count_requests: 10,
            unread: None,
            rejection: None,
        }
        .to_data()
    }

    #[test]
    fn the_condition_follows_the_budget() {
        assert_eq!(status(&spec(Some(1000)), None, &[], Some(1)), (None, None));
        for (read, want_status, want_reason) in [
            (10, "True", "WithinBudget"),
            (800, "True", "BudgetNearlySpent"),
            (1000, "False", "BudgetSpent"),
        ] {
            let (usage, condition) = status(&spec(Some(1000)), Some(&data(read)), &[], Some(1));
            let condition = condition.expect("a condition");
            assert_eq!(
                (condition.status.as_str(), condition.reason.as_str()),
                (want_status, want_reason)
            );
            let usage = usage.expect("usage");
            assert_eq!(usage.posts_read, read as i64);
            assert_eq!(usage.budget_posts, Some(1000));
            assert_eq!(
                usage.estimated_spend_usd,
                format!("{:.2}", read as f64 * 0.005 + 10.0 * 0.005)
            );
        }
        let (_, unlimited) = status(&spec(None), Some(&data(5_000_000)), &[], Some(1));
        assert_eq!(unlimited.expect("condition").reason, "WithinBudget");
    }
}
