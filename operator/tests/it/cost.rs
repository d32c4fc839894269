//! `cilvest-operator cost` on the example pipelines (and variants of them): the line items and their amounts at the
//! embedded price table, an override file, and the printed table in USD and IDR.

use std::process::Command;

use cilvest_crds::{CilvestPipeline, KeywordMode, ReadBudget};
use cilvest_operator::cost::{Assumptions, Compute, Estimate, Prices, Vendor, estimate};

const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");
const FULL: &str = include_str!("../../../examples/cilvest.yaml");
const PUBSUB: &str = include_str!("../../../examples/pubsub.yaml");

fn pipeline(text: &str) -> CilvestPipeline {
    let mut pipeline: CilvestPipeline = serde_saphyr::from_str(text).expect("example parses");
    pipeline.metadata.namespace = Some("cilvest".to_owned());
    pipeline
}

fn run(pipeline: &CilvestPipeline, assumptions: &Assumptions) -> Estimate {
    estimate(pipeline, assumptions, &Prices::embedded().expect("prices")).expect("estimate")
}

fn usd(estimate: &Estimate, item: &str) -> f64 {
    estimate
        .line(item)
        .unwrap_or_else(|| panic!("no line {item:?} in {:#?}", estimate.lines))
        .usd
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 0.005, "got {got}, want {want}");
}

/// 2,000 posts a day over a 730-hour month.
const POSTS_A_MONTH: f64 = 2000.0 * 730.0 / 24.0;

#[test]
fn the_minimal_pipeline_on_autopilot() {
    let estimate = run(&pipeline(MINIMAL), &Assumptions::default());
    let items: Vec<&str> = estimate.lines.iter().map(|l| l.item.as_str()).collect();
    assert_eq!(
        items,
        [
            "X API post reads",
            "X API counts requests",
            "GKE cluster fee",
            "pods: workers and operator",
            "pods: daily job",
            "bus: Kafka (Strimzi, in-cluster)",
            "persistent disks",
            "lake (Cloud Storage)",
            "BigQuery",
            "transform engine",
        ]
    );
    // X: 60,833 posts at USD 0.005; no margin on X's bill.
    close(usd(&estimate, "X API post reads"), POSTS_A_MONTH * 0.005);
    assert_eq!(estimate.line("X API post reads").map(|l| l.vendor), Some(Vendor::X));
    close(usd(&estimate, "X API counts requests"), 0.0);
    close(usd(&estimate, "GKE cluster fee"), 0.0);
    // producer 50m/64Mi + consumer 100m/128Mi + operator 50m/128Mi, 730 h, Autopilot prices, x 1.2.
    let workers = (0.2 * 0.0445 + (0.0625 + 0.125 + 0.125) * 0.0049225) * 730.0 * 1.2;
    close(usd(&estimate, "pods: workers and operator"), workers);
    // Strimzi operator 200m/384Mi + Kafka 250m/1Gi + Topic Operator 100m/256Mi.
    let kafka = (0.55 * 0.0445 + (0.375 + 1.0 + 0.25) * 0.0049225) * 730.0 * 1.2;
    close(usd(&estimate, "bus: Kafka (Strimzi, in-cluster)"), kafka);
    close(usd(&estimate, "persistent disks"), 10.0 * 0.10 * 1.2);
    close(usd(&estimate, "BigQuery"), 0.0);
    close(usd(&estimate, "transform engine"), 0.0);
    assert!(estimate.total_usd() > 300.0, "the X API is most of the bill");
}

#[test]
fn the_cilvest_pipeline_on_autopilot_and_on_one_node_type() {
    let full = pipeline(FULL);
    let autopilot = run(&full, &Assumptions::default());
    // One Elasticsearch node (500m, 2Gi), Kibana (500m, 1Gi) and the ECK operator (100m, 150Mi).
    let search = (1.1 * 0.0445 + (2.0 + 1.0 + 0.146) * 0.0049225) * 730.0 * 1.2;
    close(usd(&autopilot, "pods: Elasticsearch and Kibana (ECK)"), search);
    close(usd(&autopilot, "persistent disks"), 20.0 * 0.10 * 1.2);
    close(usd(&autopilot, "X API post reads"), POSTS_A_MONTH * 0.005);

    let nodes = run(
        &full,
        &Assumptions {
            compute: Compute::Nodes("e2-highmem-2".to_owned()),
            ..Assumptions::default()
        },
    );
    let line = nodes.line("nodes: e2-highmem-2").expect("a nodes line");
    assert!(line.quantity.starts_with("2 x"), "{}", line.quantity);
    close(line.usd, 2.0 * 0.090398 * 730.0 * 1.2);
    close(usd(&nodes, "bus: Kafka (Strimzi, in-cluster)"), 0.0);
    // Two boot disks are not counted per node: one 50 GB boot disk plus Kafka's and Elasticsearch's volumes.
    close(usd(&nodes, "persistent disks"), 70.0 * 0.10 * 1.2);
    assert!(nodes.line("pods: workers and operator").is_none(), "priced as nodes");
}

#[test]
fn the_pubsub_example_has_no_kafka_and_stays_in_pubsubs_free_tier() {
    let estimate = run(&pipeline(PUBSUB), &Assumptions::default());
    assert!(estimate.line("bus: Kafka (Strimzi, in-cluster)").is_none());
    let bus = estimate.line("bus: Pub/Sub").expect("a Pub/Sub line");
    // 60,833 posts x 10 kB, published and delivered: 1.13 GiB, under the free 10 GiB.
    assert!(bus.quantity.starts_with("1.13 GiB"), "{}", bus.quantity);
    close(bus.usd, 0.0);
    close(usd(&estimate, "persistent disks"), 0.0);
    close(usd(&estimate, "X API post reads"), POSTS_A_MONTH * 0.005);
}

#[test]
fn counts_mode_a_budget_pubsub_and_the_dataproc_engines_change_their_lines() {
    let mut counted = pipeline(FULL);
    for keyword in &mut counted.spec.keywords {
        keyword.mode = KeywordMode::Counts;
    }
    let estimate = run(&counted, &Assumptions::default());
    close(usd(&estimate, "X API post reads"), 0.0);
    // Three keywords, one request an hour each.
    close(usd(&estimate, "X API counts requests"), 3.0 * 730.0 * 0.005);

    let mut budgeted = pipeline(FULL);
    budgeted.spec.source.x.monthly_read_budget = Some(ReadBudget {
        posts: None,
        usd: Some("50".to_owned()),
    });
    let estimate = run(&budgeted, &Assumptions::default());
    close(usd(&estimate, "X API post reads"), 50.0);

    let mut pubsub: serde_json::Value = serde_json::to_value(pipeline(MINIMAL)).expect("json");
    pubsub["spec"]["bus"] = serde_json::json!("pubsub");
    pubsub["spec"]["pubsub"] = serde_json::json!({"project": "cilvest-prod"});
    let pubsub: CilvestPipeline = serde_json::from_value(pubsub).expect("a pubsub pipeline");
    let estimate = run(
        &pubsub,
        &Assumptions {
            posts_per_day: 200_000.0,
            ..Assumptions::default()
        },
    );
    assert!(estimate.line("bus: Kafka (Strimzi, in-cluster)").is_none());
    // 200,000 posts x 10 kB, published and delivered: about 113 GiB, 103 GiB over the free 10.
    let gib = 200_000.0 * 730.0 / 24.0 * 10_000.0 * 2.0 / (1u64 << 30) as f64;
    close(usd(&estimate, "bus: Pub/Sub"), (gib - 10.0) / 1024.0 * 40.0 * 1.2);

    let mut dataproc: serde_json::Value = serde_json::to_value(pipeline(MINIMAL)).expect("json");
    dataproc["spec"]["transform"] =
        serde_json::json!({"engine": "dataproc", "dataproc": {"project": "cilvest-prod", "region": "asia-southeast2"}});
    let dataproc: CilvestPipeline = serde_json::from_value(dataproc).expect("a dataproc pipeline");
    let estimate = run(&dataproc, &Assumptions::default());
    // Three n2-standard-2 (6 vCPU) for 15 minutes a day: Dataproc's fee plus the VMs.
    let per_run = 0.25 * (6.0 * 0.010 + 3.0 * 0.097118);
    close(usd(&estimate, "transform engine"), per_run * 730.0 / 24.0 * 1.2);

    let mut serverless: serde_json::Value = serde_json::to_value(pipeline(MINIMAL)).expect("json");
    serverless["spec"]["transform"] = serde_json::json!({"engine": "dataprocServerless",
        "dataprocServerless": {"project": "cilvest-prod", "region": "asia-southeast2"}});
    let serverless: CilvestPipeline = serde_json::from_value(serverless).expect("a serverless pipeline");
    let estimate = run(&serverless, &Assumptions::default());
    close(
        usd(&estimate, "transform engine"),
        12.0 * 0.25 * 0.06 * 730.0 / 24.0 * 1.2,
    );
}

#[test]
fn the_command_prints_usd_and_idr_and_takes_a_price_override() {
    let dir = std::env::temp_dir().join(format!("cilvest-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let overrides = dir.join("prices.yaml");
    std::fs::write(
        &overrides,
        "prices:\n  idrPerUsd: {value: 15000, source: test, date: '2026-11-28'}\n",
    )
    .expect("write overrides");
    let output = Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args([
            "cost",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/minimal.yaml"),
        ])
        .arg("--prices")
        .arg(&overrides)
        .output()
        .expect("run cilvest-operator cost");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.contains("Rp 15,000 per USD"), "{text}");
    let reads = text
        .lines()
        .find(|l| l.starts_with("X API post reads"))
        .expect("a reads line");
    // USD 304.17 is Rp 4,562,500 at 15,000.
    assert!(reads.contains("304.17") && reads.contains("4,562,500"), "{reads}");
    let original = text
        .lines()
        .find(|l| l.starts_with("original design"))
        .expect("the comparison");
    assert!(original.contains("417,514"), "{original}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args([
            "cost",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/minimal.yaml"),
        ])
        .args(["--node-type", "m9-giant"])
        .output()
        .expect("run cilvest-operator cost");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("m9-giant"));
    let _ = std::fs::remove_dir_all(dir);
}
