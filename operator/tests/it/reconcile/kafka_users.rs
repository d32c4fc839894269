//! An authenticating Kafka listener: a KafkaUser per worker, until the listener is dropped.

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{full_pipeline, resource, setup};
use crate::common::{Operator, create_token_secret, delete_namespace, wait_until};

/// A listener with SCRAM: a KafkaUser per worker (admitted by the KafkaUser schema's enums), the workers wired to
/// their user's Secret and the cluster CA, the pipeline Ready only once Strimzi says the users are; without the
/// authentication the users go, as orphans.
#[tokio::test]
async fn an_authenticating_listener_gets_a_kafka_user_per_worker_until_it_is_dropped() {
    let (client, ns, pipelines) = setup("op-kusers").await;
    create_token_secret(&client, &ns).await;
    let _operator = Operator::start(&ns, None);
    let mut pipeline = full_pipeline();
    pipeline.spec.kafka.listener = Some(cilvest_crds::KafkaListener {
        port: 9093,
        tls: true,
        authentication: Some(cilvest_crds::KafkaAuthentication::ScramSha512),
    });
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");
    let users: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("kafka.strimzi.io", "v1", "KafkaUser"));
    let names = ["cilvest-kafka-producer", "cilvest-kafka-consumer"];
    wait_until("both KafkaUsers", 60, || async {
        for name in names {
            users.get_opt(name).await.ok()??;
        }
        Some(())
    })
    .await;
    let producer_user = users.get(names[0]).await.expect("producer user");
    assert_eq!(
        producer_user.labels().get("strimzi.io/cluster").map(String::as_str),
        Some("cilvest")
    );
    assert_eq!(producer_user.data["spec"]["authentication"]["type"], "scram-sha-512");
    assert_eq!(
        producer_user.owner_references().first().map(|o| o.kind.as_str()),
        Some("CilvestPipeline")
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let producer = deployments.get("cilvest-producer").await.expect("producer");
    let pod = producer.spec.and_then(|s| s.template.spec).expect("pod spec");
    let env = pod.containers[0].env.clone().unwrap_or_default();
    let password = env
        .iter()
        .find(|e| e.name == "CILVEST_KAFKA_PASSWORD")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .expect("the password from the user's Secret");
    assert_eq!((password.name.as_str(), password.key.as_str()), (names[0], "password"));
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("cilvest-cluster-ca-cert"))
    );

    // Until Strimzi marks the users Ready, the pipeline lists them as not ready.
    wait_until("the users among the children, not ready", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        let children = p.status?.children;
        let users: Vec<_> = children.iter().filter(|c| c.kind == "KafkaUser").collect();
        (users.len() == 2 && users.iter().all(|c| !c.ready)).then_some(())
    })
    .await;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "username": "x"}});
    for name in names {
        users
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&ready))
            .await
            .expect("user status");
    }
    wait_until("the users ready among the children", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        let children = p.status?.children;
        let users: Vec<_> = children.iter().filter(|c| c.kind == "KafkaUser").collect();
        (users.len() == 2 && users.iter().all(|c| c.ready)).then_some(())
    })
    .await;

    // Back to the plain listener: the users are deleted, the workers lose their credentials.
    pipelines
        .patch(
            "cilvest",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kafka": {"listener": null}}})),
        )
        .await
        .expect("drop the listener");
    wait_until("the KafkaUsers to be deleted", 60, || async {
        for name in names {
            if users.get_opt(name).await.ok()?.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
    let producer = deployments.get("cilvest-producer").await.expect("producer");
    let env = producer
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(env.iter().all(|e| !e.name.starts_with("CILVEST_KAFKA_")), "{env:?}");
    delete_namespace(&client, &ns).await;
}
