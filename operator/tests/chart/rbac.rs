//! `helm install`, then the operator running with nothing but the chart's RBAC.

use std::path::Path;

use cilvest_crds::CilvestPipeline;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, ServiceAccount},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{CRD_LOCK, CRD_NAME, argocd_health, deployment_args, install, resource, service_account_kubeconfig};
use crate::common::{
    ECK_CRDS, Operator, STRIMZI_CRD,
    chart::{dry_run, helm, repo, run, run_unchecked},
    client, delete_namespace, install_crd, install_crds_yaml, kubectl, temp_namespace, wait_until,
};

/// `kubectl auth can-i` as whoever `kubeconfig` authenticates.
fn can_i(kubeconfig: &Path, request: &str) -> bool {
    let output = kubectl()
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i"])
        .args(request.split_whitespace())
        .output()
        .expect("kubectl auth can-i");
    String::from_utf8_lossy(&output.stdout).trim() == "yes"
}

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

fn live_health(namespace: &str) -> (String, String) {
    let json = kubectl()
        .args(["get", "cilvestpipeline", "cilvest", "-n", namespace, "-o", "json"])
        .output()
        .expect("kubectl get");
    argocd_health(&json.stdout)
}

fn condition(pipeline: &CilvestPipeline, type_: &str) -> Option<(String, String)> {
    let c = pipeline.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn helm_install_runs_the_operator_with_only_the_charts_rbac() {
    let _crd = CRD_LOCK.lock().await;
    let client = client().await;
    // The CRD is cluster-wide and other test binaries need it, so it is already there and `helm install` skips
    // crds/ (its first-install path); the dry-run test covers that file.
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ops = temp_namespace(&client, "chart-ops").await;
    let apps = temp_namespace(&client, "chart-apps").await;
    let more_apps = temp_namespace(&client, "chart-apps2").await;
    // The operator pod must pass the restricted Pod Security profile, or the API server refuses it.
    label_restricted(&client, &ops).await;
    let release = ops.clone();
    let fullname = format!("{release}-cilvest-operator");
    let watch = format!("watchNamespaces={{{apps},{more_apps}}}");
    let notes = install(&client, &release, &ops, &[&watch, "workerImage.tag=chart-test"]).await;
    assert!(
        notes.contains(&format!("It reconciles CilvestPipelines in: {apps}, {more_apps}.")),
        "{notes}"
    );
    assert!(
        notes.contains("port-forward service/cilvest-kb-http 5601")
            && notes.contains("{{.data.elastic | base64decode}}")
            && notes.contains("cilvest-cilvest-reader"),
        "the notes say how to reach Kibana and which role analysts get: {notes}"
    );

    // The pipeline NOTES.txt tells people to write is a valid one.
    let example: String = notes
        .lines()
        .skip_while(|l| !l.contains("Write pipeline.yaml"))
        .skip(2)
        .take_while(|l| l.starts_with("     "))
        .map(|l| format!("{}\n", &l[5..]))
        .collect();
    assert!(
        example.contains("kind: CilvestPipeline"),
        "no pipeline in NOTES: {notes}"
    );
    dry_run(&example, Some(&more_apps), "notes-pipeline");

    // Kwok runs the pod but not its code: run the real binary with the Deployment's args, authenticated as the
    // chart's ServiceAccount, so that everything below happens with the chart's RBAC and nothing more.
    let kubeconfig = service_account_kubeconfig(&ops, &fullname);
    let args = deployment_args(&client, &ops, &fullname).await;
    assert!(args.contains(&format!("--namespace={apps},{more_apps}")), "{args:?}");
    let kubeconfig_path = kubeconfig.to_string_lossy().into_owned();
    let mut operator = Operator::start_with(
        &args,
        &[
            ("KUBECONFIG", &kubeconfig_path),
            ("POD_NAMESPACE", &ops),
            ("POD_NAME", "chart-test-operator"),
        ],
    );

    // Fail at once, with the reason, when the API server refuses the operator something.
    let refused = || {
        let logs = operator.logs();
        assert!(
            !logs.to_lowercase().contains("forbidden") && !logs.contains("failed to publish event"),
            "the chart's RBAC refused the operator something:\n{logs}"
        );
    };

    // `kubectl apply` of the full example, before its Secret exists: Degraded, naming the Secret.
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &apps);
    run(
        kubectl()
            .args(["apply", "-n", &apps, "-f"])
            .arg(repo("examples/cilvest.yaml")),
        "kubectl apply examples/cilvest.yaml",
    );
    wait_until("Degraded (SecretMissing)", 60, || async {
        refused();
        let p = pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Degraded")?.0 == "True").then_some(())
    })
    .await;
    let (health, message) = live_health(&apps);
    assert_eq!(health, "Degraded", "{message}");
    assert!(message.contains("cilvest-x-api"), "{message}");

    run(
        kubectl()
            .args(["create", "secret", "generic", "cilvest-x-api", "-n", &apps])
            .arg("--from-literal=bearerToken=t"),
        "kubectl create secret",
    );
    let topics: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &apps, &resource("kafka.strimzi.io", "v1", "KafkaTopic"));
    let es: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &apps,
        &resource("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch"),
    );
    let kibana: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &apps,
        &resource("kibana.k8s.elastic.co", "v1", "Kibana"),
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &apps);
    wait_until("every child to exist", 60, || async {
        refused();
        topics.get_opt("cilvest-raw").await.ok()??;
        es.get_opt("cilvest").await.ok()??;
        kibana.get_opt("cilvest").await.ok()??;
        deployments.get_opt("cilvest-consumer").await.ok()??;
        deployments.get_opt("cilvest-producer").await.ok()?
    })
    .await;
    let producer = deployments.get("cilvest-producer").await.expect("producer");
    let image = producer
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].image.clone());
    assert_eq!(image.flatten().as_deref(), Some("ghcr.io/cilvest/cilvest:chart-test"));
    // Until Strimzi and ECK report their objects healthy, the pipeline is rolling out.
    wait_until("Progressing once the Secret exists", 60, || async {
        refused();
        let p = pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Progressing")?.0 == "True").then_some(())
    })
    .await;
    assert_eq!(live_health(&apps).0, "Progressing");

    // Play Strimzi and ECK; then Ready, which the status patch (cilvestpipelines/status) carries.
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    topics
        .patch_status("cilvest-raw", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("topic status");
    let green = json!({"status": {"health": "green"}});
    for api in [&es, &kibana] {
        api.patch_status("cilvest", &PatchParams::default(), &Patch::Merge(&green))
            .await
            .expect("search status");
    }
    wait_until("Ready", 90, || async {
        refused();
        let p = pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
    assert_eq!(live_health(&apps).0, "Healthy");

    // Nothing for Argo CD to sync: the operator wrote only status, so the spec is still generation 1, every field
    // manager other than the applier wrote the status subresource only, and kubectl sees no diff.
    let pipeline = pipelines.get("cilvest").await.expect("pipeline");
    assert_eq!(pipeline.metadata.generation, Some(1));
    for entry in pipeline.metadata.managed_fields.iter().flatten() {
        let manager = entry.manager.as_deref().unwrap_or_default();
        assert!(
            manager == "kubectl-client-side-apply" || entry.subresource.as_deref() == Some("status"),
            "{manager} wrote more than status: {entry:?}"
        );
    }
    let (same, diff) = run_unchecked(
        kubectl()
            .args(["diff", "-n", &apps, "-f"])
            .arg(repo("examples/cilvest.yaml")),
    );
    assert!(same, "kubectl diff after the operator reconciled: {diff}");

    // Workload Identity (docs/gke.md): people annotate the workers' ServiceAccounts, which the operator owns. The
    // annotation has to survive the operator applying the ServiceAccount again; dropping its applied-hash makes
    // the operator re-apply it (ServiceAccounts are watched: at once; at the latest with the spec change below).
    let gsa = "iam.gke.io/gcp-service-account=cilvest-consumer@cilvest-prod.iam.gserviceaccount.com";
    run(
        kubectl()
            .args([
                "annotate",
                "serviceaccount",
                "cilvest-consumer",
                "-n",
                &apps,
                "--overwrite",
                gsa,
            ])
            .arg("cilvest.io/applied-hash-"),
        "kubectl annotate",
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &apps);

    // Suspending is a spec change; Argo CD shows Suspended once the operator has observed it.
    let suspend = json!({"spec": {"schedule": {"suspend": true}}});
    pipelines
        .patch("cilvest", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .expect("suspend");
    wait_until("Suspended", 60, || async {
        refused();
        let p = pipelines.get("cilvest").await.ok()?;
        let status = p.status.as_ref()?;
        (status.phase.as_deref() == Some("Suspended") && status.observed_generation == p.metadata.generation)
            .then_some(())
    })
    .await;
    assert_eq!(live_health(&apps).0, "Suspended");
    let consumer = wait_until("the consumer ServiceAccount to be applied again", 30, || async {
        refused();
        let account = accounts.get("cilvest-consumer").await.ok()?;
        account
            .annotations()
            .contains_key("cilvest.io/applied-hash")
            .then_some(account)
    })
    .await;
    assert_eq!(
        consumer
            .annotations()
            .get("iam.gke.io/gcp-service-account")
            .map(String::as_str),
        gsa.split_once('=').map(|(_, v)| v),
        "the operator dropped the Workload Identity annotation"
    );

    // The second watched namespace is reconciled too (its own controller, its own Role): NOTES' pipeline there,
    // without a token Secret, is reported Degraded.
    let file = std::env::temp_dir().join(format!("{more_apps}-pipeline.yaml"));
    std::fs::write(&file, &example).expect("write NOTES pipeline");
    run(
        kubectl().args(["apply", "-n", &more_apps, "-f"]).arg(&file),
        "kubectl apply NOTES pipeline",
    );
    let more_pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &more_apps);
    wait_until("the second namespace's pipeline to get a status", 60, || async {
        refused();
        let p = more_pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Degraded")?.0 == "True").then_some(())
    })
    .await;

    // The operator published Events and was never refused anything.
    let events = run(
        kubectl().args(["get", "events.events.k8s.io", "-n", &apps, "-o", "json"]),
        "kubectl get events",
    );
    let events: Value = serde_json::from_str(&events).expect("events json");
    assert!(
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reportingController"] == "cilvest-operator" && e["reason"] == "Applied"),
        "no Applied event from the operator: {events}"
    );
    refused();
    eprintln!(
        "operator resident memory with 1 pipeline: {:.1} MiB",
        operator.rss_mib()
    );
    operator.kill();

    // What the ServiceAccount may do, and what it may not.
    for allowed in [
        format!("patch deployments.apps -n {apps}"),
        format!("watch cilvestpipelines.cilvest.io -n {more_apps}"),
        format!("get secrets/cilvest-x-api -n {apps}"),
        format!("create secrets -n {apps}"),
        format!("delete jobs.batch -n {apps}"),
        format!("patch kafkausers.kafka.strimzi.io -n {apps}"),
        format!("patch cilvestpipelines.cilvest.io/cilvest --subresource=status -n {apps}"),
        format!("create events.events.k8s.io -n {apps}"),
        format!("update leases.coordination.k8s.io/cilvest-operator -n {ops}"),
        format!("watch customresourcedefinitions.apiextensions.k8s.io/{CRD_NAME}"),
        format!("patch customresourcedefinitions.apiextensions.k8s.io/{CRD_NAME}"),
    ] {
        assert!(can_i(&kubeconfig, &allowed), "the chart's RBAC should allow: {allowed}");
    }
    for denied in [
        format!("list secrets -n {apps}"),
        format!("watch secrets -n {apps}"),
        format!("get secrets -n {ops}"),
        format!("update cilvestpipelines.cilvest.io/cilvest -n {apps}"),
        format!("update deployments.apps -n {apps}"),
        format!("list deployments.apps -n {ops}"),
        "list cilvestpipelines.cilvest.io -n default".to_owned(),
        "list deployments.apps --all-namespaces".to_owned(),
        "delete namespaces".to_owned(),
        "create clusterroles.rbac.authorization.k8s.io".to_owned(),
        "patch customresourcedefinitions.apiextensions.k8s.io/kafkatopics.kafka.strimzi.io".to_owned(),
        "list customresourcedefinitions.apiextensions.k8s.io".to_owned(),
        format!("update leases.coordination.k8s.io/someone-else -n {ops}"),
    ] {
        assert!(
            !can_i(&kubeconfig, &denied),
            "the chart's RBAC should not allow: {denied}"
        );
    }

    run(
        helm().args(["uninstall", &release, "-n", &ops, "--wait"]),
        "helm uninstall",
    );
    let _ = std::fs::remove_file(&kubeconfig);
    for namespace in [&apps, &more_apps, &ops] {
        delete_namespace(&client, namespace).await;
    }
}
