//! The X usage path against the test environment's API server: the operator creates the usage ConfigMap and the
//! producer's Role on it; the producer's ServiceAccount can patch that ConfigMap and nothing else; what it writes
//! becomes `status.xUsage` and the `XBudget` condition.

use crate::common;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;

use cilvest_crds::{
    CilvestPipeline, ReadBudget,
    usage::{USAGE_CONFIGMAP_ENV, USAGE_FIELD_MANAGER, UsageRecord},
};
use common::{
    Operator, STRIMZI_CRD, client, delete_namespace, install_crd, install_crds_yaml, temp_namespace, wait_until,
};

const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");

/// A client that acts as `namespace`'s ServiceAccount `name`.
async fn as_service_account(namespace: &str, name: &str) -> Client {
    let mut config = Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
    Client::try_from(config).expect("impersonating client")
}

fn usage_map(name: &str, record: &UsageRecord) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(record.to_data()),
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn the_producers_usage_reaches_status_and_the_budget_condition() {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    let ns = temp_namespace(&client, "op-x-usage").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cilvest-x-api"},
        "stringData": {"bearerToken": "test-token-not-real"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let mut operator = Operator::start(&ns, None);
    let mut pipeline: CilvestPipeline = serde_saphyr::from_str(MINIMAL).expect("example");
    pipeline.spec.source.x.monthly_read_budget = Some(ReadBudget {
        posts: Some(1000),
        usd: None,
    });
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let created = wait_until("the usage ConfigMap", 30, || async {
        maps.get_opt("minimal-x-usage").await.ok().flatten()
    })
    .await;
    assert!(created.data.is_none(), "the operator leaves data to the producer");
    let role = wait_until("the producer's Role", 30, || async {
        Api::<Role>::namespaced(client.clone(), &ns)
            .get_opt("minimal-producer-x-usage")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(role.rules.expect("rules")[0].verbs, ["get", "patch"]);
    wait_until("the producer's RoleBinding", 30, || async {
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .get_opt("minimal-producer-x-usage")
            .await
            .ok()
            .flatten()
    })
    .await;
    let producer = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("minimal-producer")
        .await
        .expect("producer Deployment");
    let pod = producer.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "the producer gets a token"
    );
    let env = pod.containers[0].env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == USAGE_CONFIGMAP_ENV && e.value.as_deref() == Some("minimal-x-usage"))
    );

    // As the producer: its own ConfigMap can be written, the pipeline's configuration cannot.
    let producer_client = as_service_account(&ns, "minimal-producer").await;
    let as_producer: Api<ConfigMap> = Api::namespaced(producer_client, &ns);
    let month = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let nearly = UsageRecord {
        month: month.clone(),
        posts_read: 850,
        requests: 9,
        count_requests: 0,
        unread: None,
        rejection: None,
    };
    let apply = PatchParams::apply(USAGE_FIELD_MANAGER).force();
    as_producer
        .patch(
            "minimal-x-usage",
            &apply,
            &Patch::Apply(&usage_map("minimal-x-usage", &nearly)),
        )
        .await
        .expect("the producer may patch its usage ConfigMap");
    let denied = as_producer
        .patch(
            "minimal-config",
            &apply,
            &Patch::Apply(&usage_map("minimal-config", &nearly)),
        )
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(status)) if status.code == 403),
        "{denied:?}"
    );

    let reason = |p: &CilvestPipeline| {
        p.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "XBudget")
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let seen = wait_until("XBudget BudgetNearlySpent", 30, || async {
        let p = pipelines.get("minimal").await.ok()?;
        (reason(&p) == Some(("True".into(), "BudgetNearlySpent".into()))).then_some(p)
    })
    .await;
    let usage = seen.status.and_then(|s| s.x_usage).expect("status.xUsage");
    assert_eq!((usage.posts_read, usage.requests), (850, 9));
    assert_eq!(usage.estimated_spend_usd, "4.25");
    assert_eq!(usage.budget_posts, Some(1000));
    assert_eq!(usage.month, month);

    let spent = UsageRecord {
        posts_read: 1000,
        requests: 10,
        ..nearly
    };
    as_producer
        .patch(
            "minimal-x-usage",
            &apply,
            &Patch::Apply(&usage_map("minimal-x-usage", &spent)),
        )
        .await
        .expect("patch again");
    wait_until("XBudget BudgetSpent", 30, || async {
        let p = pipelines.get("minimal").await.ok()?;
        (reason(&p) == Some(("False".into(), "BudgetSpent".into()))).then_some(())
    })
    .await;

    // The operator's next applies leave the producer's data alone.
    let data: BTreeMap<String, String> = maps
        .get("minimal-x-usage")
        .await
        .expect("usage ConfigMap")
        .data
        .unwrap_or_default();
    assert_eq!(data.get("postsRead").map(String::as_str), Some("1000"));

    operator.kill();
    delete_namespace(&client, &ns).await;
}
