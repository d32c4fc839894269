//! The data lake: `gs://bucket/prefix` in production, `file:///dir` locally, one `object_store` API for both.

pub mod counts;
pub mod record;

use std::sync::Arc;

use object_store::{
    ClientOptions, ObjectStore, RetryConfig, gcp::GoogleCloudStorageBuilder, local::LocalFileSystem, path::Path,
    prefix::PrefixStore,
};

/// Environment variable naming a GCS emulator base URL such as `http://127.0.0.1:4443`.
pub const GCS_ENDPOINT_ENV: &str = "CILVEST_GCS_ENDPOINT";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("unsupported lake uri {0:?}: use gs://bucket/prefix or file:///absolute/dir")]
    Uri(String),
    #[error("failed to open lake {uri}: {source}")]
    Open {
        uri: String,
        #[source]
        source: object_store::Error,
    },
}

/// Open the lake at `uri`, rooted at its prefix. With `gcs_endpoint`, `gs://` talks to that emulator without
/// OAuth; otherwise it uses the ambient Google credentials (Workload Identity on GKE).
pub fn open(uri: &str, gcs_endpoint: Option<&str>) -> Result<Arc<dyn ObjectStore>, LakeError> {
    open_with_retry(uri, gcs_endpoint, RetryConfig::default())
}

/// [`open`] with the GCS client's retries of transient errors set to `retry` (object_store's default retries one
/// request for up to 3 minutes; a caller that retries on its own may want requests to fail sooner).
pub fn open_with_retry(
    uri: &str,
    gcs_endpoint: Option<&str>,
    retry: RetryConfig,
) -> Result<Arc<dyn ObjectStore>, LakeError> {
    let open_err = |source| LakeError::Open {
        uri: uri.to_owned(),
        source,
    };
    if let Some(rest) = uri.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LakeError::Uri(uri.to_owned()));
        }
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry);
        if let Some(endpoint) = gcs_endpoint {
            // object_store's documented way to reach an emulator: a key that disables OAuth and names the base URL.
            let key = serde_json::json!({
                "private_key": "", "private_key_id": "", "client_email": "",
                "disable_oauth": true, "gcs_base_url": endpoint.trim_end_matches('/'),
            });
            builder = builder
                .with_service_account_key(key.to_string())
                .with_client_options(ClientOptions::new().with_allow_http(true));
        }
        let store = builder.build().map_err(open_err)?;
        Ok(with_prefix(Arc::new(store), prefix))
    } else if let Some(dir) = uri.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err(LakeError::Uri(uri.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            open_err(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(open_err)?;
        Ok(Arc::new(store))
    } else {
        Err(LakeError::Uri(uri.to_owned()))
    }
}

fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, Path::from(prefix)))
    }
}

/// Every object path under `prefix`, in the store's order.
pub async fn list_paths(lake: &dyn ObjectStore, prefix: &Path) -> object_store::Result<Vec<Path>> {
    use futures::TryStreamExt;
    lake.list(Some(prefix)).map_ok(|meta| meta.location).try_collect().await
}
