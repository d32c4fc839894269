//! The CilvestPipeline CRD on the real API server: defaults, schema and CEL validation, the status subresource,
//! `kubectl explain`, the examples, and the same table of bad specs that `validate()` is held to.

use crate::common;

use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde::Deserialize;
use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;
use common::{client, delete_namespace, install_crd, kubectl, temp_namespace};

const FULL: &str = include_str!("../../../examples/cilvest.yaml");
const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");
const PUBSUB: &str = include_str!("../../../examples/pubsub.yaml");
const BAD_SPECS: &str = include_str!("../../../crds/tests/bad-specs.yaml");

#[derive(Deserialize)]
struct BadSpec {
    case: String,
    patch: Value,
    #[serde(default)]
    previous: Option<Value>,
    field: String,
}

fn example(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("example parses")
}

/// The full example under `name`, with `patch` merged into its spec.
fn patched_full(name: &str, patch: &Value) -> CilvestPipeline {
    let mut pipeline = example(FULL);
    pipeline["metadata"] = json!({"name": name});
    json_patch::merge(&mut pipeline["spec"], patch);
    serde_json::from_value(pipeline).expect("patched pipeline deserializes")
}

async fn setup(test: &str) -> (Client, String, Api<CilvestPipeline>) {
    let client = client().await;
    install_crd(&client).await;
    let ns = temp_namespace(&client, test).await;
    let api = Api::namespaced(client.clone(), &ns);
    (client, ns, api)
}

#[tokio::test]
async fn both_examples_are_accepted_and_the_minimal_one_is_completed_by_schema_defaults() {
    let (client, ns, pipelines) = setup("crd-examples").await;
    for text in [FULL, MINIMAL] {
        let pipeline: CilvestPipeline = serde_json::from_value(example(text)).expect("example");
        pipelines
            .create(&PostParams::default(), &pipeline)
            .await
            .expect("example accepted");
    }
    let minimal = pipelines.get("minimal").await.expect("get minimal");
    // Defaults live in the schema, so the stored object is complete and the operator never writes spec
    // (no perpetual OutOfSync in Argo CD).
    assert_eq!(minimal.spec.schedule.time_zone, "Asia/Jakarta");
    assert_eq!(minimal.spec.schedule.daily, "30 1 * * *");
    assert_eq!(minimal.spec.topics.raw.partitions, 3);
    assert_eq!(minimal.spec.kafka.strimzi_cluster.as_deref(), Some("cilvest"));
    assert_eq!(minimal.spec.source.x.bearer_token_secret_ref.name, "cilvest-x-api");
    assert!(minimal.spec.drop_retweets);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn the_pubsub_example_is_accepted_and_completed_by_schema_defaults() {
    let (client, ns, pipelines) = setup("crd-pubsub").await;
    let pipeline: CilvestPipeline = serde_json::from_value(example(PUBSUB)).expect("example");
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("pub/sub example accepted");
    let stored = pipelines.get("cilvest").await.expect("get");
    assert_eq!(stored.spec.bus, cilvest_crds::Bus::Pubsub);
    let pubsub = stored.spec.pubsub.expect("pubsub settings");
    assert_eq!(
        (pubsub.project.as_str(), pubsub.ack_deadline_seconds),
        ("cilvest-demo", 60)
    );
    assert_eq!(
        pubsub.topic, None,
        "the topic name defaults in the workers, from the pipeline's name"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn every_bad_spec_is_rejected_with_a_message_naming_its_field() {
    let (client, ns, pipelines) = setup("crd-bad").await;
    let cases: Vec<BadSpec> = serde_saphyr::from_str(BAD_SPECS).expect("bad-specs.yaml parses");
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        let result = match &case.previous {
            None => {
                pipelines
                    .create(&PostParams::default(), &patched_full(&name, &case.patch))
                    .await
            }
            Some(previous) => {
                pipelines
                    .create(&PostParams::default(), &patched_full(&name, previous))
                    .await
                    .expect("previous spec");
                let update = patched_full(&name, &case.patch);
                let params = PatchParams::apply("cilvest-tests").force();
                pipelines.patch(&name, &params, &Patch::Apply(&update)).await
            }
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(&case.field) => {}
            Err(kube::Error::Api(status)) => {
                failures.push(format!("{}: {} {}", case.case, status.code, status.message))
            }
            Err(other) => failures.push(format!("{}: {other}", case.case)),
            Ok(_) => failures.push(format!("{}: accepted", case.case)),
        }
    }
    assert!(
        failures.is_empty(),
        "not rejected as expected:\n{}",
        failures.join("\n")
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let (client, ns, pipelines) = setup("crd-status").await;
    let pipeline: CilvestPipeline = serde_json::from_value(example(MINIMAL)).expect("example");
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create");
    let status = json!({"status": {"phase": "Ready"}});
    let after_main = pipelines
        .patch("minimal", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch");
    assert!(
        after_main.status.is_none(),
        "status written through the main resource: {:?}",
        after_main.status
    );
    let after_status = pipelines
        .patch_status("minimal", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    assert_eq!(after_status.status.and_then(|s| s.phase).as_deref(), Some("Ready"));
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn kubectl_explain_shows_field_descriptions() {
    let client = client().await;
    install_crd(&client).await;
    let output = kubectl()
        .args(["explain", "cilvestpipeline.spec.keywords"])
        .output()
        .expect("run kubectl explain");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("The instruments to measure"), "{text}");
    assert!(text.contains("terms"), "{text}");
    let output = kubectl()
        .args(["get", "cvp", "-A"])
        .output()
        .expect("run kubectl get cvp");
    assert!(
        output.status.success(),
        "the short name cvp works: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
