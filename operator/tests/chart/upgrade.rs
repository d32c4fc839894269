//! `helm upgrade`: changed values reach the operator, and the operator, not Helm, upgrades the CRD.

use std::process::Command;

use cilvest_crds::CilvestPipeline;
use k8s_openapi::{
    api::apps::v1::Deployment, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{CRD_LOCK, CRD_NAME, deployment_args, install, running_pods, service_account_kubeconfig};
use crate::common::{
    Operator,
    chart::{chart, helm, repo, run},
    client, delete_namespace, install_crd, kubectl, temp_namespace, wait_until,
};

/// Puts the real CRD back however the upgrade test ends: another test binary relies on it.
struct RestoreCrd;

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        let _ = kubectl()
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=cilvest-tests",
                "-f",
            ])
            .arg(repo("crds/cilvestpipelines.yaml"))
            .output();
    }
}

fn printer_columns(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test]
async fn helm_upgrade_changes_values_and_the_operator_not_helm_upgrades_the_crd() {
    let _crd = CRD_LOCK.lock().await;
    let _restore = RestoreCrd;
    let client = client().await;
    install_crd(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ops = temp_namespace(&client, "chart-upgrade").await;
    let release = ops.clone();
    let fullname = format!("{release}-cilvest-operator");
    install(&client, &release, &ops, &[]).await;

    // Changed values roll out: worker image, replicas, resources.
    run(
        helm().args(["upgrade", &release]).arg(chart()).args([
            "--namespace",
            &ops,
            "--reuse-values",
            "--wait",
            "--timeout",
            "90s",
            "--set",
            "workerImage.tag=v2",
            "--set",
            "replicaCount=2",
            "--set",
            "resources.requests.cpu=100m",
        ]),
        "helm upgrade with changed values",
    );
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ops)
        .get(&fullname)
        .await
        .expect("operator Deployment");
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.expect("pod spec").containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert!(
        args.contains(&"--worker-image=ghcr.io/cilvest/cilvest:v2".to_owned()),
        "{args:?}"
    );
    let cpu = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"));
    assert_eq!(cpu.map(|q| q.0.as_str()), Some("100m"));
    running_pods(&client, &release, &ops, 2).await;

    // A cluster that still has last release's CRD: here, one without the "Last Run" column.
    let live = crds.get(CRD_NAME).await.expect("CRD");
    let last_run = printer_columns(&live)
        .iter()
        .position(|c| c == "Last Run")
        .expect("a Last Run column");
    run(
        kubectl().args(["patch", "crd", CRD_NAME, "--type=json", "-p"]).arg(
            json!([{"op": "remove", "path": format!("/spec/versions/0/additionalPrinterColumns/{last_run}")}])
                .to_string(),
        ),
        "make the live CRD old",
    );

    // `helm upgrade` to a chart whose CRD changed (an extra column here) leaves the live CRD alone: Helm installs
    // crds/ only when the CRD is absent.
    let changed = std::env::temp_dir().join(format!("{ops}-chart"));
    run(
        Command::new("cp").arg("-r").arg(chart()).arg(&changed),
        "copy the chart",
    );
    let crd_file = changed.join("crds/cilvestpipelines.yaml");
    let text = std::fs::read_to_string(&crd_file).expect("chart CRD");
    let probe =
        "  - additionalPrinterColumns:\n    - jsonPath: .metadata.uid\n      name: Upgrade Probe\n      type: string\n";
    let text = text.replacen("  - additionalPrinterColumns:\n", probe, 1);
    assert!(text.contains("Upgrade Probe"), "could not change the chart's CRD");
    std::fs::write(&crd_file, text).expect("write chart CRD");
    run(
        helm().args(["upgrade", &release]).arg(&changed).args([
            "--namespace",
            &ops,
            "--reuse-values",
            "--wait",
            "--timeout",
            "90s",
            "--set",
            "logLevel=debug",
        ]),
        "helm upgrade with a changed CRD",
    );
    let columns = printer_columns(&crds.get(CRD_NAME).await.expect("CRD"));
    assert!(
        !columns.iter().any(|c| c == "Upgrade Probe" || c == "Last Run"),
        "helm upgrade changed the CRD: {columns:?}"
    );

    // The documented path: the operator, started with --install-crd by the chart, applies the CRD it carries,
    // with nothing but the chart's RBAC (the ClusterRole's patch on this one CRD). `--namespace` keeps this
    // cluster-wide install from reconciling other tests' pipelines; the CRD is applied before any watch starts.
    let args = deployment_args(&client, &ops, &fullname).await;
    assert!(args.contains(&"--install-crd".to_owned()), "{args:?}");
    let kubeconfig = service_account_kubeconfig(&ops, &fullname)
        .to_string_lossy()
        .into_owned();
    let mut scoped = args.clone();
    scoped.push(format!("--namespace={ops}"));
    let operator = Operator::start_with(
        &scoped,
        &[
            ("KUBECONFIG", &kubeconfig),
            ("POD_NAMESPACE", &ops),
            ("POD_NAME", "chart-upgrade"),
        ],
    );
    wait_until("the operator to restore the Last Run column", 60, || async {
        let columns = printer_columns(&crds.get(CRD_NAME).await.ok()?);
        columns.iter().any(|c| c == "Last Run").then_some(())
    })
    .await;
    let crd = crds.get(CRD_NAME).await.expect("CRD");
    assert!(
        crd.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("cilvest-operator") && m.operation.as_deref() == Some("Apply")),
        "the CRD was not server-side applied by cilvest-operator"
    );
    let bundled = <CilvestPipeline as kube::CustomResourceExt>::crd();
    assert_eq!(
        printer_columns(&crd),
        printer_columns(&bundled),
        "the live CRD is not the operator's"
    );
    wait_until("the operator to report ready", 30, || async {
        let url = format!("http://127.0.0.1:{}/readyz", operator.metrics_port);
        (reqwest::get(&url).await.ok()?.status() == 200).then_some(())
    })
    .await;
    drop(operator);

    run(
        helm().args(["uninstall", &release, "-n", &ops, "--wait"]),
        "helm uninstall",
    );
    let _ = std::fs::remove_dir_all(&changed);
    let _ = std::fs::remove_file(&kubeconfig);
    delete_namespace(&client, &ops).await;
}
