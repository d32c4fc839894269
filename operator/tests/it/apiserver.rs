//! Smoke tests of the Kubernetes control plane that `scripts/testenv up k8s` starts: the controller manager runs
//! CronJobs and garbage-collects owned objects.

use crate::common;

use std::time::Duration;

use k8s_openapi::api::{
    batch::v1::{CronJob, Job},
    core::v1::{ConfigMap, Namespace},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

use common::{client, temp_namespace, within};

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
