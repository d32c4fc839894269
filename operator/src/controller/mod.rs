//! The controller: watch pipelines and their children, and run validate -> build -> apply -> status for each.
//!
//! `watches` caches the children (`compact` what of each, `index` by pipeline), `publish` writes the status,
//! `cleanup` holds the Dataproc finalizer.

mod arrived;
mod cleanup;
mod compact;
mod error;
mod index;
mod publish;
mod search_users;
mod watches;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        batch::v1::{CronJob, Job},
        core::v1::{ConfigMap, ObjectReference, Pod, Secret, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{Role, RoleBinding},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ApiResource,
    core::DeserializeGuard,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        reflector::{ObjectRef, store::Writer},
        watcher,
    },
};
use tracing::{info, instrument, warn};

use cilvest_crds::{CilvestPipeline, Engine, Pipeline};

use crate::{
    apply::{self, ApplyError, ExternalApis, Writes},
    build::{self, BuildOptions, kibana},
    health,
    meta::{self, MANAGER},
    status::{self, Problem},
    telemetry::Metrics,
};
use compact::Compact;
pub use error::Error;
use watches::{Stores, WatchBackoff};

/// How often an unchanged pipeline is looked at again, to copy its children's health into status.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again at an unhealthy pipeline (a failed run, a crash-looping worker) that no event may wake.
const HEALTH_RECHECK: Duration = Duration::from_secs(60);
/// How soon to look again at a pipeline blocked on something outside it (a Secret, a CRD).
const BLOCKED_RETRY: Duration = Duration::from_secs(10);
/// Held by Dataproc pipelines until their clusters are deleted: the only cleanup outside Kubernetes.
pub const DATAPROC_FINALIZER: &str = "cilvest.io/dataproc-cleanup";
/// The escape hatch: with this annotation set to "true" a pipeline is deleted without the Dataproc cleanup, e.g.
/// when the operator or the Google identity is gone.
pub const SKIP_CLEANUP_ANNOTATION: &str = "cilvest.io/skip-dataproc-cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub options: BuildOptions,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Consecutive failures per pipeline, for per-object exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<CilvestPipeline>>, u32>>,
    /// Children found undrifted although their digest differs (see `apply`).
    drift_memo: apply::DriftMemo,
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
            drift_memo: apply::DriftMemo::default(),
        }
    }
}

/// Pipelines reconciled at once. Unbounded, a start-up over hundreds of pipelines lists every pipeline's children at
/// the same moment, and the allocator keeps that peak as resident memory for the life of the process.
const RECONCILE_CONCURRENCY: u16 = 4;

/// Run the controller until `shutdown` resolves. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let (config_maps, config_map_events) = watches::cached::<ConfigMap>(&client, ns);
    let (service_accounts, service_account_events) = watches::cached::<ServiceAccount>(&client, ns);
    let (roles, role_events) = watches::cached::<Role>(&client, ns);
    let (role_bindings, role_binding_events) = watches::cached::<RoleBinding>(&client, ns);
    let (network_policies, network_policy_events) = watches::cached::<NetworkPolicy>(&client, ns);
    let (cron_jobs, cron_job_events) = watches::cached::<CronJob>(&client, ns);
    let (deployments, deployment_events) = watches::cached::<Deployment>(&client, ns);
    let (jobs, job_events) = watches::cached::<Job>(&client, ns);
    let (pods, pod_events) = watches::cached::<Pod>(&client, ns);
    let [topic, es, kibana, user] = externals(cilvest_crds::StrimziTopicVersion::V1);
    // Missing Strimzi or ECK CRDs make these watches fail and back off; the reconcile reports it as a condition.
    let (topics, topic_events) = watches::cached_dynamic(&client, ns, &topic);
    let (searches, search_events) = watches::cached_dynamic(&client, ns, &es);
    let (kibanas, kibana_events) = watches::cached_dynamic(&client, ns, &kibana);
    let (users, user_events) = watches::cached_dynamic(&client, ns, &user);
    let scope = Arc::new(Scope {
        ctx: ctx.clone(),
        stores: Stores {
            config_maps,
            service_accounts,
            roles,
            role_bindings,
            network_policies,
            cron_jobs,
            deployments,
            jobs,
            pods,
            externals: vec![
                (topic.clone(), topics),
                (es.clone(), searches),
                (kibana.clone(), kibanas),
                (user.clone(), users),
            ],
        },
    });
    let pipelines: Api<DeserializeGuard<CilvestPipeline>> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let metrics = ctx.metrics.clone();
    // The pipelines are cached without their `managedFields` (the status apply lists every status field there).
    let writer = Writer::default();
    let reader = writer.as_reader();
    let pipeline_events = watcher(pipelines, watcher::Config::default().page_size(watches::LIST_PAGE))
        .modify(|pipeline| pipeline.meta_mut().managed_fields = None)
        .reflect(writer)
        .applied_objects();
    // Every child is mapped to its pipeline by its pipeline label (the caches keep no owner references); daily
    // Jobs and pods, which belong to CronJobs, ReplicaSets and Jobs, carry it too.
    Controller::for_stream(pipeline_events, reader)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .trigger_backoff(WatchBackoff::default())
        .watches_stream(config_map_events, |child| by_label(&child))
        .watches_stream(service_account_events, |child| by_label(&child))
        .watches_stream(role_events, |child| by_label(&child))
        .watches_stream(role_binding_events, |child| by_label(&child))
        .watches_stream(network_policy_events, |child| by_label(&child))
        .watches_stream(cron_job_events, |child| by_label(&child))
        .watches_stream(deployment_events, |child| by_label(&child))
        .watches_stream_with(topic_events, |child| by_label(&child), topic)
        .watches_stream_with(search_events, |child| by_label(&child), es)
        .watches_stream_with(kibana_events, |child| by_label(&child), kibana)
        .watches_stream_with(user_events, |child| by_label(&child), user)
        .watches_stream(job_events, |job| by_label(&job))
        .watches_stream(pod_events, |pod| by_label(&pod))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, scope)
        .for_each(|result| {
            let metrics = metrics.clone();
            let memo_ctx = ctx.clone();
            async move {
                match result {
                    Ok(_) => {}
                    // A child or Job event for a pipeline that was just deleted: forget it.
                    Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                        memo_ctx
                            .drift_memo
                            .forget(object.namespace.as_deref().unwrap_or_default(), &object.name);
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

/// The pipeline a cached child names in its label.
fn by_label<K: Resource>(child: &Compact<K>) -> Option<ObjectRef<DeserializeGuard<CilvestPipeline>>> {
    Some(ObjectRef::new(child.pipeline()?).within(child.namespace().as_deref()?))
}

/// The external kinds a pipeline may own, with the Strimzi kinds at `topic_version`.
fn externals(topic_version: cilvest_crds::StrimziTopicVersion) -> [ApiResource; 4] {
    [
        meta::kafka_topic_resource(topic_version),
        meta::elasticsearch_resource(),
        meta::kibana_resource(),
        meta::kafka_user_resource(topic_version),
    ]
}

/// One controller's view: the context every controller shares, and the caches of this controller's scope.
struct Scope {
    ctx: Arc<Context>,
    stores: Stores,
}

#[instrument(skip_all, fields(pipeline = %guard.name_any(), namespace = guard.namespace().unwrap_or_default()))]
async fn reconcile(guard: Arc<DeserializeGuard<CilvestPipeline>>, scope: Arc<Scope>) -> Result<Action, Error> {
    let ctx = &scope.ctx;
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = match &guard.0 {
        Ok(pipeline) => reconcile_pipeline(pipeline, ctx, &scope.stores).await,
        Err(invalid) => publish::undecodable(&invalid.metadata, &invalid.error, ctx).await,
    };
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        let key = ObjectRef::from_obj(guard.as_ref());
        ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }
    result
}

fn error_policy(guard: Arc<DeserializeGuard<CilvestPipeline>>, error: &Error, scope: Arc<Scope>) -> Action {
    let ctx = &scope.ctx;
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

async fn reconcile_pipeline(pipeline: &CilvestPipeline, ctx: &Context, stores: &Stores) -> Result<Action, Error> {
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
            cleanup::clean_up_dataproc(pipeline, ctx).await
        } else {
            Ok(Action::await_change())
        };
    }
    let wants_finalizer =
        pipeline.spec.transform.dataproc.is_some() && pipeline.spec.transform.engine == Engine::Dataproc;
    if wants_finalizer != has_finalizer {
        cleanup::set_finalizer(pipeline, ctx, wants_finalizer).await?;
    }

    let parsed = match Pipeline::new(&pipeline.spec) {
        Ok(parsed) => parsed,
        Err(invalid) => {
            let problem = Problem {
                reason: "InvalidSpec".to_owned(),
                message: invalid.to_string(),
            };
            publish::status(pipeline, ctx, keywords, Some(&problem), Vec::new(), &[], None).await?;
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

    let (live, served) = stores
        .children(
            &ctx.client,
            &namespace,
            &name,
            &externals(pipeline.spec.kafka.topic_api_version),
        )
        .await?;
    let served = ExternalApis {
        kafka_topic: served.first().copied().unwrap_or(false),
        elasticsearch: served.get(1).copied().unwrap_or(false),
        kibana: served.get(2).copied().unwrap_or(false),
        kafka_user: served.get(3).copied().unwrap_or(false),
    };

    search_users::ensure(pipeline, ctx).await?;
    let resources = build::build(pipeline, &parsed, &ctx.options);
    let wants_search = resources.elasticsearch.is_some();
    let applied = apply::apply_all(&ctx.client, &namespace, resources, &live, served, &ctx.drift_memo).await;
    let (writes, problem) = match applied {
        Ok(writes) => (writes, problem),
        Err(ApplyError::MissingCrd { kind, api_version }) => {
            let (reason, operator) = match kind.as_str() {
                "KafkaTopic" | "KafkaUser" => ("StrimziNotInstalled", "Strimzi"),
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
    ctx.metrics.drift_fetches.inc_by(writes.fetched as u64);
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
    let children = status::child_health(&live, &name, wants_search);
    let pods = stores.pods(&namespace, &name).await?;
    // The daily runs (made by the CronJob) and the Kibana dashboard import, told apart by their component label.
    let (imports, jobs): (Vec<_>, Vec<_>) = stores
        .jobs(&namespace, &name)
        .await?
        .into_iter()
        .partition(|job| job.labels().get(meta::COMPONENT_LABEL).map(String::as_str) == Some(kibana::COMPONENT));
    let runs = status::newest_runs(&jobs, &pods);
    let last_run = status::headline(&runs).or_else(|| previous.and_then(|s| s.last_run.clone()));
    // A blocked pipeline (spec, Secret, CRD) waits for a person; otherwise its running parts may still be unhealthy.
    let blocked = problem.is_some();
    let usage = live
        .x_usage
        .as_ref()
        .and_then(cilvest_crds::usage::UsageRecord::from_data);
    let cron_job = live.cron_jobs.iter().find(|c| c.name_any() == format!("{name}-daily"));
    let problem = problem.or_else(|| {
        health::problem(&health::Observed {
            now: Timestamp::now(),
            suspended: pipeline.spec.schedule.suspend,
            last_run: last_run.as_ref(),
            cron_job,
            deployments: &live.deployments,
            pods: &pods,
            usage: usage.as_ref(),
            kibana_import: imports.first(),
        })
    });
    ctx.metrics.record_health(
        &format!("{namespace}/{name}"),
        health::alerting(
            pipeline.spec.schedule.suspend,
            problem.as_ref(),
            last_run.as_ref(),
            cron_job,
        ),
    );
    if let Some(problem) = &problem
        && is_new(previous, problem)
    {
        event(ctx, pipeline, EventType::Warning, &problem.reason, &problem.message).await;
    }
    publish::status(
        pipeline,
        ctx,
        keywords,
        problem.as_ref(),
        children,
        &runs,
        live.x_usage.as_ref(),
    )
    .await?;
    Ok(if blocked {
        Action::requeue(BLOCKED_RETRY)
    } else if problem.is_some() {
        Action::requeue(HEALTH_RECHECK)
    } else {
        Action::requeue(RESYNC)
    })
}

/// Whether `problem` is not what the pipeline's Degraded condition already says: one Warning Event per problem.
fn is_new(previous: Option<&cilvest_crds::CilvestPipelineStatus>, problem: &Problem) -> bool {
    !previous.into_iter().flat_map(|s| s.conditions.iter()).any(|c| {
        c.type_ == "Degraded" && c.status == "True" && c.reason == problem.reason && c.message == problem.message
    })
}

pub(crate) async fn event(ctx: &Context, pipeline: &CilvestPipeline, type_: EventType, reason: &str, note: &str) {
    event_about(ctx, pipeline, type_, reason, note, None).await;
}

pub(crate) async fn event_about(
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
