//! Cheaper profiles of a pipeline, priced next to the spec's own estimate by `cost -f`:
//!
//! | profile | what it keeps | what it changes |
//! | --- | --- | --- |
//! | same outputs | the keywords and their modes, the lake, BigQuery and its marts, search if declared | Pub/Sub instead of Kafka; the native engine instead of Dataproc; one search node |
//! | volumes only | how much each keyword is talked about, per hour and day, in the lake and BigQuery | also: every keyword in counts mode (no post is read: no authors, no text) and no search |
//!
//! A profile is the spec changed as a user would change it, so it is priced by the same estimator and must pass
//! the same validation; a change that is already the spec's is not listed.

use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;

use super::{Assumptions, CostError, Estimate, Prices, estimate, thousands};

/// `status.googleCost`: the Google lines of the pipeline's estimate at the default assumptions and the embedded
/// prices; `None` when the spec cannot be priced (its problem is reported elsewhere).
pub fn google_status(pipeline: &CilvestPipeline) -> Option<cilvest_crds::GoogleCost> {
    static PRICES: std::sync::OnceLock<Option<Prices>> = std::sync::OnceLock::new();
    let prices = PRICES.get_or_init(|| Prices::embedded().ok()).as_ref()?;
    let assumptions = Assumptions::default();
    let estimate = estimate(pipeline, &assumptions, prices).ok()?;
    let usd: f64 = estimate
        .lines
        .iter()
        .filter(|l| l.vendor == super::Vendor::Google)
        .map(|l| l.usd)
        .sum();
    Some(cilvest_crds::GoogleCost {
        estimated_monthly_usd: format!("{usd:.2}"),
        basis: format!(
            "{} posts a day, GKE Autopilot, prices v{} of {} (us-central1 list x {:.2})",
            thousands(assumptions.posts_per_day),
            estimate.prices_version,
            estimate.prices_date,
            estimate.margin
        ),
    })
}

/// One priced profile.
pub struct Profile {
    pub name: &'static str,
    pub changes: Vec<String>,
    pub estimate: Estimate,
}

/// The two cheaper profiles of `pipeline`, priced like it.
pub fn profiles(
    pipeline: &CilvestPipeline,
    assumptions: &Assumptions,
    prices: &Prices,
) -> Result<Vec<Profile>, CostError> {
    let mut spec = serde_json::to_value(&pipeline.spec).unwrap_or(Value::Null);
    let mut changes = Vec::new();
    same_outputs(&mut spec, &mut changes);
    let same = priced("same outputs", pipeline, &spec, changes.clone(), assumptions, prices)?;
    volumes_only(&mut spec, &mut changes);
    let volumes = priced("volumes only", pipeline, &spec, changes, assumptions, prices)?;
    Ok(vec![same, volumes])
}

/// Pub/Sub (in the BigQuery project), the native engine, one search node.
fn same_outputs(spec: &mut Value, changes: &mut Vec<String>) {
    if spec.get("bus").and_then(Value::as_str) != Some("pubsub") {
        let project = spec
            .pointer("/targets/bigquery/project")
            .cloned()
            .unwrap_or(Value::Null);
        spec["bus"] = json!("pubsub");
        spec["pubsub"] = json!({ "project": project });
        changes
            .push("bus: Pub/Sub instead of Kafka (no broker to run; inside the free tier at this volume)".to_owned());
    }
    // No engine is the native one.
    if spec
        .pointer("/transform/engine")
        .and_then(Value::as_str)
        .unwrap_or("native")
        != "native"
    {
        spec["transform"] = json!({ "engine": "native" });
        changes
            .push("transform: native instead of Dataproc (a day of this volume takes seconds on one core)".to_owned());
    }
    // `pointer_mut`, not indexing: indexing a missing key would create it.
    if let Some(nodes) = spec.pointer_mut("/targets/elasticsearch/managed/nodes")
        && nodes.as_u64().is_some_and(|n| n > 1)
    {
        *nodes = json!(1);
        changes.push("search: one Elasticsearch node (no replica: a lost node is re-indexed from the lake)".to_owned());
    }
}

/// Every keyword in counts mode, no search.
fn volumes_only(spec: &mut Value, changes: &mut Vec<String>) {
    let mut counted = false;
    for keyword in spec
        .get_mut("keywords")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if keyword.get("mode").and_then(Value::as_str) != Some("counts") {
            keyword["mode"] = json!("counts");
            counted = true;
        }
    }
    if counted {
        changes.push("keywords: counts mode for every keyword (volumes per hour, no posts read)".to_owned());
    }
    if let Some(targets) = spec.get_mut("targets").and_then(Value::as_object_mut)
        && targets.remove("elasticsearch").is_some()
    {
        changes.push("search: none (nothing to index without posts)".to_owned());
    }
}

fn priced(
    name: &'static str,
    pipeline: &CilvestPipeline,
    spec: &Value,
    changes: Vec<String>,
    assumptions: &Assumptions,
    prices: &Prices,
) -> Result<Profile, CostError> {
    let mut changed = pipeline.clone();
    changed.spec = serde_json::from_value(spec.clone()).map_err(|e| CostError::Profile {
        name: name.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Profile {
        name,
        changes,
        estimate: estimate(&changed, assumptions, prices)?,
    })
}

/// The profiles under the spec's own estimate: their totals, and what each changes.
pub fn render(own: &Estimate, profiles: &[Profile]) -> String {
    let rate = own.idr_per_usd;
    let mut out = String::from("\nCheaper profiles of the same pipeline (same assumptions and prices):\n");
    out.push_str(&format!(
        "{:<38} {:>10} {:>14}   {}\n",
        "profile", "USD", "Rp", "vs the spec"
    ));
    out.push_str(&format!(
        "{:<38} {:>10.2} {:>14}   -\n",
        "as declared",
        own.total_usd(),
        thousands(own.total_usd() * rate)
    ));
    for profile in profiles {
        let total = profile.estimate.total_usd();
        out.push_str(&format!(
            "{:<38} {:>10.2} {:>14}   {:.0}%\n",
            profile.name,
            total,
            thousands(total * rate),
            (total / own.total_usd().max(f64::EPSILON) - 1.0) * 100.0
        ));
        if profile.changes.is_empty() {
            out.push_str("    (the spec already is this profile)\n");
        }
        for change in &profile.changes {
            out.push_str(&format!("    - {change}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(yaml: &str) -> CilvestPipeline {
        serde_saphyr::from_str(yaml).expect("example")
    }

    #[test]
    fn the_cheaper_profiles_of_the_full_example_drop_kafka_then_reads_and_search() {
        let prices = Prices::embedded().expect("prices");
        let assumptions = Assumptions::default();
        let pipeline = example(include_str!("../../../examples/cilvest.yaml"));
        let own = estimate(&pipeline, &assumptions, &prices).expect("estimate");
        let found = profiles(&pipeline, &assumptions, &prices).expect("profiles");
        let (same, volumes) = (&found[0], &found[1]);
        assert!(
            same.changes.iter().any(|c| c.starts_with("bus: Pub/Sub")),
            "{:?}",
            same.changes
        );
        assert!(same.estimate.line("bus: Pub/Sub").is_some());
        assert!(
            same.estimate.line("pods: Elasticsearch and Kibana (ECK)").is_some(),
            "search is an output"
        );
        assert!(same.estimate.total_usd() < own.total_usd());
        assert!(volumes.estimate.line("pods: Elasticsearch and Kibana (ECK)").is_none());
        assert_eq!(volumes.estimate.line("X API post reads").map(|l| l.usd), Some(0.0));
        assert!(volumes.estimate.total_usd() < same.estimate.total_usd());
        let text = render(&own, &found);
        assert!(text.contains("as declared") && text.contains("volumes only"), "{text}");
    }

    #[test]
    fn the_status_line_is_the_google_part_of_the_estimate() {
        let pipeline = example(include_str!("../../../examples/cilvest.yaml"));
        let own = estimate(&pipeline, &Assumptions::default(), &Prices::embedded().expect("prices")).expect("estimate");
        let x: f64 = own
            .lines
            .iter()
            .filter(|l| l.vendor == super::super::Vendor::X)
            .map(|l| l.usd)
            .sum();
        let line = google_status(&pipeline).expect("a status line");
        assert_eq!(line.estimated_monthly_usd, format!("{:.2}", own.total_usd() - x));
        assert!(line.basis.contains("2,000 posts a day"), "{}", line.basis);
    }

    #[test]
    fn the_lean_example_is_its_own_cheapest_profile_with_the_same_outputs() {
        let prices = Prices::embedded().expect("prices");
        let pipeline = example(include_str!("../../../examples/lean.yaml"));
        let found = profiles(&pipeline, &Assumptions::default(), &prices).expect("profiles");
        assert!(found[0].changes.is_empty(), "{:?}", found[0].changes);
    }
}
