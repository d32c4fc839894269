//! NetworkPolicies against the real API server: a pipeline gets its default-deny policy and one per worker, owned
//! by it; turning them off in the spec deletes them, turning them on again brings them back. (Whether a network
//! plugin enforces them is not tested here: the test cluster's bridge CNI enforces none.)

use crate::common;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;
use common::{
    Operator, STRIMZI_CRD, client, create_token_secret, delete_namespace, install_crd, install_crds_yaml,
    temp_namespace, wait_until,
};

const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");

#[tokio::test]
async fn network_policies_follow_the_spec() {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    let ns = temp_namespace(&client, "op-netpol").await;
    create_token_secret(&client, &ns).await;
    let operator = Operator::start(&ns, None);
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    let pipeline: CilvestPipeline = serde_saphyr::from_str(MINIMAL).expect("example");
    let created = pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let names = || async {
        let mut names: Vec<String> = policies
            .list(&ListParams::default())
            .await
            .expect("list policies")
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    };
    let all = [
        "minimal-consumer",
        "minimal-daily",
        "minimal-default-deny",
        "minimal-producer",
    ];
    wait_until("the four NetworkPolicies", 60, || async {
        (names().await == all).then_some(())
    })
    .await;
    for policy in policies.list(&ListParams::default()).await.expect("list").items {
        let owner = policy.owner_references().first().cloned().expect("owner");
        assert_eq!(
            owner.uid,
            created.uid().expect("uid"),
            "{} is owned by the pipeline",
            policy.name_any()
        );
    }

    // Once applied, they stay as they are: no write loop (a default-deny policy's empty `egress` comes back
    // omitted, which is not drift).
    let versions = || async {
        policies
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|p| (p.name_any(), p.resource_version()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let settled = versions().await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        versions().await,
        settled,
        "the operator rewrote a NetworkPolicy it had applied"
    );
    assert!(
        !operator.logs().contains("restored NetworkPolicy"),
        "a NetworkPolicy seen as drifted:\n{}",
        operator.logs()
    );

    let toggle = |enabled: bool| json!({"spec": {"networkPolicies": {"enabled": enabled}}});
    pipelines
        .patch("minimal", &PatchParams::default(), &Patch::Merge(&toggle(false)))
        .await
        .expect("turn them off");
    wait_until("the NetworkPolicies to be deleted", 60, || async {
        names().await.is_empty().then_some(())
    })
    .await;
    pipelines
        .patch("minimal", &PatchParams::default(), &Patch::Merge(&toggle(true)))
        .await
        .expect("turn them on");
    wait_until("the NetworkPolicies to be back", 60, || async {
        (names().await == all).then_some(())
    })
    .await;
    drop(operator);
    delete_namespace(&client, &ns).await;
}
