//! Drift of children against the real API server: what a person changes by hand (`kubectl scale`, an edited
//! schedule, a removed env var, a topic's retention, a deleted ConfigMap) is put back by the running operator, with
//! an Event naming the child and the field; a child labelled `cilvest.io/paused=true` is left alone; and restoring
//! drift never turns into a write loop.

use crate::common;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::CronJob,
    core::v1::{ConfigMap, Event, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, install_crd, install_crds_yaml, labelled_children, temp_namespace,
    wait_until,
};

const FULL: &str = include_str!("../../../examples/cilvest.yaml");

fn topic_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("kafka.strimzi.io", "v1", "KafkaTopic"))
}

async fn versions(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    labelled_children(client, ns)
        .await
        .into_iter()
        // Deployments and CronJobs have their status written by the controller manager after every change, so
        // their resourceVersion moves without any write of ours: the generation is what counts for them.
        .map(|(key, meta)| match meta.generation {
            Some(generation) => (key, format!("generation {generation}")),
            None => (key, meta.resource_version.unwrap_or_default()),
        })
        .collect()
}

/// Touch the pipeline's annotations: any change to it reconciles it at once.
async fn nudge(pipelines: &Api<CilvestPipeline>, value: &str) {
    pipelines
        .patch(
            "cilvest",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test.cilvest.io/nudge": value}}})),
        )
        .await
        .expect("nudge the pipeline");
}

#[tokio::test]
async fn hand_edits_are_restored_and_paused_children_are_left_alone() {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ns = temp_namespace(&client, "op-drift").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cilvest-x-api"}, "stringData": {"bearerToken": "not-real"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let operator = Operator::start(&ns, None);
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    let pipeline: CilvestPipeline = serde_saphyr::from_str(FULL).expect("example");
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let topics: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &topic_resource());
    wait_until("every child to exist", 60, || async {
        deployments.get_opt("cilvest-consumer").await.ok()??;
        cronjobs.get_opt("cilvest-daily").await.ok()??;
        topics.get_opt("cilvest-raw").await.ok()?
    })
    .await;

    let merge = |patch: serde_json::Value| Patch::Merge(patch);
    let params = PatchParams::default();

    // Unchanged children are compared by the digest of the fields the operator owns: no reconcile reads one back.
    let reconciles = operator.metric("cilvest_operator_reconciles_total").await;
    nudge(&pipelines, "0").await;
    wait_until("a reconcile of the unchanged pipeline", 30, || async {
        (operator.metric("cilvest_operator_reconciles_total").await > reconciles).then_some(())
    })
    .await;
    assert_eq!(
        operator.metric("cilvest_operator_drift_fetches_total").await,
        0.0,
        "an undrifted child was read back: its owned fields digest differently from what the operator applies"
    );

    // Hand edits, each of a field the operator sets.
    deployments
        .patch("cilvest-producer", &params, &merge(json!({"spec": {"replicas": 3}})))
        .await
        .expect("scale the producer");
    cronjobs
        .patch(
            "cilvest-daily",
            &params,
            &merge(json!({"spec": {"schedule": "0 5 * * *"}})),
        )
        .await
        .expect("edit the schedule");
    let consumer = deployments.get("cilvest-consumer").await.expect("consumer");
    let env = consumer
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].env.clone());
    let log_format = env
        .flatten()
        .unwrap_or_default()
        .iter()
        .position(|e| e.name == "CILVEST_LOG_FORMAT")
        .expect("the consumer's CILVEST_LOG_FORMAT");
    deployments
        .patch(
            "cilvest-consumer",
            &params,
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "remove", "path": format!("/spec/template/spec/containers/0/env/{log_format}")}
                ]))
                .expect("json patch"),
            ),
        )
        .await
        .expect("remove an env var");
    topics
        .patch(
            "cilvest-raw",
            &params,
            &merge(json!({"spec": {"config": {"retention.ms": 1000}}})),
        )
        .await
        .expect("shorten the retention");
    config_maps
        .delete("cilvest-config", &DeleteParams::default())
        .await
        .expect("delete the ConfigMap");

    wait_until("every hand edit to be undone", 60, || async {
        let producer = deployments.get("cilvest-producer").await.ok()?;
        let cron = cronjobs.get("cilvest-daily").await.ok()?;
        let consumer = deployments.get("cilvest-consumer").await.ok()?;
        let topic = topics.get("cilvest-raw").await.ok()?;
        config_maps.get_opt("cilvest-config").await.ok()??;
        let env = consumer.spec?.template.spec?.containers[0].env.clone()?;
        (producer.spec?.replicas == Some(1)
            && cron.spec?.schedule == "30 1 * * *"
            && env.iter().any(|e| e.name == "CILVEST_LOG_FORMAT")
            && topic.data["spec"]["config"]["retention.ms"] == 604_800_000u64)
            .then_some(())
    })
    .await;

    // Each restoration is an Event on the pipeline naming the child and the field.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let notes = wait_until("DriftRestored events", 30, || async {
        let list = events
            .list(&ListParams::default().fields("reason=DriftRestored"))
            .await
            .ok()?;
        let notes: Vec<String> = list.items.into_iter().filter_map(|e| e.message).collect();
        let named = |text: &str| notes.iter().any(|n| n.contains(text));
        (named("Deployment cilvest-producer: spec.replicas")
            && named("CronJob cilvest-daily: spec.schedule")
            && named("Deployment cilvest-consumer: spec.template.spec.containers[consumer].env")
            && named("KafkaTopic cilvest-raw: spec.config.retention.ms"))
        .then_some(notes)
    })
    .await;
    eprintln!("restorations: {notes:?}");
    assert!(
        operator.metric("cilvest_operator_drift_fetches_total").await >= 4.0,
        "each edited child is read back for the drift check"
    );

    // Restoring is not a loop: once put back, nothing is written again.
    let settled = versions(&client, &ns).await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        versions(&client, &ns).await,
        settled,
        "children kept being written after the restoration"
    );

    // A paused child is the person's: scaled by hand, it stays scaled through reconciles.
    deployments
        .patch(
            "cilvest-consumer",
            &params,
            &merge(json!({"metadata": {"labels": {"cilvest.io/paused": "true"}}, "spec": {"replicas": 2}})),
        )
        .await
        .expect("pause and scale the consumer");
    // Any change to the pipeline reconciles it at once.
    nudge(&pipelines, "1").await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let consumer = deployments.get("cilvest-consumer").await.expect("consumer");
    assert!(consumer.labels().contains_key("cilvest.io/paused"));
    assert_eq!(
        consumer.spec.and_then(|s| s.replicas),
        Some(2),
        "a paused child is left alone"
    );
}
