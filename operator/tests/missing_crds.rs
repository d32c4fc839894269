//! With the Strimzi CRD absent, a pipeline that needs it goes Degraded with a clear reason, and recovers once the
//! CRD is installed. Its own test binary: cargo runs test binaries one after another, so removing a cluster-wide
//! CRD here cannot disturb the other operator tests.

mod common;

use k8s_openapi::{
    api::core::v1::Secret, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, delete_namespace, install_crd, install_crds_yaml, temp_namespace,
    wait_until,
};

#[tokio::test]
async fn missing_strimzi_crd_degrades_then_recovers_when_installed() {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds
        .delete("kafkatopics.kafka.strimzi.io", &DeleteParams::default())
        .await;
    wait_until("the Strimzi CRD to be gone", 60, || async {
        crds.get_opt("kafkatopics.kafka.strimzi.io")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    let ns = temp_namespace(&client, "op-nocrd").await;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "cilvest-x-api"}, "stringData": {"bearerToken": "t"}}))
            .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let operator = Operator::start(&ns, None);
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    let pipeline: CilvestPipeline =
        serde_saphyr::from_str(include_str!("../../examples/cilvest.yaml")).expect("example");
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");

    let degraded = wait_until("Degraded with StrimziNotInstalled", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        let c = p
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")?;
        Some(c)
    })
    .await;
    assert_eq!(degraded.reason, "StrimziNotInstalled");
    assert!(
        degraded.message.contains("KafkaTopic") && degraded.message.contains("kafka.strimzi.io/v1"),
        "{}",
        degraded.message
    );
    assert!(
        !operator.logs().contains("panicked"),
        "the operator panicked: {}",
        operator.logs()
    );

    install_crds_yaml(&client, STRIMZI_CRD).await;
    let topics: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("kafka.strimzi.io", "v1", "KafkaTopic")),
    );
    wait_until("the KafkaTopic once the CRD exists", 60, || async {
        topics.get_opt("cilvest-raw").await.ok()?.map(|_| ())
    })
    .await;
    wait_until("Degraded to clear", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Degraded")?;
        (c.status == "False").then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}
