//! Applying children: the one server-side-apply helper, the live state it compares against (read from the
//! controller's caches, restoring drift, see `drift`), and the deletion of labelled orphans.
//!
//! The caches hold a digest of the fields the operator owns in each child, not the child ([`crate::owned`]). An
//! unchanged child whose digest matches what the operator would apply costs nothing; one whose digest differs is
//! fetched and compared field by field, and put back if it drifted. A child that compares equal although its digest
//! differs is remembered ([`DriftMemo`]), so it is fetched once, not on every pass.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    sync::Mutex,
};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        batch::v1::{CronJob, Job},
        core::v1::{ConfigMap, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    build::Resources,
    drift,
    meta::{HASH_ANNOTATION, MANAGER, fingerprint},
    owned,
};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to apply {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read {kind} {name} for the drift check: {source}")]
    Get {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list {kind} children: {source}")]
    List {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete orphaned {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the cache of {kind} children has not listed yet: can the operator list and watch {kind}?")]
    NotCached { kind: String },
    #[error("the cached {kind} {name} does not decode: {source}")]
    Cached {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {kind} API ({api_version}) is not served: is its operator installed?")]
    MissingCrd { kind: String, api_version: String },
}

/// What the apply step knows of a live child without its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveChild {
    /// The applied-hash annotation: the fingerprint of what the operator last applied.
    pub hash: Option<String>,
    /// Labelled `cilvest.io/paused=true`: left alone.
    pub paused: bool,
    /// The digest of the fields the operator owns ([`owned::digest`]); `None` when the child has no Apply entry of
    /// the operator.
    pub digest: Option<u64>,
}

/// The children that exist now, by kind and name.
#[derive(Debug, Default)]
pub struct LiveChildren {
    children: BTreeMap<(String, String), LiveChild>,
    /// Live external objects, with what status reads of them (KafkaTopic readiness, Elasticsearch health).
    pub objects: BTreeMap<(String, String), DynamicObject>,
    pub deployments: Vec<Deployment>,
    pub cron_jobs: Vec<CronJob>,
    /// `data` of the pipeline's X usage ConfigMap, as the producer wrote it.
    pub x_usage: Option<BTreeMap<String, String>>,
}

/// How many writes one pass made; zero for an unchanged pipeline.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Writes {
    pub applied: usize,
    pub deleted: usize,
    /// Children that had drifted from what the operator last applied and were put back.
    pub restored: Vec<Restored>,
    /// Children read from the API server because their owned fields' digest differed from the desired one.
    pub fetched: usize,
}

/// The children whose owned fields digest differently from what the operator applies although the drift check
/// found them equal (the API server wrote a value in another form): by namespace, kind and name, the applied hash
/// and live digest that were checked. Such a child is fetched again only when either changes.
#[derive(Debug, Default)]
pub struct DriftMemo(Mutex<HashMap<ChildKey, (String, Option<u64>)>>);

/// A child by namespace, kind and name.
type ChildKey = (String, String, String);

impl DriftMemo {
    fn checked(&self, key: &ChildKey, hash: &str, digest: Option<u64>) -> bool {
        let memo = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        memo.get(key).is_some_and(|(h, d)| h == hash && *d == digest)
    }

    fn remember(&self, key: ChildKey, hash: String, digest: Option<u64>) {
        let mut memo = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        memo.insert(key, (hash, digest));
    }

    /// Forget the children of a deleted pipeline's namespace and name prefix.
    pub fn forget(&self, namespace: &str, pipeline: &str) {
        let mut memo = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        memo.retain(|(ns, _, name), _| !(ns == namespace && name.starts_with(pipeline)));
    }
}

/// One child put back, and the first field that had drifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub field: String,
}

/// Which external kinds this cluster serves; a kind that is absent is reported, not retried in a tight loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalApis {
    pub kafka_topic: bool,
    pub kafka_user: bool,
    pub elasticsearch: bool,
    pub kibana: bool,
}

impl LiveChildren {
    /// Remember a child (of a built-in kind), for the drift and orphan checks.
    pub fn record(&mut self, kind: &str, name: String, child: LiveChild) {
        self.children.insert((kind.to_owned(), name), child);
    }

    /// Remember an external child (KafkaTopic, KafkaUser, Elasticsearch, Kibana), with what status reads of it.
    pub fn record_external(&mut self, kind: &str, object: DynamicObject, child: LiveChild) {
        let key = (kind.to_owned(), object.name_any());
        self.children.insert(key.clone(), child);
        self.objects.insert(key, object);
    }
}

/// Apply every desired child that changed, then delete labelled children that are no longer desired.
/// Destructuring without `..` makes a new child that is never applied a compile error.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    resources: Resources,
    live: &LiveChildren,
    externals: ExternalApis,
    memo: &DriftMemo,
) -> Result<Writes, ApplyError> {
    let Resources {
        config,
        service_accounts,
        producer,
        consumer,
        daily,
        raw_topic,
        kafka_users,
        elasticsearch,
        kibana,
        kibana_setup,
        x_usage,
        network_policies,
    } = resources;
    let mut pass = Pass {
        client,
        namespace,
        live,
        memo,
        writes: Writes::default(),
        desired: Vec::new(),
    };
    // The ConfigMap and ServiceAccounts go first: the pods below mount and run as them.
    pass.typed(config).await?;
    for account in service_accounts {
        pass.typed(account).await?;
    }
    // The producer's usage ConfigMap and its right to write it, before the producer that needs them.
    let crate::build::x_usage::UsageChildren {
        config_map: usage_map,
        role: usage_role,
        role_binding: usage_binding,
    } = x_usage;
    pass.typed(usage_map).await?;
    pass.typed(usage_role).await?;
    pass.typed(usage_binding).await?;
    // The policies before the pods they select, so that no worker pod runs unrestricted for a moment.
    for policy in network_policies {
        pass.typed(policy).await?;
    }
    pass.typed(producer).await?;
    pass.typed(consumer).await?;
    pass.typed(daily).await?;
    let users = kafka_users.into_iter().map(|user| (Some(user), externals.kafka_user));
    for (object, served) in [
        (raw_topic, externals.kafka_topic),
        (elasticsearch, externals.elasticsearch),
        (kibana, externals.kibana),
    ]
    .into_iter()
    .chain(users)
    {
        if let Some(object) = object {
            if !served {
                let types = object.types.clone().unwrap_or_default();
                return Err(ApplyError::MissingCrd {
                    kind: types.kind,
                    api_version: types.api_version,
                });
            }
            pass.dynamic(object).await?;
        }
    }
    // After its Kibana; a new one replaces the old (an orphan by name).
    if let Some(job) = kibana_setup {
        pass.typed(job).await?;
    }
    pass.delete_orphans().await?;
    Ok(pass.writes)
}

/// What the drift check found of an unchanged child.
enum Verdict {
    Same,
    /// The first field that differs.
    Drifted(String),
    /// Deleted since the cache saw it: applied again.
    Gone,
}

struct Pass<'a> {
    client: &'a Client,
    namespace: &'a str,
    live: &'a LiveChildren,
    memo: &'a DriftMemo,
    writes: Writes,
    desired: Vec<(String, String)>,
}

impl Pass<'_> {
    async fn typed<K>(&mut self, object: K) -> Result<(), ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        let kind = K::kind(&()).into_owned();
        self.apply(&api, kind, object).await
    }

    async fn dynamic(&mut self, object: DynamicObject) -> Result<(), ApplyError> {
        let types = object.types.clone().unwrap_or_default();
        let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
        let resource = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, &types.kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), self.namespace, &resource);
        self.apply(&api, types.kind, object).await
    }

    /// Write `object` when what the operator wants changed (its hash) or the live child drifted from it; leave a
    /// child labelled `cilvest.io/paused=true` alone. An unchanged, undrifted child costs no write.
    async fn apply<K>(&mut self, api: &Api<K>, kind: String, object: K) -> Result<(), ApplyError>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    {
        let name = object.name_any();
        let key = (kind.clone(), name.clone());
        self.desired.push(key.clone());
        let live = self.live.children.get(&key);
        if live.is_some_and(|live| live.paused) {
            return Ok(());
        }
        let hash = fingerprint(&object);
        let mut object = object;
        object
            .meta_mut()
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_ANNOTATION.to_owned(), hash.clone());
        let desired = serde_json::to_value(&object).unwrap_or_default();
        let drifted = match live {
            Some(live) if live.hash.as_deref() == Some(hash.as_str()) => {
                match self.drift(api, &kind, &name, &hash, live, &desired).await? {
                    Verdict::Same => return Ok(()),
                    Verdict::Drifted(field) => Some(field),
                    Verdict::Gone => None,
                }
            }
            _ => None,
        };
        apply(api, object, hash).await.map_err(|source| ApplyError::Apply {
            kind: kind.clone(),
            name: name.clone(),
            source,
        })?;
        self.writes.applied += 1;
        if let Some(field) = drifted {
            self.writes.restored.push(Restored {
                api_version: desired["apiVersion"].as_str().unwrap_or_default().to_owned(),
                kind,
                name,
                field,
            });
        }
        Ok(())
    }

    /// Where an unchanged child differs from `desired` (with its applied hash): nowhere when its owned fields digest
    /// the same, or were found equal before; otherwise the first difference in the child read from the API server.
    async fn drift<K>(
        &mut self,
        api: &Api<K>,
        kind: &str,
        name: &str,
        hash: &str,
        live: &LiveChild,
        desired: &serde_json::Value,
    ) -> Result<Verdict, ApplyError>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    {
        if live.digest == Some(owned::digest(desired)) {
            return Ok(Verdict::Same);
        }
        let memo_key = (self.namespace.to_owned(), kind.to_owned(), name.to_owned());
        if self.memo.checked(&memo_key, hash, live.digest) {
            return Ok(Verdict::Same);
        }
        self.writes.fetched += 1;
        let fetched = api.get_opt(name).await.map_err(|source| ApplyError::Get {
            kind: kind.to_owned(),
            name: name.to_owned(),
            source,
        })?;
        let Some(fetched) = fetched else {
            return Ok(Verdict::Gone);
        };
        let fetched = serde_json::to_value(&fetched).unwrap_or_default();
        if drift::paused(&fetched) {
            return Ok(Verdict::Same);
        }
        match drift::first_difference(desired, &fetched) {
            Some(field) => Ok(Verdict::Drifted(field)),
            None => {
                self.memo.remember(memo_key, hash.to_owned(), live.digest);
                Ok(Verdict::Same)
            }
        }
    }

    async fn delete_orphans(&mut self) -> Result<(), ApplyError> {
        for ((kind, name), live) in &self.live.children {
            if self.desired.iter().any(|(k, n)| k == kind && n == name) || live.paused {
                continue;
            }
            let result = match kind.as_str() {
                "ConfigMap" => delete::<ConfigMap>(self.client, self.namespace, name).await,
                "ServiceAccount" => delete::<ServiceAccount>(self.client, self.namespace, name).await,
                "Deployment" => delete::<Deployment>(self.client, self.namespace, name).await,
                "CronJob" => delete::<CronJob>(self.client, self.namespace, name).await,
                // Only the Kibana import Jobs are recorded (`controller::watches`), never the daily runs.
                "Job" => delete::<Job>(self.client, self.namespace, name).await,
                "Role" => delete::<Role>(self.client, self.namespace, name).await,
                "RoleBinding" => delete::<RoleBinding>(self.client, self.namespace, name).await,
                "NetworkPolicy" => delete::<NetworkPolicy>(self.client, self.namespace, name).await,
                _ => match self.live.objects.get(&(kind.clone(), name.clone())) {
                    Some(object) => {
                        let types = object.types.clone().unwrap_or_default();
                        let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
                        let resource = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
                        let api: Api<DynamicObject> =
                            Api::namespaced_with(self.client.clone(), self.namespace, &resource);
                        api.delete(name, &DeleteParams::background()).await.map(|_| ())
                    }
                    None => Ok(()),
                },
            };
            match result {
                Ok(()) => self.writes.deleted += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(ApplyError::Delete {
                        kind: kind.clone(),
                        name: name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::background())
        .await
        .map(|_| ())
}

/// The one write path: server-side apply as `cilvest-operator`, forced, with `hash` (the object's
/// [`crate::meta::fingerprint`]) as the applied-hash annotation, so that the next pass can tell a changed desired state.
pub async fn apply<K>(api: &Api<K>, mut object: K, hash: String) -> Result<(), kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_ANNOTATION.to_owned(), hash);
    let name = object.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
        .await?;
    Ok(())
}
