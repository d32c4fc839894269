//! The controller's watches and caches: one reflector per child kind, fed by the same watch that triggers the
//! reconciles, so that a reconcile reads its children from memory instead of listing them from the API server, and
//! finds them through an index by pipeline ([`super::index`]).
//!
//! What is cached is what the reconcile reads ([`Compact`]): of each child, its index, the digest of the fields the
//! operator owns, and what status reads, decoded per pipeline when a reconcile reads them. A Strimzi or ECK kind
//! whose CRD is missing has a watch that fails and backs off; until its cache has listed once, the reconcile asks the
//! API server (which is also how it finds out, from the 404, that the kind is not served).

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        batch::v1::{CronJob, Job},
        core::v1::{ConfigMap, Pod, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams},
    runtime::{WatchStreamExt, reflector::store::Writer, utils::Backoff, watcher},
};
use serde::de::DeserializeOwned;

use super::{arrived::Watched, compact::Compact, index::Cached};
use crate::{
    apply::{ApplyError, LiveChildren},
    build::kibana::COMPONENT,
    meta::{MANAGER, children_selector},
};

/// The backoff of each watch. kube-runtime's default (30 s, jittered up to a minute) made events flow again only
/// minutes after an API server restart (`tests/it/faults.rs`); a cap of a few seconds bounds that to well under a minute.
#[derive(Debug, Clone, Copy)]
pub struct WatchBackoff {
    next: Duration,
}

const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How long a reconcile waits for a cache of a built-in kind to list for the first time.
const CACHE_WAIT: Duration = Duration::from_secs(30);

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

// The kinds the caches hold (the `Stores` below), with their type as a list's items leave it out.
macro_rules! watched {
    ($($kind:ty),*) => {$(
        impl Watched for $kind {
            const TYPE: Option<(&'static str, &'static str)> =
                Some((<$kind as k8s_openapi::Resource>::API_VERSION, <$kind as k8s_openapi::Resource>::KIND));
        }
    )*};
}

watched!(
    ConfigMap,
    ServiceAccount,
    Role,
    RoleBinding,
    NetworkPolicy,
    CronJob,
    Deployment,
    Job,
    Pod
);

impl Watched for DynamicObject {
    const TYPE: Option<(&'static str, &'static str)> = None;
}

/// Objects per page of a watch's initial list. kube-runtime's default (500) holds 500 objects' JSON at once per
/// kind, every kind at the same moment after a restart, and the allocator keeps that peak as resident memory long
/// after the pages are dropped (BENCHMARKS.md, operator section 4b).
pub const LIST_PAGE: u32 = 50;

/// The watch configuration of every child kind: only what this operator manages.
pub fn children_config() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={MANAGER}"))
        .page_size(LIST_PAGE)
}

/// A cached watch of a built-in kind in `namespace` (or all namespaces): the cache, and the stream of touched
/// objects that must be polled (by the controller) to fill it.
pub fn cached<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Cached<K>,
    impl Stream<Item = Result<Compact<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Watched + 'static,
{
    let api: Api<Compact<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    reflect(api, Writer::default(), K::kind(&()).into_owned())
}

/// A cached watch of an external kind (KafkaTopic, Elasticsearch, Kibana, KafkaUser).
pub fn cached_dynamic(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> (
    Cached<DynamicObject>,
    impl Stream<Item = Result<Compact<DynamicObject>, watcher::Error>> + Send + 'static,
) {
    let api: Api<Compact<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    reflect(api, Writer::new(resource.clone()), resource.kind.clone())
}

/// The watch of one kind, with its own backoff, feeding the index and then `writer`. Its errors stop here: kube-runtime's controller
/// backs off its whole trigger stream on each error it sees, so after an API server restart the twelve watches'
/// "resource version too old" errors (one each, as each re-lists) paused every trigger for 4 s apiece, one after the
/// other: 80 to 90 s before a new pipeline was reconciled (`tests/it/faults.rs`). Each watch already waits by its own
/// backoff before it retries.
fn reflect<K>(
    api: Api<Compact<K>>,
    writer: Writer<Compact<K>>,
    kind: String,
) -> (
    Cached<K>,
    impl Stream<Item = Result<Compact<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Watched + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let cached = Cached {
        store: writer.as_reader(),
        index: Arc::default(),
    };
    let index = cached.index.clone();
    let stream = watcher(api, children_config())
        .backoff(WatchBackoff::default())
        .map_ok(|event| event.modify(Compact::forget_version))
        .inspect_ok(move |event| index.observe(event))
        .reflect(writer)
        .touched_objects()
        .filter_map(move |touched| {
            let kind = kind.clone();
            async move {
                match touched {
                    Ok(object) => Some(Ok(object)),
                    Err(error) => {
                        tracing::warn!(%kind, %error, "watch failed; it retries after its backoff");
                        None
                    }
                }
            }
        });
    (cached, stream)
}

/// Every cache a reconcile reads.
#[derive(Clone)]
pub struct Stores {
    pub config_maps: Cached<ConfigMap>,
    pub service_accounts: Cached<ServiceAccount>,
    pub roles: Cached<Role>,
    pub role_bindings: Cached<RoleBinding>,
    pub network_policies: Cached<NetworkPolicy>,
    pub cron_jobs: Cached<CronJob>,
    pub deployments: Cached<Deployment>,
    pub jobs: Cached<Job>,
    /// The pods of the workers and of the daily Jobs (they carry the children's labels).
    pub pods: Cached<Pod>,
    /// KafkaTopic, Elasticsearch, Kibana, KafkaUser, in the order of [`crate::controller::externals`].
    pub externals: Vec<(ApiResource, Cached<DynamicObject>)>,
}

impl Stores {
    /// The children of `pipeline` in `namespace`, and which of `externals` this cluster serves.
    pub async fn children(
        &self,
        client: &Client,
        namespace: &str,
        pipeline: &str,
        externals: &[ApiResource],
    ) -> Result<(LiveChildren, Vec<bool>), ApplyError> {
        let mut live = LiveChildren::default();
        let config_maps = mine(&self.config_maps, namespace, pipeline).await?;
        let usage_name = cilvest_crds::usage::usage_configmap_name(pipeline);
        if let Some(usage) = config_maps.iter().find(|map| map.name_any() == usage_name) {
            live.x_usage = decode(usage)?.data;
        }
        record(&mut live, &config_maps);
        record(&mut live, &mine(&self.roles, namespace, pipeline).await?);
        record(&mut live, &mine(&self.role_bindings, namespace, pipeline).await?);
        record(&mut live, &mine(&self.network_policies, namespace, pipeline).await?);
        record(&mut live, &mine(&self.service_accounts, namespace, pipeline).await?);
        let cron_jobs = mine(&self.cron_jobs, namespace, pipeline).await?;
        record(&mut live, &cron_jobs);
        live.cron_jobs = cron_jobs.iter().map(|c| decode(c)).collect::<Result<_, _>>()?;
        let deployments = mine(&self.deployments, namespace, pipeline).await?;
        record(&mut live, &deployments);
        live.deployments = deployments.iter().map(|d| decode(d)).collect::<Result<_, _>>()?;
        // Of the Jobs, only the Kibana import is the pipeline's child; the daily runs belong to the CronJob.
        let mut imports = mine(&self.jobs, namespace, pipeline).await?;
        imports.retain(|job| job.component() == Some(COMPONENT));
        record(&mut live, &imports);
        let mut served = Vec::new();
        for resource in externals {
            let cache = self
                .externals
                .iter()
                .find(|(cached, _)| cached.group == resource.group && cached.kind == resource.kind)
                .map(|(_, cached)| cached)
                .filter(|cached| {
                    cached
                        .store
                        .wait_until_ready()
                        .now_or_never()
                        .is_some_and(|r| r.is_ok())
                });
            let cached = match cache {
                Some(cached) => Some(
                    cached
                        .of(namespace, pipeline, resource)
                        .iter()
                        .map(|o| o.as_ref().clone())
                        .collect(),
                ),
                None => list_dynamic(client, namespace, pipeline, resource).await?,
            };
            served.push(cached.is_some());
            for child in cached.into_iter().flatten() {
                let object = child.object().map_err(|source| ApplyError::Cached {
                    kind: resource.kind.clone(),
                    name: child.name_any(),
                    source,
                })?;
                live.record_external(&resource.kind, object, child.applied().clone());
            }
        }
        Ok((live, served))
    }

    /// The pods of `pipeline`'s workers and daily Jobs.
    pub async fn pods(&self, namespace: &str, pipeline: &str) -> Result<Vec<Pod>, ApplyError> {
        mine(&self.pods, namespace, pipeline)
            .await?
            .iter()
            .map(|pod| decode(pod))
            .collect()
    }

    /// The daily Jobs of `pipeline`.
    pub async fn jobs(&self, namespace: &str, pipeline: &str) -> Result<Vec<Job>, ApplyError> {
        mine(&self.jobs, namespace, pipeline)
            .await?
            .iter()
            .map(|job| decode(job))
            .collect()
    }
}

/// A cached child of a built-in kind, decoded.
fn decode<K: Resource<DynamicType = ()> + DeserializeOwned>(cached: &Compact<K>) -> Result<K, ApplyError> {
    cached.object().map_err(|source| ApplyError::Cached {
        kind: K::kind(&()).into_owned(),
        name: cached.name_any(),
        source,
    })
}

/// Remember cached children of a built-in kind for the drift and orphan checks.
fn record<K: Resource<DynamicType = ()>>(live: &mut LiveChildren, cached: &[Arc<Compact<K>>]) {
    let kind = K::kind(&());
    for child in cached {
        live.record(&kind, child.name_any(), child.applied().clone());
    }
}

/// The cached objects of `pipeline`, once the cache has listed for the first time.
async fn mine<K>(cached: &Cached<K>, namespace: &str, pipeline: &str) -> Result<Vec<Arc<Compact<K>>>, ApplyError>
where
    K: Resource<DynamicType = ()> + 'static,
{
    let kind = K::kind(&()).into_owned();
    match tokio::time::timeout(CACHE_WAIT, cached.store.wait_until_ready()).await {
        // By name, as a LIST returns them: status lists children in the order found, so another order would
        // rewrite an unchanged status.
        Ok(Ok(())) => Ok(cached.of(namespace, pipeline, &())),
        _ => Err(ApplyError::NotCached { kind }),
    }
}

/// A fresh list of an external kind whose cache is not filled; `None` when the API server does not serve it.
async fn list_dynamic(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    resource: &ApiResource,
) -> Result<Option<Vec<Compact<DynamicObject>>>, ApplyError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    match api
        .list(&ListParams::default().labels(&children_selector(pipeline)))
        .await
    {
        Ok(list) => Ok(Some(list.items.into_iter().map(Compact::new).collect())),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(ApplyError::List {
            kind: resource.kind.clone(),
            source,
        }),
    }
}
