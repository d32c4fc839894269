//! The chart on paper and on the API server: its CRD is the generated one, and it lints, renders and passes a server-
//! side dry run.

use serde_json::{Value, json};

use super::CRD_NAME;
use crate::common::{
    chart::{chart, documents, dry_run, find, helm, render, repo, run, run_unchecked},
    client, delete_namespace, temp_namespace,
};

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
