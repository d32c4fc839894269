//! Writing the status: computed as one value (`crate::status`) and written with one server-side apply of the
//! status subresource, so the operator owns every status field it sets and a field it stops setting goes away.

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::ObjectMeta,
    runtime::controller::Action,
};

use cilvest_crds::{CilvestPipeline, CilvestPipelineStatus};

use super::{Context, Error};
use crate::{
    meta::MANAGER,
    status::{self, Problem},
};

/// Compute the pipeline's status and write it when a reader would see a difference.
pub async fn status(
    pipeline: &CilvestPipeline,
    ctx: &Context,
    keywords: String,
    problem: Option<&Problem>,
    children: Vec<cilvest_crds::ChildStatus>,
    runs: &[cilvest_crds::DailyRun],
    x_usage: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), Error> {
    let previous = pipeline.status.as_ref();
    let mut new: CilvestPipelineStatus = status::compute(
        previous,
        pipeline.meta().generation,
        keywords,
        pipeline.spec.schedule.suspend,
        problem,
        children,
        runs,
    );
    // The producer's usage record: status.xUsage and the XBudget condition (kept as they were until it exists).
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (usage, budget) =
        crate::x_usage::status(&pipeline.spec, x_usage, previous_conditions, pipeline.meta().generation);
    if usage.is_some() {
        new.x_usage = usage;
    }
    if let Some(condition) = budget.or_else(|| {
        previous_conditions
            .iter()
            .find(|c| c.type_ == crate::x_usage::CONDITION)
            .cloned()
    }) {
        new.conditions.push(condition);
    }
    // The Google part of the bill only moves with the spec: priced once per generation.
    new.google_cost = match previous {
        Some(p) if p.observed_generation == pipeline.meta().generation && p.google_cost.is_some() => {
            p.google_cost.clone()
        }
        _ => crate::cost::profiles::google_status(pipeline),
    };
    let key = format!("{}/{}", pipeline.namespace().unwrap_or_default(), pipeline.name_any());
    ctx.metrics
        .record_phase(&key, new.phase.as_deref().unwrap_or(status::PENDING));
    if !status::changed(previous, &new) {
        return Ok(());
    }
    write(
        ctx,
        &pipeline.namespace().unwrap_or_default(),
        &pipeline.name_any(),
        &new,
    )
    .await
}

/// A pipeline that does not even decode: say so in its status, and wait for it to change.
pub async fn undecodable(meta: &ObjectMeta, error: &str, ctx: &Context) -> Result<Action, Error> {
    let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
        return Ok(Action::await_change());
    };
    let problem = Problem {
        reason: "InvalidSpec".to_owned(),
        message: format!("the pipeline does not decode: {error}"),
    };
    let status = status::compute(
        None,
        meta.generation,
        String::new(),
        false,
        Some(&problem),
        Vec::new(),
        &[],
    );
    write(ctx, namespace, name, &status).await?;
    Ok(Action::await_change())
}

/// The one status write: server-side apply of the whole computed status, as the operator's field manager.
async fn write(ctx: &Context, namespace: &str, name: &str, status: &CilvestPipelineStatus) -> Result<(), Error> {
    let api: Api<CilvestPipeline> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": CilvestPipeline::api_version(&()),
        "kind": CilvestPipeline::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(|source| Error::Status {
            name: name.to_owned(),
            source,
        })?;
    Ok(())
}
