//! How people meet Cilvest: the Helm chart against the real API server (lint, render, server-side dry run, install,
//! upgrade), the operator running with nothing but the chart's RBAC, the CRD upgrade path, and the Argo CD health
//! check in Lua 5.1. Its own test binary because it changes the cluster-wide CRD (cargo runs test binaries one
//! after another); inside it, the tests that touch the CRD take `CRD_LOCK`.
//!
//! Needs `scripts/testenv up tools k8s` (helm, lua5.1, the control plane) and `eval "$(scripts/testenv env)"`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Pod, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD,
    chart::{chart, documents, dry_run, find, helm, render, repo, run, run_unchecked, tool},
    client, delete_namespace, install_crd, install_crds_yaml, kubectl, temp_namespace, wait_until,
};

const CRD_NAME: &str = "cilvestpipelines.cilvest.io";
/// The tests that install the chart run an operator with `--install-crd`, and the upgrade test changes the live CRD
/// on purpose: one at a time.
static CRD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn container_args(docs: &[Value]) -> Vec<String> {
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone()).expect("args")
}

fn rules(role: &Value) -> Vec<(String, String, Vec<String>)> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| {
            let verbs: Vec<String> = serde_json::from_value(rule["verbs"].clone()).expect("verbs");
            let groups: Vec<String> = serde_json::from_value(rule["apiGroups"].clone()).expect("groups");
            let resources: Vec<String> = serde_json::from_value(rule["resources"].clone()).expect("resources");
            groups
                .into_iter()
                .flat_map(move |g| resources.clone().into_iter().map(move |r| (g.clone(), r)))
                .map(move |(g, r)| (g, r, verbs.clone()))
        })
        .collect()
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let generated = std::fs::read_to_string(repo("crds/cilvestpipelines.yaml")).expect("crds/cilvestpipelines.yaml");
    let copy = std::fs::read_to_string(chart().join("crds/cilvestpipelines.yaml")).expect("the chart's CRD");
    assert!(
        copy == generated,
        "charts/cilvest-operator/crds/cilvestpipelines.yaml differs from crds/cilvestpipelines.yaml: run \
         `cp crds/cilvestpipelines.yaml charts/cilvest-operator/crds/`"
    );
    assert_eq!(
        copy,
        cilvest_crds::crd_yaml().expect("crd yaml"),
        "crds/cilvestpipelines.yaml is stale: run `cargo run -p cilvest-operator -- crd > crds/cilvestpipelines.yaml`"
    );
}

#[tokio::test]
async fn chart_lints_renders_and_passes_server_side_dry_run() {
    let client = client().await;
    let ns = temp_namespace(&client, "chart-render").await;
    let watched = [
        temp_namespace(&client, "chart-render-a").await,
        temp_namespace(&client, "chart-render-b").await,
    ];
    let namespaced = format!("watchNamespaces={{{}}}", watched.join(","));

    for sets in [vec![], vec![namespaced.as_str(), "crd.install=false"]] {
        let mut lint = helm();
        lint.args(["lint", "--strict"]).arg(chart());
        for set in &sets {
            lint.args(["--set", set]);
        }
        run(&mut lint, "helm lint");
    }

    // Every namespace: one ClusterRole for the pipelines' namespaces, the CRD's own, the Lease Role.
    let release = "render";
    let fullname = "render-cilvest-operator";
    let cluster_wide = render(release, &ns, &[]);
    let docs = documents(&cluster_wide);
    let applied = dry_run(&cluster_wide, None, "cluster-wide");
    for object in [
        format!("serviceaccount/{fullname}"),
        format!("deployment.apps/{fullname}"),
        format!("service/{fullname}-metrics"),
        format!("clusterrole.rbac.authorization.k8s.io/{fullname}"),
        format!("clusterrole.rbac.authorization.k8s.io/{fullname}-crd"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{fullname}"),
        format!("role.rbac.authorization.k8s.io/{fullname}-leader-election"),
    ] {
        assert!(
            applied.contains(&object),
            "{object} missing from the dry run: {applied}"
        );
    }
    let operator_rules = rules(find(&docs, "ClusterRole", fullname).expect("operator ClusterRole"));
    assert!(
        operator_rules
            .iter()
            .all(|(_, resource, verbs)| resource != "secrets" || verbs == &["get", "create", "patch"]),
        "secrets: get, create and patch, never list or watch: {operator_rules:?}"
    );
    assert!(
        !operator_rules
            .iter()
            .any(|(_, _, verbs)| verbs.iter().any(|v| v == "*" || v == "update")),
        "no wildcard or update verbs on children: {operator_rules:?}"
    );
    let crd_role = find(&docs, "ClusterRole", &format!("{fullname}-crd")).expect("CRD ClusterRole");
    assert_eq!(crd_role["rules"][0]["resourceNames"], json!([CRD_NAME]));
    assert_eq!(
        crd_role["rules"][0]["verbs"],
        json!(["list", "watch", "create", "patch"])
    );
    let args = container_args(&docs);
    assert!(args.contains(&"--install-crd".to_owned()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--namespace")), "{args:?}");

    // Digests win over tags, for the operator and for the workers it starts: what was verified is what runs.
    let (operator_digest, worker_digest) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    let pinned = documents(&render(
        release,
        &ns,
        &[
            "image.tag=ignored",
            &format!("image.digest={operator_digest}"),
            &format!("workerImage.digest={worker_digest}"),
        ],
    ));
    let operator =
        &find(&pinned, "Deployment", fullname).expect("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        operator["image"],
        format!("ghcr.io/cilvest/cilvest-operator@{operator_digest}")
    );
    assert!(
        container_args(&pinned).contains(&format!("--worker-image=ghcr.io/cilvest/cilvest@{worker_digest}")),
        "{:?}",
        container_args(&pinned)
    );
    let (ok, refused) = run_unchecked(
        helm()
            .args(["template", "x"])
            .arg(chart())
            .args(["--set", "image.digest=latest"]),
    );
    assert!(
        !ok && refused.contains("digest"),
        "a digest that is not sha256:<64 hex> is refused: {refused}"
    );
    let pod = &find(&docs, "Deployment", fullname).expect("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());

    // Listed namespaces: a Role in each, nothing namespaced cluster-wide, the CRD rule without writes.
    let listed = render(release, &ns, &[&namespaced, "crd.install=false"]);
    let docs = documents(&listed);
    let applied = dry_run(&listed, None, "namespaced");
    for watched in &watched {
        let role = docs
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == watched.as_str())
            .unwrap_or_else(|| panic!("no Role in {watched}"));
        assert_eq!(rules(role), operator_rules, "the Role grants what the ClusterRole does");
        assert!(applied.contains(&format!("rolebinding.rbac.authorization.k8s.io/{fullname}")));
    }
    assert!(
        find(&docs, "ClusterRole", fullname).is_none(),
        "a ClusterRole in namespaced mode"
    );
    let crd_role = find(&docs, "ClusterRole", &format!("{fullname}-crd")).expect("CRD ClusterRole");
    assert_eq!(crd_role["rules"][0]["verbs"], json!(["list", "watch"]));
    let args = container_args(&docs);
    assert!(args.contains(&format!("--namespace={}", watched.join(","))), "{args:?}");
    assert!(!args.contains(&"--install-crd".to_owned()), "{args:?}");

    // The CRD comes with `--include-crds` (what Argo CD applies) and passes the dry run too.
    let with_crds = run(
        helm()
            .args(["template", release])
            .arg(chart())
            .args(["--include-crds", "-n", &ns]),
        "helm template --include-crds",
    );
    let applied = dry_run(&with_crds, None, "crds");
    assert!(
        applied.contains(&format!("customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}")),
        "{applied}"
    );

    // Optional pieces and the schema.
    let monitored = documents(&render(
        release,
        &ns,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
    ));
    let monitor = find(&monitored, "ServiceMonitor", fullname).expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert!(find(&documents(&cluster_wide), "ServiceMonitor", fullname).is_none());
    for (bad, complaint) in [
        ("replicaCount=two", "/replicaCount"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("metrics.port=80", "/metrics/port"),
        ("replicas=2", "additional properties 'replicas'"),
    ] {
        let (ok, output) = run_unchecked(helm().args(["template", release]).arg(chart()).args(["--set", bad]));
        assert!(
            !ok && output.contains(complaint),
            "{bad} was not rejected by values.schema.json: {output}"
        );
    }
    for namespace in watched.iter().chain([&ns]) {
        delete_namespace(&client, namespace).await;
    }
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A kubeconfig that authenticates as `service_account` (a bound token), against the same server and CA.
fn service_account_kubeconfig(namespace: &str, service_account: &str) -> PathBuf {
    let token = run(
        kubectl().args(["create", "token", service_account, "-n", namespace, "--duration=1h"]),
        "kubectl create token",
    );
    let admin: Value = serde_json::from_str(&run(
        kubectl().args(["config", "view", "--raw", "--minify", "--flatten", "-o", "json"]),
        "kubectl config view",
    ))
    .expect("kubeconfig json");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": service_account, "user": {"token": token.trim()}}],
        "contexts": [{"name": service_account, "context": {"cluster": "testenv", "user": service_account}}],
        "current-context": service_account,
    });
    let path = std::env::temp_dir().join(format!("{namespace}-{service_account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&config).expect("kubeconfig")).expect("write kubeconfig");
    path
}

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

/// `helm install --wait`, then wait until every pod of the release runs (kwok plays their kubelet).
async fn install(client: &Client, release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut command = helm();
    command
        .args(["install", release])
        .arg(chart())
        .args(["--namespace", namespace, "--wait", "--timeout", "90s"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let notes = run(&mut command, "helm install");
    running_pods(client, release, namespace, 1).await;
    notes
}

async fn running_pods(client: &Client, release: &str, namespace: &str, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    wait_until(&format!("{count} running operator pod(s)"), 60, || async {
        let list = pods.list(&selector).await.ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == count).then_some(())
    })
    .await;
}

/// The live operator Deployment's container args, minus the metrics address (the test picks a free port).
async fn deployment_args(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("operator Deployment");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod spec");
    pod.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.starts_with("--metrics-addr"))
        .collect()
}

/// The Argo CD health script's verdict on `object` (JSON), run by Lua 5.1 as Argo CD would.
fn argocd_health(object: &[u8]) -> (String, String) {
    let mut child = tool("CILVEST_LUA")
        .arg(repo("deploy/argocd/testdata/run.lua"))
        .arg(repo("deploy/argocd/health.lua"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lua");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(object)
            .expect("write object");
    }
    let output = child.wait_with_output().expect("lua");
    assert!(
        output.status.success(),
        "the health script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
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

#[test]
fn argocd_health_check_covers_every_state() {
    let cases = [
        ("healthy.json", "Healthy", "every child is ready"),
        (
            "progressing.json",
            "Progressing",
            "Deployment cilvest-consumer: 0/1 replicas available",
        ),
        ("degraded.json", "Degraded", "secret cilvest-x-api (key bearerToken)"),
        ("suspended.json", "Suspended", "spec.schedule.suspend is true"),
        (
            "no-status.json",
            "Progressing",
            "Waiting for cilvest-operator to report status",
        ),
        (
            "stale-generation.json",
            "Progressing",
            "observe generation 2 (status is for 1)",
        ),
        ("degraded-while-suspended.json", "Degraded", "install Strimzi"),
    ];
    let dir = repo("deploy/argocd/testdata");
    let fixtures = std::fs::read_dir(&dir)
        .expect("testdata")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .count();
    assert_eq!(
        fixtures,
        cases.len(),
        "every fixture in {} has a case here",
        dir.display()
    );
    for (fixture, status, message) in cases {
        let object = std::fs::read(dir.join(fixture)).expect("fixture");
        let (got_status, got_message) = argocd_health(&object);
        assert_eq!(got_status, status, "{fixture}: {got_message}");
        assert!(
            got_message.contains(message),
            "{fixture}: {got_message:?} lacks {message:?}"
        );
    }

    // The harness gives the script only what Argo CD does: a script reaching for `os` fails.
    let script = std::env::temp_dir().join(format!("cilvest-health-os-{}.lua", std::process::id()));
    std::fs::write(&script, "return {status = os.date()}\n").expect("script");
    let (ok, output) = run_unchecked(
        tool("CILVEST_LUA")
            .arg(repo("deploy/argocd/testdata/run.lua"))
            .arg(&script)
            .stdin(std::fs::File::open(dir.join("healthy.json")).expect("fixture")),
    );
    assert!(!ok, "a script using os ran: {output}");
}

#[test]
fn argocd_manifests_carry_the_tested_script_and_real_paths() {
    let script = std::fs::read_to_string(repo("deploy/argocd/health.lua")).expect("health.lua");
    let cm: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("deploy/argocd/argocd-cm.yaml")).expect("argocd-cm.yaml"))
            .expect("argocd-cm.yaml parses");
    assert_eq!(
        cm["data"]["resource.customizations.health.cilvest.io_CilvestPipeline"].as_str(),
        Some(script.as_str()),
        "deploy/argocd/argocd-cm.yaml must carry deploy/argocd/health.lua unchanged"
    );
    let applications: Vec<Value> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(repo("deploy/argocd/application.yaml")).expect("application.yaml"),
    )
    .expect("application.yaml parses");
    assert_eq!(applications.len(), 2);
    for app in &applications {
        assert_eq!(app["kind"], "Application");
        let path = app["spec"]["source"]["path"].as_str().expect("source path");
        assert!(repo(path).is_dir(), "{path} does not exist in the repository");
        if let Some(include) = app["spec"]["source"]["directory"]["include"].as_str() {
            assert!(repo(path).join(include).is_file(), "{path}/{include} does not exist");
        }
    }
}
