//! Errors of the X source and the bearer token that never prints.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, Utc};
use cilvest_crds::worker_config::X_BEARER_TOKEN_ENV;
use reqwest::header::HeaderValue;

/// Why a source could not be set up or read. Request failures are retried inside [`XSource::poll`]; they are
/// public so that their categories and messages are the same in logs, metrics and tests.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no X bearer token: set {X_BEARER_TOKEN_ENV} or pass --bearer-token-file")]
    NoToken,
    #[error("failed to read the X bearer token from {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("the X bearer token is empty or contains characters not allowed in an HTTP header")]
    InvalidToken,
    #[error("failed to build the X API client: {0}")]
    Client(reqwest::Error),
    #[error("invalid X API URL {url}: {source}")]
    Url { url: String, source: url::ParseError },
    #[error("X rejected the bearer token (HTTP {status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    #[error("X rejected the search request (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("X search is rate limited (HTTP 429) until {}", reset.map_or("an unknown time".to_owned(), |r| r.to_rfc3339()))]
    RateLimited { reset: Option<DateTime<Utc>> },
    #[error("X search failed with HTTP {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("X search timed out after {0:?}")]
    Timeout(Duration),
    #[error("failed to reach X: {0}")]
    Transport(reqwest::Error),
    #[error("X returned a malformed search response: {0}")]
    Malformed(String),
    #[error("failed to read replay file {path}: {source}")]
    ReplayRead { path: PathBuf, source: std::io::Error },
    #[error("replay file {path} line {line} is not a tweet, envelope or search response: {reason}")]
    ReplayLine { path: PathBuf, line: usize, reason: String },
}

impl SourceError {
    /// Low-cardinality category, used as the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoToken | Self::TokenFile { .. } | Self::InvalidToken => "token",
            Self::Client(_) | Self::Url { .. } => "client",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::Malformed(_) => "malformed",
            Self::ReplayRead { .. } | Self::ReplayLine { .. } => "replay",
        }
    }

    /// A failure that repeating the request cannot fix: a person has to change the token or the query.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Rejected { .. })
    }
}

/// The X API bearer token. `Debug` and `Display` print a placeholder, so the token cannot leak through a log
/// line, an error or a panic message that formats it.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, SourceError> {
        let token = token.trim();
        if token.is_empty() || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(SourceError::InvalidToken);
        }
        Ok(Self(token.to_owned()))
    }

    /// The token from a mounted Secret file, else from `CILVEST_X_BEARER_TOKEN`.
    pub fn load(file: Option<&Path>) -> Result<Self, SourceError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| SourceError::TokenFile {
                path: path.to_owned(),
                source,
            })?;
            return Self::new(&text);
        }
        match std::env::var(X_BEARER_TOKEN_ENV) {
            Ok(token) => Self::new(&token),
            Err(_) => Err(SourceError::NoToken),
        }
    }

    pub(super) fn header(&self) -> HeaderValue {
        // `new` checked that this is a valid header value; marking it sensitive keeps it out of reqwest's Debug.
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).unwrap_or(HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
