//! The controller's watches and caches: one reflector per child kind, fed by the same watch that triggers the
//! reconciles, so that a reconcile reads its children from memory instead of listing them from the API server.
//!
//! What is cached is what the reconcile compares: the objects without their `managedFields`. A Strimzi or ECK kind
//! whose CRD is missing has a watch that fails and backs off; until its cache has listed once, the reconcile asks the
//! API server (which is also how it finds out, from the 404, that the kind is not served).

use std::{fmt::Debug, time::Duration};

use futures::{FutureExt, Stream};
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
    runtime::{
        WatchStreamExt,
        reflector::{Store, store::Writer},
        utils::Backoff,
        watcher,
    },
};
use serde::de::DeserializeOwned;

use crate::{
    apply::{ApplyError, LiveChildren},
    meta::{MANAGER, PIPELINE_LABEL, children_selector},
};

/// The backoff of each watch. kube-runtime's default (30 s, jittered up to a minute) made events flow again only
/// minutes after an API server restart (`tests/faults.rs`); a cap of a few seconds bounds that to well under a minute.
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

/// The watch configuration of every child kind: only what this operator manages.
pub fn children_config() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"))
}

/// A cached watch of a built-in kind in `namespace` (or all namespaces): the cache, and the stream of touched
/// objects that must be polled (by the controller) to fill it.
pub fn cached<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    reflect(api, Writer::default())
}

/// A cached watch of an external kind (KafkaTopic, Elasticsearch, Kibana).
pub fn cached_dynamic(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> (
    Store<DynamicObject>,
    impl Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static,
) {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    reflect(api, Writer::new(resource.clone()))
}

fn reflect<K>(
    api: Api<K>,
    writer: Writer<K>,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let store = writer.as_reader();
    let stream = watcher(api, children_config())
        .backoff(WatchBackoff::default())
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Every cache a reconcile reads.
#[derive(Clone)]
pub struct Stores {
    pub config_maps: Store<ConfigMap>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub network_policies: Store<NetworkPolicy>,
    pub cron_jobs: Store<CronJob>,
    pub deployments: Store<Deployment>,
    pub jobs: Store<Job>,
    /// The pods of the workers and of the daily Jobs (they carry the children's labels).
    pub pods: Store<Pod>,
    /// KafkaTopic, Elasticsearch, Kibana, in the order of [`crate::controller::externals`].
    pub externals: Vec<(ApiResource, Store<DynamicObject>)>,
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
        live.x_usage = config_maps
            .iter()
            .find(|map| map.name_any() == usage_name)
            .and_then(|map| map.data.clone());
        live.record(&config_maps);
        live.record(&mine(&self.roles, namespace, pipeline).await?);
        live.record(&mine(&self.role_bindings, namespace, pipeline).await?);
        live.record(&mine(&self.network_policies, namespace, pipeline).await?);
        live.record(&mine(&self.service_accounts, namespace, pipeline).await?);
        let cron_jobs = mine(&self.cron_jobs, namespace, pipeline).await?;
        live.record(&cron_jobs);
        live.cron_jobs = cron_jobs.iter().map(|c| c.as_ref().clone()).collect();
        let deployments = mine(&self.deployments, namespace, pipeline).await?;
        live.record(&deployments);
        live.deployments = deployments.iter().map(|d| d.as_ref().clone()).collect();
        let mut served = Vec::new();
        for resource in externals {
            let cache = self
                .externals
                .iter()
                .find(|(cached, _)| cached.group == resource.group && cached.kind == resource.kind)
                .map(|(_, store)| store)
                .filter(|store| store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok()));
            let objects = match cache {
                Some(store) => {
                    let mut objects: Vec<DynamicObject> = store
                        .state_filter(|o| belongs(o, namespace, pipeline))
                        .into_iter()
                        .map(|o| o.as_ref().clone())
                        .collect();
                    objects.sort_by_key(|o| o.metadata.name.clone());
                    Some(objects)
                }
                None => list_dynamic(client, namespace, pipeline, resource).await?,
            };
            served.push(objects.is_some());
            for object in objects.into_iter().flatten() {
                live.record_external(&resource.kind, object);
            }
        }
        Ok((live, served))
    }

    /// The pods of `pipeline`'s workers and daily Jobs.
    pub async fn pods(&self, namespace: &str, pipeline: &str) -> Result<Vec<Pod>, ApplyError> {
        Ok(mine(&self.pods, namespace, pipeline)
            .await?
            .iter()
            .map(|pod| pod.as_ref().clone())
            .collect())
    }

    /// The daily Jobs of `pipeline`.
    pub async fn jobs(&self, namespace: &str, pipeline: &str) -> Result<Vec<Job>, ApplyError> {
        Ok(mine(&self.jobs, namespace, pipeline)
            .await?
            .iter()
            .map(|job| job.as_ref().clone())
            .collect())
    }
}

fn belongs<K: Resource>(object: &K, namespace: &str, pipeline: &str) -> bool {
    object.meta().namespace.as_deref() == Some(namespace)
        && object
            .meta()
            .labels
            .as_ref()
            .and_then(|labels| labels.get(PIPELINE_LABEL))
            .is_some_and(|p| p == pipeline)
}

/// The cached objects of `pipeline`, once the cache has listed for the first time.
async fn mine<K>(store: &Store<K>, namespace: &str, pipeline: &str) -> Result<Vec<std::sync::Arc<K>>, ApplyError>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let kind = K::kind(&()).into_owned();
    match tokio::time::timeout(CACHE_WAIT, store.wait_until_ready()).await {
        Ok(Ok(())) => {
            // By name, as a LIST returns them: a store iterates in no fixed order, and status lists children in
            // the order found, so an unsorted read would rewrite an unchanged status.
            let mut objects = store.state_filter(|o| belongs(o, namespace, pipeline));
            objects.sort_by_key(|o| o.meta().name.clone());
            Ok(objects)
        }
        _ => Err(ApplyError::NotCached { kind }),
    }
}

/// A fresh list of an external kind whose cache is not filled; `None` when the API server does not serve it.
async fn list_dynamic(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    resource: &ApiResource,
) -> Result<Option<Vec<DynamicObject>>, ApplyError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    match api
        .list(&ListParams::default().labels(&children_selector(pipeline)))
        .await
    {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(ApplyError::List {
            kind: resource.kind.clone(),
            source,
        }),
    }
}
