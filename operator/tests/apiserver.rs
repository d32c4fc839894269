//! Smoke tests of the Kubernetes control plane that `scripts/testenv up k8s` starts: the API server accepts and
//! validates our CRD, and the controller manager runs CronJobs and garbage-collects owned objects.

use std::time::Duration;

use k8s_openapi::{
    api::{
        batch::v1::{CronJob, Job},
        core::v1::{ConfigMap, Namespace},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use serde_json::json;

use cilvest_crds::CilvestPipeline;

async fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: start the control plane with `scripts/testenv up k8s` and `eval \"$(scripts/testenv env)\"`")
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "KUBECONFIG {path} does not exist: run `scripts/testenv up k8s`"
    );
    Client::try_default().await.expect("kube client from KUBECONFIG")
}

/// A fresh namespace for one test, named after it.
async fn temp_namespace(client: &Client, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{test}-{:x}", nanos ^ std::process::id());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

async fn within<T>(what: &str, seconds: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {seconds}s waiting for {what}"))
}

async fn install_crd(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = CilvestPipeline::crd();
    let name = crd.name_any();
    crds.patch(&name, &PatchParams::apply("cilvest-tests").force(), &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    within(
        "CRD established",
        30,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("watch CRD");
}

fn minimal_pipeline(name: &str, keywords: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "cilvest.io/v1alpha1",
        "kind": "CilvestPipeline",
        "metadata": {"name": name},
        "spec": {
            "keywords": keywords,
            "targets": {
                "lake": {"uri": "gs://cilvest-lake/tweets"},
                "bigquery": {"project": "cilvest-prod", "dataset": "cilvest"}
            }
        }
    })
}

#[tokio::test]
async fn crd_installs_with_defaults_schema_validation_and_status_subresource() {
    let client = client().await;
    install_crd(&client).await;
    let ns = temp_namespace(&client, "smoke-crd").await;
    let pipelines = Api::<CilvestPipeline>::namespaced(client.clone(), &ns);

    let good = minimal_pipeline("good", json!([{"name": "saham", "terms": ["saham"]}]));
    let created = pipelines
        .create(&PostParams::default(), &serde_json::from_value(good).expect("pipeline"))
        .await
        .expect("a minimal pipeline is valid");
    // Defaults come from the schema, so what is stored is complete without the operator writing spec.
    assert_eq!(created.spec.schedule.time_zone, "Asia/Jakarta");
    assert_eq!(created.spec.topics.raw.partitions, 3);
    assert_eq!(created.spec.kafka.strimzi_cluster.as_deref(), Some("cilvest"));

    let bad = minimal_pipeline("bad", json!([]));
    let err = pipelines
        .create(&PostParams::default(), &serde_json::from_value(bad).expect("pipeline"))
        .await
        .expect_err("empty keywords must be rejected");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("spec.keywords"),
                "message names the field: {}",
                status.message
            );
        }
        other => panic!("expected a 422 from the API server, got {other}"),
    }

    // The main resource ignores status; only the status subresource writes it.
    let status = json!({"status": {"phase": "Ready"}});
    let after_main = pipelines
        .patch("good", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch");
    assert!(
        after_main.status.is_none(),
        "status written through the main resource: {:?}",
        after_main.status
    );
    let after_status = pipelines
        .patch_status("good", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    assert_eq!(after_status.status.and_then(|s| s.phase).as_deref(), Some("Ready"));

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn controller_manager_creates_jobs_from_a_cronjob() {
    let client = client().await;
    let ns = temp_namespace(&client, "smoke-cron").await;
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), &ns);
    let cronjob: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "every-minute"},
        "spec": {
            "schedule": "* * * * *",
            "timeZone": "Asia/Jakarta",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "daily", "image": "busybox", "command": ["true"]}]
            }}}}
        }
    }))
    .expect("cronjob");
    cronjobs
        .create(&PostParams::default(), &cronjob)
        .await
        .expect("batch/v1 CronJob accepted");

    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    let job = within("the controller manager to create a Job from the CronJob", 90, async {
        loop {
            let list = jobs.list(&ListParams::default()).await.expect("list jobs");
            if let Some(job) = list.items.into_iter().next() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let owner = job.owner_references().first().map(|o| (o.kind.clone(), o.name.clone()));
    assert_eq!(owner, Some(("CronJob".to_owned(), "every-minute".to_owned())));

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_deleted_owner() {
    let client = client().await;
    let ns = temp_namespace(&client, "smoke-gc").await;
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let owner = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).expect("cm"),
        )
        .await
        .expect("create owner");
    let uid = owner.uid().expect("owner uid");
    let child: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "child",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]
    }}))
    .expect("cm");
    configmaps
        .create(&PostParams::default(), &child)
        .await
        .expect("create child");
    configmaps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");

    within("the garbage collector to delete the child", 60, async {
        while configmaps.get_opt("child").await.expect("get child").is_some() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
