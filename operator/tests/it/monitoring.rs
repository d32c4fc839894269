//! The chart's monitoring objects against what they monitor: the ServiceMonitor, PodMonitor and PrometheusRule pass a
//! server-side dry run against the Prometheus Operator's own CRDs; the PodMonitor selects the worker pods the
//! operator renders, on a port they declare; every alert expression parses as PromQL; and every `cilvest_operator_`
//! series an alert reads is one a running operator serves. (The workers' series are checked by the producer and
//! consumer tests, against their own `/metrics`; the values of the operator's by `health.rs`.)
//!
//! Needs `scripts/testenv up tools k8s` (helm, the Prometheus Operator CRDs, the control plane) and
//! `eval "$(scripts/testenv env)"`.

use crate::common;

use std::collections::BTreeSet;

use serde_json::Value;

use common::{
    chart::{documents, dry_run, render, repo, run},
    client, delete_namespace, install_crds_yaml, temp_namespace,
};

const MONITORING_GROUP: &str = "monitoring.coreos.com/v1";

/// The Prometheus Operator's CRDs, as `scripts/testenv up tools` fetched them.
fn prometheus_crds() -> Vec<String> {
    let dir = std::env::var("CILVEST_PROMETHEUS_CRDS").unwrap_or_else(|_| {
        panic!(
            "CILVEST_PROMETHEUS_CRDS is not set: run `scripts/testenv up tools` and `eval \"$(scripts/testenv env)\"`"
        )
    });
    ["podmonitors", "servicemonitors", "prometheusrules"]
        .iter()
        .map(|kind| {
            let path = format!("{dir}/monitoring.coreos.com_{kind}.yaml");
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}: run `scripts/testenv up tools`"))
        })
        .collect()
}

/// Whether a pod with `labels` matches a label selector (`matchLabels` and `In`/`NotIn`/`Exists` expressions).
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels[key].as_str();
    let by_label = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| label(key) == value.as_str());
    let by_expression = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str() {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            other => panic!("selector operator {other:?} not handled by this test"),
        }
    });
    by_label && by_expression
}

/// The `cilvest_…` metric names in a PromQL expression that parses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    if let Err(error) = promql_parser::parser::parse(expr) {
        panic!("alert expression does not parse as PromQL: {error}\n{expr}");
    }
    common::alerts::series_in(expr, "cilvest_")
}

#[tokio::test]
async fn monitoring_objects_fit_the_prometheus_operator_and_alert_on_served_series() {
    let client = client().await;
    for crd in prometheus_crds() {
        install_crds_yaml(&client, &crd).await;
    }
    let ns = temp_namespace(&client, "monitoring").await;
    let rendered = render(
        "cilvest",
        &ns,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.podMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
        ],
    );
    let monitoring: Vec<Value> = documents(&rendered)
        .into_iter()
        .filter(|d| d["apiVersion"] == MONITORING_GROUP)
        .collect();
    let kinds: BTreeSet<&str> = monitoring.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["PodMonitor", "PrometheusRule", "ServiceMonitor"])
    );
    // Strict field validation (kubectl's default): a misspelt field is refused, not pruned.
    let manifest = monitoring
        .iter()
        .map(|d| serde_json::to_string(d).expect("json"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    dry_run(&manifest, Some(&ns), "monitoring");

    // The PodMonitor finds the producer and consumer of a rendered pipeline, on a port they declare.
    let pod_monitor = monitoring
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .expect("PodMonitor");
    let port = pod_monitor["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .expect("endpoint port name");
    let pipeline = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
            .args(["render", "-n", &ns, "-f"])
            .arg(repo("examples/cilvest.yaml")),
        "cilvest-operator render",
    );
    let mut scraped = BTreeSet::new();
    for deployment in documents(&pipeline).iter().filter(|d| d["kind"] == "Deployment") {
        let template = &deployment["spec"]["template"];
        let component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !selects(&pod_monitor["spec"]["selector"], &template["metadata"]["labels"]) {
            continue;
        }
        let declared = template["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["ports"].as_array().into_iter().flatten().any(|p| p["name"] == port));
        assert!(declared, "{component} declares no port named {port}");
        scraped.insert(component);
    }
    assert_eq!(scraped, BTreeSet::from(["consumer".to_owned(), "producer".to_owned()]));

    // Every alert parses, and every operator series it reads is served.
    let rule = monitoring
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    let names: BTreeSet<String> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .flat_map(|r| metric_names(r["expr"].as_str().expect("expr")))
        .collect();
    for prefix in ["cilvest_operator_", "cilvest_producer_", "cilvest_consumer_"] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no alert reads a {prefix} series: {names:?}"
        );
    }
    delete_namespace(&client, &ns).await;
}
