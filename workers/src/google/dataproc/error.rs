//! What can go wrong talking to Dataproc, and which of it is worth a retry.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DataprocError {
    #[error("failed to get a google access token: {0}")]
    Token(String),
    #[error("failed to call dataproc {what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("dataproc refused to {what}: {code} {status}: {message}")]
    Api {
        what: String,
        code: u16,
        status: String,
        message: String,
    },
    #[error("failed to create dataproc cluster {cluster}: {message}")]
    ClusterFailed { cluster: String, message: String },
    #[error("dataproc job {job} on cluster {cluster} failed: {state}: {message}")]
    JobFailed {
        cluster: String,
        job: String,
        state: String,
        message: String,
    },
    #[error("dataproc serverless batch {batch} failed: {state}: {message}")]
    BatchFailed {
        batch: String,
        state: String,
        message: String,
    },
    #[error("dataproc {what} did not finish within {deadline:?}")]
    Deadline { what: String, deadline: Duration },
    #[error("terminated while {what} was running; it was cleaned up")]
    Terminated { what: String },
    #[error("failed to delete dataproc cluster {cluster}: {message}")]
    DeleteFailed { cluster: String, message: String },
    #[error("invalid worker configuration: {0}")]
    Spec(#[from] cilvest_crds::InvalidSpec),
    #[error("transform.engine is native: there is nothing to run on dataproc")]
    NativeEngine,
    #[error("transform.engine needs spec.transform.{0}")]
    MissingSettings(&'static str),
    #[error("failed to {what} {path} in the lake: {source}")]
    Lake {
        what: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("failed to read the spark job's output: {0}")]
    Output(String),
}

impl DataprocError {
    /// Worth retrying: rate limits and server errors.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Self::Api { code, .. } => *code == 429 || *code >= 500,
            Self::Http { .. } => true,
            _ => false,
        }
    }

    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { code: 404, .. })
    }
}
