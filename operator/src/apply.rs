//! Applying children: the one server-side-apply helper, the live state it compares against (read from the
//! controller's caches, restoring drift, see `drift`), and the deletion of labelled orphans.

use std::{collections::BTreeMap, fmt::Debug};

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

/// The children that exist now, by kind and name, as JSON (for drift) with the hash of what was last applied.
#[derive(Debug, Default)]
pub struct LiveChildren {
    children: BTreeMap<(String, String), serde_json::Value>,
    /// Live external objects, kept whole for status (KafkaTopic readiness, Elasticsearch health).
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
    /// Remember a child (of a built-in kind) as JSON, for the drift and orphan checks.
    pub fn record(&mut self, kind: &str, name: String, object: serde_json::Value) {
        self.children.insert((kind.to_owned(), name), object);
    }

    /// Remember an external child (KafkaTopic, KafkaUser, Elasticsearch, Kibana), kept whole for status too.
    pub fn record_external(&mut self, kind: &str, object: DynamicObject) {
        let key = (kind.to_owned(), object.name_any());
        self.children
            .insert(key.clone(), serde_json::to_value(&object).unwrap_or_default());
        self.objects.insert(key, object);
    }

    fn hash(&self, key: &(String, String)) -> Option<&str> {
        self.children
            .get(key)?
            .pointer("/metadata/annotations")?
            .get(HASH_ANNOTATION)?
            .as_str()
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

struct Pass<'a> {
    client: &'a Client,
    namespace: &'a str,
    live: &'a LiveChildren,
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
        if live.is_some_and(drift::paused) {
            return Ok(());
        }
        let hash = fingerprint(&object);
        let desired = serde_json::to_value(&object).unwrap_or_default();
        let unchanged = self.live.hash(&key) == Some(hash.as_str());
        let drifted = match live {
            Some(live) if unchanged => drift::first_difference(&desired, live),
            _ => None,
        };
        if unchanged && drifted.is_none() {
            return Ok(());
        }
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

    async fn delete_orphans(&mut self) -> Result<(), ApplyError> {
        for ((kind, name), live) in &self.live.children {
            if self.desired.iter().any(|(k, n)| k == kind && n == name) || drift::paused(live) {
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
