//! The one cleanup outside Kubernetes: a Dataproc pipeline holds a finalizer until a Job has deleted its clusters.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};

use cilvest_crds::CilvestPipeline;

use super::{BLOCKED_RETRY, Context, DATAPROC_FINALIZER, Error, SKIP_CLEANUP_ANNOTATION, event};
use crate::{apply, build, meta::MANAGER};

/// Add or remove the Dataproc finalizer. The resourceVersion makes this a no-op conflict, not a lost update, if
/// someone else changed the finalizers meanwhile.
pub async fn set_finalizer(pipeline: &CilvestPipeline, ctx: &Context, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = pipeline
        .finalizers()
        .iter()
        .filter(|f| *f != DATAPROC_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(DATAPROC_FINALIZER.to_owned());
    }
    let name = pipeline.name_any();
    let api: Api<CilvestPipeline> = Api::namespaced(ctx.client.clone(), &pipeline.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": pipeline.resource_version()}});
    let params = PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Cleanup { name, source })?;
    Ok(())
}

/// Run the cleanup Job for a Dataproc pipeline being deleted, and release it once the Job has succeeded.
pub async fn clean_up_dataproc(pipeline: &CilvestPipeline, ctx: &Context) -> Result<Action, Error> {
    let name = pipeline.name_any();
    let err = |source| Error::Cleanup {
        name: name.clone(),
        source,
    };
    let skip = pipeline
        .annotations()
        .get(SKIP_CLEANUP_ANNOTATION)
        .is_some_and(|v| v == "true");
    let Some(job) = build::dataproc_cleanup_job(pipeline, &ctx.options).filter(|_| !skip) else {
        if skip {
            event(
                ctx,
                pipeline,
                EventType::Warning,
                "DataprocCleanupSkipped",
                "deleted without deleting Dataproc clusters",
            )
            .await;
        }
        set_finalizer(pipeline, ctx, false).await?;
        return Ok(Action::await_change());
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &pipeline.namespace().unwrap_or_default());
    let job_name = build::dataproc_cleanup_name(&name);
    let Some(live) = jobs.get_opt(&job_name).await.map_err(err)? else {
        let hash = crate::meta::fingerprint(&job);
        apply::apply(&jobs, job, hash).await.map_err(err)?;
        event(
            ctx,
            pipeline,
            EventType::Normal,
            "DataprocCleanup",
            &format!("started job {job_name} to delete the pipeline's Dataproc clusters"),
        )
        .await;
        return Ok(Action::requeue(BLOCKED_RETRY));
    };
    let finished = |kind: &str| {
        live.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
    };
    if finished("Complete") {
        // The Job stays until its ttlSecondsAfterFinished: a late reconcile from a lagging cache then still finds
        // it complete, instead of starting a second one.
        set_finalizer(pipeline, ctx, false).await?;
        Ok(Action::await_change())
    } else if finished("Failed") {
        let note = format!(
            "job {job_name} could not delete the Dataproc clusters (they also delete themselves after spec.transform.dataproc.maxLifetime); \
             to delete the pipeline anyway, annotate it {SKIP_CLEANUP_ANNOTATION}=true"
        );
        event(ctx, pipeline, EventType::Warning, "DataprocCleanupFailed", &note).await;
        Ok(Action::requeue(Duration::from_secs(60)))
    } else {
        Ok(Action::requeue(BLOCKED_RETRY))
    }
}
