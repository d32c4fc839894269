//! Where the producer keeps its monthly X usage: the ConfigMap `<pipeline>-x-usage` (created by the operator,
//! `data` written here by server-side apply as `cilvest-producer`), or only in memory when no ConfigMap is named
//! (local runs and tests). The ConfigMap survives producer restarts, and the operator copies it into the
//! pipeline's status.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams},
};

use cilvest_crds::usage::{USAGE_FIELD_MANAGER, UsageRecord};

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("failed to connect to Kubernetes for the usage ConfigMap: {0}")]
    Connect(#[source] kube::Error),
    #[error("failed to read the usage ConfigMap {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write the usage ConfigMap {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The usage record's home.
pub enum UsageStore {
    /// Nothing persists: a restart starts the month's count from zero.
    Memory,
    /// `data` of one ConfigMap in the pipeline's namespace.
    ConfigMap { api: Box<Api<ConfigMap>>, name: String },
}

impl UsageStore {
    /// The ConfigMap `name` in `namespace`, through the pod's service account (or `KUBECONFIG` outside a pod).
    pub async fn config_map(namespace: &str, name: &str) -> Result<Self, UsageError> {
        // kube's TLS needs a process-wide rustls provider when more than one is compiled in; ring is the one here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::try_default().await.map_err(UsageError::Connect)?;
        Ok(Self::ConfigMap {
            api: Box::new(Api::namespaced(client, namespace)),
            name: name.to_owned(),
        })
    }

    /// The stored record, if any.
    pub async fn load(&self) -> Result<Option<UsageRecord>, UsageError> {
        match self {
            Self::Memory => Ok(None),
            Self::ConfigMap { api, name } => {
                let map = api.get(name).await.map_err(|source| UsageError::Read {
                    name: name.clone(),
                    source,
                })?;
                Ok(map.data.as_ref().and_then(UsageRecord::from_data))
            }
        }
    }

    /// Replace the stored record with `record`.
    pub async fn save(&self, record: &UsageRecord) -> Result<(), UsageError> {
        match self {
            Self::Memory => Ok(()),
            Self::ConfigMap { api, name } => {
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    data: Some(record.to_data()),
                    ..ConfigMap::default()
                };
                // Apply only `data`: the operator owns metadata, labels and the owner reference.
                api.patch(
                    name,
                    &PatchParams::apply(USAGE_FIELD_MANAGER).force(),
                    &Patch::Apply(&map),
                )
                .await
                .map(|_| ())
                .map_err(|source| UsageError::Write {
                    name: name.clone(),
                    source,
                })
            }
        }
    }
}
