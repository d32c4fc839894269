//! Security against the real API server: every pod the operator's children make is admitted under the `restricted`
//! Pod Security profile, and the workers' ServiceAccounts may do nothing with the Kubernetes API. The operator's own
//! ServiceAccount (the chart's RBAC) is checked in `tests/chart/`.

use crate::common;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        batch::v1::CronJob,
        core::v1::{Namespace, Pod, PodSpec, Secret},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, delete_namespace, install_crd, install_crds_yaml, kubectl, temp_namespace,
    wait_until,
};

const FULL: &str = include_str!("../../../examples/cilvest.yaml");
const WORKERS: [&str; 3] = ["cilvest-producer", "cilvest-consumer", "cilvest-daily"];

async fn label_restricted(client: &Client, namespace: &str) {
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("label namespace");
}

/// A namespace where the operator has reconciled the full example pipeline (its token Secret included).
async fn reconciled(test: &str, restricted: bool) -> (Client, String, Operator) {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ns = temp_namespace(&client, test).await;
    if restricted {
        label_restricted(&client, &ns).await;
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cilvest-x-api"},
        "stringData": {"bearerToken": "test-token-not-real"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let operator = Operator::start(&ns, None);
    let pipeline: CilvestPipeline = serde_saphyr::from_str(FULL).expect("example");
    Api::<CilvestPipeline>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    wait_until("the workers' Deployments and CronJob", 60, || async {
        deployments.get_opt("cilvest-producer").await.ok()??;
        deployments.get_opt("cilvest-consumer").await.ok()??;
        cronjobs.get_opt("cilvest-daily").await.ok()?
    })
    .await;
    (client, ns, operator)
}

/// Server-side dry-run create of a Pod with `spec`: the API server's admission (PodSecurity included) answers.
async fn dry_run_pod(pods: &Api<Pod>, name: &str, spec: PodSpec) -> Result<Pod, kube::Error> {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    };
    pods.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        &pod,
    )
    .await
}

fn pod_security_refusals(namespace: &str) -> Vec<String> {
    common::events(namespace, "events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("PodSecurity"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_worker_pod_is_admitted_under_the_restricted_pod_security_profile() {
    let (client, ns, operator) = reconciled("sec-pss", true).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // The control: a plain pod, root allowed and capabilities kept, is refused in this namespace.
    let plain: PodSpec =
        serde_json::from_value(json!({"containers": [{"name": "c", "image": "busybox"}]})).expect("spec");
    let refused = dry_run_pod(&pods, "plain", plain)
        .await
        .expect_err("a plain pod violates restricted");
    assert!(refused.to_string().contains("violates PodSecurity"), "{refused}");

    // Every pod template the operator renders passes the same admission.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut templates = Vec::new();
    for name in ["cilvest-producer", "cilvest-consumer"] {
        let deployment = deployments.get(name).await.expect("deployment");
        templates.push((name, deployment.spec.and_then(|s| s.template.spec).expect("pod spec")));
    }
    let cronjob = Api::<CronJob>::namespaced(client.clone(), &ns)
        .get("cilvest-daily")
        .await
        .expect("cronjob");
    let daily = cronjob
        .spec
        .and_then(|s| s.job_template.spec)
        .and_then(|s| s.template.spec)
        .expect("daily pod spec");
    templates.push(("cilvest-daily", daily));
    // The Kibana dashboard import, a Job of its own (the example has managed Kibana).
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), &ns);
    let imports = wait_until("the Kibana import Job", 60, || async {
        let items = jobs
            .list(&ListParams::default().labels("app.kubernetes.io/component=kibana-setup"))
            .await
            .ok()?
            .items;
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(imports.len(), 1, "one Kibana import Job");
    let import = imports
        .into_iter()
        .next()
        .and_then(|j| j.spec)
        .and_then(|s| s.template.spec)
        .expect("import pod spec");
    templates.push(("cilvest-kibana-setup", import));
    for (name, spec) in templates {
        if let Err(err) = dry_run_pod(&pods, name, spec).await {
            panic!("the {name} pod template is refused: {err}");
        }
    }

    // And for real: the controller manager makes the Deployments' pods, and a Job made from the CronJob makes its pod.
    let job = kubectl()
        .args(["create", "job", "daily-now", "--from=cronjob/cilvest-daily", "-n", &ns])
        .output()
        .expect("kubectl create job");
    assert!(job.status.success(), "{}", String::from_utf8_lossy(&job.stderr));
    // Created is what admission decides; whether the fake node has room to schedule them is beside the point. The
    // controller manager can take a minute or two to get to new ReplicaSets when many tests run at once.
    let names = wait_until("a pod of each worker", 240, || async {
        let names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        let all = has("cilvest-producer-") && has("cilvest-consumer-") && has("daily-now-");
        (all && has("cilvest-kibana-setup-")).then_some(names)
    })
    .await;
    assert_eq!(names.len(), 4, "{names:?}");
    let refusals = pod_security_refusals(&ns);
    assert!(refusals.is_empty(), "PodSecurity refused pods: {refusals:?}");
    drop(operator);
    delete_namespace(&client, &ns).await;
}

/// `kubectl auth can-i` as `system:serviceaccount:<namespace>:<account>` with its groups.
fn service_account_can(namespace: &str, account: &str, request: &str) -> bool {
    let output = kubectl()
        .args(["auth", "can-i"])
        .args(request.split_whitespace())
        .arg(format!("--as=system:serviceaccount:{namespace}:{account}"))
        .args([
            "--as-group=system:serviceaccounts",
            &format!("--as-group=system:serviceaccounts:{namespace}"),
            "--as-group=system:authenticated",
        ])
        .output()
        .expect("kubectl auth can-i");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {request}: {answer} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer == "yes"
}

#[tokio::test]
async fn worker_service_accounts_can_read_no_secret_and_touch_no_namespace() {
    let (client, ns, operator) = reconciled("sec-rbac", false).await;
    let other = temp_namespace(&client, "sec-rbac-other").await;
    for account in WORKERS {
        // The control: what every authenticated identity may do, so a "no" below is RBAC's answer, not an error.
        assert!(
            service_account_can(&ns, account, "create selfsubjectaccessreviews.authorization.k8s.io"),
            "{account}: the impersonation does not work"
        );
        for denied in [
            format!("get secrets/cilvest-x-api -n {ns}"),
            format!("get secrets -n {ns}"),
            format!("list secrets -n {ns}"),
            format!("watch secrets -n {ns}"),
            format!("get configmaps/cilvest-config -n {ns}"),
            format!("list pods -n {ns}"),
            format!("create pods -n {ns}"),
            format!("get cilvestpipelines.cilvest.io -n {ns}"),
            format!("patch deployments.apps -n {ns}"),
            format!("create serviceaccounts/token -n {ns}"),
            format!("get secrets -n {other}"),
            format!("list pods -n {other}"),
            format!("create deployments.apps -n {other}"),
            "list secrets --all-namespaces".to_owned(),
            "create namespaces".to_owned(),
        ] {
            assert!(
                !service_account_can(&ns, account, &denied),
                "{account} may {denied}, but the workers need no Kubernetes API access"
            );
        }
    }
    // The workers' pods get no API token at all.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["cilvest-producer", "cilvest-consumer"] {
        let spec = deployments
            .get(name)
            .await
            .expect("deployment")
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        assert_eq!(spec.service_account_name.as_deref(), Some(name));
    }
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for account in WORKERS {
        let sa = accounts.get(account).await.expect("service account");
        assert_eq!(sa.automount_service_account_token, Some(false), "{account}");
    }
    drop(operator);
    delete_namespace(&client, &other).await;
    delete_namespace(&client, &ns).await;
}
