//! The controller: watch pipelines and their children, and run validate -> build -> apply -> status for each.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::{CronJob, Job},
    core::v1::{ConfigMap, ObjectReference, Pod, Secret},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    core::{DeserializeGuard, ObjectMeta},
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
        utils::Backoff,
        watcher,
    },
};
use tracing::{info, instrument, warn};

use cilvest_crds::{CilvestPipeline, CilvestPipelineStatus, Engine, Pipeline};

use crate::{
    apply::{self, ApplyError, ExternalApis, Writes},
    build::{self, BuildOptions},
    meta::{self, MANAGER, PIPELINE_LABEL},
    status::{self, Problem},
    telemetry::Metrics,
};

/// How often an unchanged pipeline is looked at again, to copy its children's health into status.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again at a pipeline blocked on something outside it (a Secret, a CRD).
const BLOCKED_RETRY: Duration = Duration::from_secs(10);
/// Held by Dataproc pipelines until their clusters are deleted: the only cleanup outside Kubernetes.
pub const DATAPROC_FINALIZER: &str = "cilvest.io/dataproc-cleanup";
/// The escape hatch: with this annotation set to "true" a pipeline is deleted without the Dataproc cleanup, e.g.
/// when the operator or the Google identity is gone.
pub const SKIP_CLEANUP_ANNOTATION: &str = "cilvest.io/skip-dataproc-cleanup";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("failed to read secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to clean up the dataproc clusters of {name}: {source}")]
    Cleanup {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read the daily jobs: {source}")]
    Daily {
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the status of {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Low-cardinality category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply(ApplyError::Apply { .. }) => "ApplyFailed",
            Error::Apply(ApplyError::List { .. }) => "ListFailed",
            Error::Apply(ApplyError::Delete { .. }) => "DeleteFailed",
            Error::Apply(ApplyError::MissingCrd { .. }) => "CrdMissing",
            Error::Secret { .. } => "SecretReadFailed",
            Error::Daily { .. } => "JobReadFailed",
            Error::Cleanup { .. } => "CleanupFailed",
            Error::Status { .. } => "StatusFailed",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub options: BuildOptions,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Consecutive failures per pipeline, for per-object exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<CilvestPipeline>>, u32>>,
}

impl Context {
    pub fn new(client: Client, options: BuildOptions, metrics: Metrics, instance: String) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_owned(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            metrics,
            failures: Mutex::default(),
        }
    }
}

/// Run the controller until `shutdown` resolves. `namespace` limits it to one namespace.
/// The backoff of a controller's watches. kube-runtime puts one backoff behind all of a controller's watches
/// together, and each watch's stale error from an API server outage costs a full wait once the server is back: with
/// its default (30 s, jittered up to a minute) and eight watches, events flowed again only minutes after an API server
/// restart (`tests/faults.rs`). A cap of a few seconds bounds that to well under a minute.
#[derive(Debug, Clone, Copy)]
struct WatchBackoff {
    next: Duration,
}

const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_FIRST,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(WATCH_BACKOFF_MAX);
        Some(current)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_FIRST;
    }
}

/// Pipelines reconciled at once. Unbounded, a start-up over hundreds of pipelines lists every pipeline's children at
/// the same moment, and the allocator keeps that peak as resident memory for the life of the process.
const RECONCILE_CONCURRENCY: u16 = 4;

pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let dynamic = |resource: &kube::api::ApiResource| -> Api<DynamicObject> {
        match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
            None => Api::all_with(client.clone(), resource),
        }
    };
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let topic = meta::kafka_topic_resource(cilvest_crds::StrimziTopicVersion::V1);
    let es = meta::elasticsearch_resource();
    let kibana = meta::kibana_resource();
    let pipelines: Api<DeserializeGuard<CilvestPipeline>> = scoped(&client, namespace.as_deref());
    let metrics = ctx.metrics.clone();
    Controller::new(pipelines, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .trigger_backoff(WatchBackoff::default())
        .owns(scoped::<Deployment>(&client, namespace.as_deref()), children.clone())
        .owns(scoped::<CronJob>(&client, namespace.as_deref()), children.clone())
        .owns(scoped::<ConfigMap>(&client, namespace.as_deref()), children.clone())
        // Missing Strimzi or ECK CRDs make these watches fail and back off; the reconcile reports it as a condition.
        .owns_with(dynamic(&topic), topic.clone(), children.clone())
        .owns_with(dynamic(&es), es.clone(), children.clone())
        .owns_with(dynamic(&kibana), kibana.clone(), children.clone())
        // Daily Jobs belong to the CronJob, not to the pipeline: map them back by label.
        .watches(scoped::<Job>(&client, namespace.as_deref()), children, |job| {
            let pipeline = job.labels().get(PIPELINE_LABEL)?;
            Some(ObjectRef::new(pipeline).within(job.namespace().as_deref()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let metrics = metrics.clone();
            async move {
                match result {
                    Ok(_) => {}
                    // A child or Job event for a pipeline that was just deleted: forget it.
                    Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                        metrics.forget(&format!(
                            "{}/{}",
                            object.namespace.as_deref().unwrap_or_default(),
                            object.name
                        ));
                        tracing::debug!(%object, "event for a pipeline that no longer exists");
                    }
                    Err(err) => warn!(error = %err, "reconcile loop error"),
                }
            }
        })
        .await;
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[instrument(skip_all, fields(pipeline = %guard.name_any(), namespace = guard.namespace().unwrap_or_default()))]
async fn reconcile(guard: Arc<DeserializeGuard<CilvestPipeline>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = match &guard.0 {
        Ok(pipeline) => reconcile_pipeline(pipeline, &ctx).await,
        Err(invalid) => reconcile_undecodable(&invalid.metadata, &invalid.error, &ctx).await,
    };
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        let key = ObjectRef::from_obj(guard.as_ref());
        ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }
    result
}

fn error_policy(guard: Arc<DeserializeGuard<CilvestPipeline>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .get_or_create(&vec![("category".to_owned(), error.category().to_owned())])
        .inc();
    warn!(pipeline = %guard.name_any(), category = error.category(), error = %error, "reconcile failed");
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let count = failures.entry(ObjectRef::from_obj(guard.as_ref())).or_insert(0);
    *count = count.saturating_add(1);
    // 1 s, 2 s, 4 s ... capped at 5 minutes.
    Action::requeue(Duration::from_secs(1u64 << (*count - 1).min(8)).min(RESYNC))
}

async fn reconcile_pipeline(pipeline: &CilvestPipeline, ctx: &Context) -> Result<Action, Error> {
    let name = pipeline.name_any();
    let namespace = pipeline.namespace().unwrap_or_default();
    let previous = pipeline.status.as_ref();
    let keywords = pipeline
        .spec
        .keywords
        .iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(",");

    let has_finalizer = pipeline.finalizers().iter().any(|f| f == DATAPROC_FINALIZER);
    if pipeline.meta().deletion_timestamp.is_some() {
        return if has_finalizer {
            clean_up_dataproc(pipeline, ctx).await
        } else {
            Ok(Action::await_change())
        };
    }
    let wants_finalizer =
        pipeline.spec.transform.dataproc.is_some() && pipeline.spec.transform.engine == Engine::Dataproc;
    if wants_finalizer != has_finalizer {
        set_finalizer(pipeline, ctx, wants_finalizer).await?;
    }

    let parsed = match Pipeline::new(&pipeline.spec) {
        Ok(parsed) => parsed,
        Err(invalid) => {
            let problem = Problem {
                reason: "InvalidSpec".to_owned(),
                message: invalid.to_string(),
            };
            publish_status(pipeline, ctx, keywords, Some(&problem), Vec::new(), None, None).await?;
            // Nothing will change until the spec does.
            return Ok(Action::await_change());
        }
    };

    let secret = &pipeline.spec.source.x.bearer_token_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_exists = secrets
        .get_metadata_opt(&secret.name)
        .await
        .map_err(|source| Error::Secret {
            name: secret.name.clone(),
            source,
        })?;
    let problem = secret_exists.is_none().then(|| Problem {
        reason: "SecretMissing".to_owned(),
        message: format!(
            "secret {} (key {}) referenced by spec.source.x.bearerTokenSecretRef does not exist in namespace {namespace}",
            secret.name, secret.key
        ),
    });

    let topic_version = pipeline.spec.kafka.topic_api_version;
    let externals = [
        (meta::kafka_topic_resource(topic_version), true),
        (meta::elasticsearch_resource(), true),
        (meta::kibana_resource(), true),
    ];
    let (live, served) = apply::list_children(&ctx.client, &namespace, &name, &externals).await?;
    let served = ExternalApis {
        kafka_topic: served.first().copied().unwrap_or(false),
        elasticsearch: served.get(1).copied().unwrap_or(false),
        kibana: served.get(2).copied().unwrap_or(false),
    };

    let resources = build::build(pipeline, &parsed, &ctx.options);
    let wants_search = resources.elasticsearch.is_some();
    let (writes, problem) = match apply::apply_all(&ctx.client, &namespace, resources, &live, served).await {
        Ok(writes) => (writes, problem),
        Err(ApplyError::MissingCrd { kind, api_version }) => {
            let (reason, operator) = match kind.as_str() {
                "KafkaTopic" => ("StrimziNotInstalled", "Strimzi"),
                _ => ("EckNotInstalled", "ECK"),
            };
            let missing = Problem {
                reason: reason.to_owned(),
                message: format!(
                    "the {kind} API ({api_version}) is not served by this cluster: install {operator} or change the pipeline"
                ),
            };
            (Writes::default(), Some(missing))
        }
        Err(err) => return Err(err.into()),
    };
    for restored in &writes.restored {
        let note = format!(
            "restored {} {}: {} had drifted",
            restored.kind, restored.name, restored.field
        );
        info!(%note, "restored a drifted child");
        // The child as the Event's related object: one Event per child, rather than one series for them all.
        let child = ObjectReference {
            api_version: Some(restored.api_version.clone()),
            kind: Some(restored.kind.clone()),
            name: Some(restored.name.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectReference::default()
        };
        event_about(ctx, pipeline, EventType::Warning, "DriftRestored", &note, Some(child)).await;
    }
    if writes.applied + writes.deleted > 0 {
        info!(applied = writes.applied, deleted = writes.deleted, "children updated");
        event(
            ctx,
            pipeline,
            EventType::Normal,
            "Applied",
            &format!("applied {} and deleted {} children", writes.applied, writes.deleted),
        )
        .await;
    }
    if let Some(problem) = &problem
        && previous.and_then(|s| s.phase.as_deref()) != Some(status::DEGRADED)
    {
        event(ctx, pipeline, EventType::Warning, &problem.reason, &problem.message).await;
    }

    let children = status::child_health(&live, &name, wants_search);
    let last_run = daily_last_run(ctx, &namespace, &name).await?;
    publish_status(
        pipeline,
        ctx,
        keywords,
        problem.as_ref(),
        children,
        last_run,
        live.x_usage.as_ref(),
    )
    .await?;
    Ok(if problem.is_some() {
        Action::requeue(BLOCKED_RETRY)
    } else {
        Action::requeue(RESYNC)
    })
}

/// A pipeline that does not even decode: say so in its status, and wait for it to change.
async fn reconcile_undecodable(meta: &ObjectMeta, error: &str, ctx: &Context) -> Result<Action, Error> {
    let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
        return Ok(Action::await_change());
    };
    let api: Api<CilvestPipeline> = Api::namespaced(ctx.client.clone(), namespace);
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
        None,
    );
    let patch = serde_json::json!({"status": status});
    api.patch_status(name, &status_params(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status {
            name: name.clone(),
            source,
        })?;
    Ok(Action::await_change())
}

async fn publish_status(
    pipeline: &CilvestPipeline,
    ctx: &Context,
    keywords: String,
    problem: Option<&Problem>,
    children: Vec<cilvest_crds::ChildStatus>,
    last_run: Option<cilvest_crds::DailyRun>,
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
        last_run,
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
    let key = format!("{}/{}", pipeline.namespace().unwrap_or_default(), pipeline.name_any());
    ctx.metrics
        .record_phase(&key, new.phase.as_deref().unwrap_or(status::PENDING));
    if !status::changed(previous, &new) {
        return Ok(());
    }
    let name = pipeline.name_any();
    let api: Api<CilvestPipeline> = Api::namespaced(ctx.client.clone(), &pipeline.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": new});
    api.patch_status(&name, &status_params(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status { name, source })?;
    Ok(())
}

/// Add or remove the Dataproc finalizer. The resourceVersion makes this a no-op conflict, not a lost update, if
/// someone else changed the finalizers meanwhile.
async fn set_finalizer(pipeline: &CilvestPipeline, ctx: &Context, present: bool) -> Result<(), Error> {
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
    api.patch(&name, &status_params(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Cleanup { name, source })?;
    Ok(())
}

/// Run the cleanup Job for a Dataproc pipeline being deleted, and release it once the Job has succeeded.
async fn clean_up_dataproc(pipeline: &CilvestPipeline, ctx: &Context) -> Result<Action, Error> {
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
        let hash = apply::fingerprint(&job);
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

/// The newest finished daily Job of `pipeline` and its pods' termination messages.
async fn daily_last_run(
    ctx: &Context,
    namespace: &str,
    pipeline: &str,
) -> Result<Option<cilvest_crds::DailyRun>, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&meta::children_selector(pipeline));
    let jobs = jobs
        .list(&params)
        .await
        .map_err(|source| Error::Daily { source })?
        .items;
    if jobs.is_empty() {
        return Ok(None);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pods = pods
        .list(&params)
        .await
        .map_err(|source| Error::Daily { source })?
        .items;
    Ok(status::last_run(&jobs, &pods))
}

async fn event(ctx: &Context, pipeline: &CilvestPipeline, type_: EventType, reason: &str, note: &str) {
    event_about(ctx, pipeline, type_, reason, note, None).await;
}

async fn event_about(
    ctx: &Context,
    pipeline: &CilvestPipeline,
    type_: EventType,
    reason: &str,
    note: &str,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: related,
    };
    // Events are best effort: failing to record one must not fail the reconcile.
    if let Err(err) = ctx.recorder.publish(&event, &pipeline.object_ref(&())).await {
        warn!(error = %err, "failed to publish event");
    }
}

/// Status writes are merge patches under our field manager, so `managedFields` says who wrote them.
fn status_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    }
}
