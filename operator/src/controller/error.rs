//! What a reconcile can fail with, and the low-cardinality category each failure is counted and reported under.

use crate::apply::ApplyError;

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
    #[error("failed to update the status of {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

impl Error {
    /// Low-cardinality category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply(ApplyError::Apply { .. }) => "ApplyFailed",
            Error::Apply(ApplyError::List { .. }) => "ListFailed",
            Error::Apply(ApplyError::Get { .. }) => "GetFailed",
            Error::Apply(ApplyError::NotCached { .. }) => "CacheNotReady",
            Error::Apply(ApplyError::Cached { .. }) => "CacheDecodeFailed",
            Error::Apply(ApplyError::Delete { .. }) => "DeleteFailed",
            Error::Apply(ApplyError::MissingCrd { .. }) => "CrdMissing",
            Error::Secret { .. } => "SecretReadFailed",
            Error::Cleanup { .. } => "CleanupFailed",
            Error::Status { .. } => "StatusFailed",
            Error::Random(_) => "RandomFailed",
        }
    }
}
