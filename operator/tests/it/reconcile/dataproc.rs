//! Deleting a pipeline on the Dataproc engine: the cleanup job runs before it goes, unless the skip annotation says not
//! to.

use cilvest_crds::CilvestPipeline;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

use super::{full_pipeline, setup};
use crate::common::{Operator, create_token_secret, delete_namespace, wait_until};

/// The full example on the Dataproc engine, optionally with an annotation set to "true"; returns once the operator
/// has added its cleanup finalizer.
async fn create_dataproc_pipeline(pipelines: &Api<CilvestPipeline>, annotation: Option<&str>) {
    let mut pipeline = full_pipeline();
    pipeline.spec.transform = serde_json::from_value(json!({
        "engine": "dataproc",
        "dataproc": {"project": "cilvest-prod", "region": "asia-southeast2"}
    }))
    .expect("transform");
    pipeline.metadata.annotations = annotation.map(|a| [(a.to_owned(), "true".to_owned())].into());
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");
    wait_until("the dataproc finalizer", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        p.finalizers()
            .iter()
            .any(|f| f == "cilvest.io/dataproc-cleanup")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_dataproc_pipeline_runs_the_cleanup_job_before_it_goes() {
    let (client, ns, pipelines) = setup("op-dataproc").await;
    create_token_secret(&client, &ns).await;
    let operator = Operator::start(&ns, None);
    create_dataproc_pipeline(&pipelines, None).await;

    pipelines
        .delete("cilvest", &DeleteParams::background())
        .await
        .expect("delete pipeline");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    let job = wait_until("the cleanup Job", 60, || async {
        jobs.get_opt("cilvest-dataproc-cleanup").await.ok()?
    })
    .await;
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert_eq!(
        args,
        [
            "dataproc-cleanup",
            "--project",
            "cilvest-prod",
            "--region",
            "asia-southeast2",
            "--namespace",
            &ns,
            "--pipeline",
            "cilvest"
        ]
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("cilvest-daily"),
        "runs with the daily job's Google identity"
    );
    assert!(
        pipelines.get_opt("cilvest").await.expect("get").is_some(),
        "the pipeline waits for the cleanup"
    );
    // kwok completes the Job's pod; then the finalizer goes and the pipeline is deleted.
    wait_until("the pipeline to be deleted after the cleanup", 90, || async {
        pipelines.get_opt("cilvest").await.ok()?.is_none().then_some(())
    })
    .await;
    // One cleanup run, which removes itself after a while instead of being recreated by a late reconcile.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let runs = pods
        .list(&kube::api::ListParams::default().labels("job-name=cilvest-dataproc-cleanup"))
        .await
        .expect("pods");
    assert_eq!(runs.items.len(), 1, "exactly one cleanup run");
    let job = jobs
        .get("cilvest-dataproc-cleanup")
        .await
        .expect("the finished cleanup Job");
    assert_eq!(job.spec.and_then(|s| s.ttl_seconds_after_finished), Some(300));
    assert!(!operator.logs().contains("panicked"));
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn the_skip_annotation_deletes_a_dataproc_pipeline_without_cleanup() {
    let (client, ns, pipelines) = setup("op-skip").await;
    create_token_secret(&client, &ns).await;
    let _operator = Operator::start(&ns, None);
    create_dataproc_pipeline(&pipelines, Some("cilvest.io/skip-dataproc-cleanup")).await;
    pipelines
        .delete("cilvest", &DeleteParams::background())
        .await
        .expect("delete pipeline");
    wait_until("the pipeline to be deleted", 60, || async {
        pipelines.get_opt("cilvest").await.ok()?.is_none().then_some(())
    })
    .await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    assert!(
        jobs.get_opt("cilvest-dataproc-cleanup").await.expect("get").is_none(),
        "no cleanup Job with the skip annotation"
    );
    delete_namespace(&client, &ns).await;
}
