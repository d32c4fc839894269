//! What can go wrong talking to Pub/Sub, and which of it is worth a retry.

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("failed to get a google access token for pub/sub: {0}")]
    Token(String),
    #[error("failed to build the pub/sub http client: {0}")]
    Client(reqwest::Error),
    #[error("pub/sub {what} failed: {source}")]
    Http { what: String, source: reqwest::Error },
    #[error("pub/sub {what} answered {code} {status}: {message}")]
    Api {
        what: String,
        code: u16,
        status: String,
        message: String,
    },
    #[error("pub/sub {what} answered with an unreadable body: {source}")]
    Body { what: String, source: serde_json::Error },
    #[error("message {message_id} from {subscription} carries data that is not base64: {source}")]
    Data {
        subscription: String,
        message_id: String,
        source: base64::DecodeError,
    },
}

impl PubSubError {
    /// Low-cardinality category, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) | Self::Client(_) => "auth",
            Self::Http { .. } => "http",
            Self::Api { .. } => "api",
            Self::Body { .. } | Self::Data { .. } => "body",
        }
    }

    /// Worth retrying as it is: network trouble, throttling, server errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { .. } | Self::Token(_) => true,
            Self::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    pub(super) fn is_already_exists(&self) -> bool {
        matches!(self, Self::Api { code: 409, .. })
    }
}
