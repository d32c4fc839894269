//! The one Google OAuth token provider of the workers, shared by BigQuery, Dataproc and Pub/Sub.
//!
//! Tokens come from `CILVEST_GCP_ACCESS_TOKEN` when it is set (a token minted outside, e.g. in CI), or from
//! application default credentials: Workload Identity's metadata server on GKE, or the service account key that
//! `GOOGLE_APPLICATION_CREDENTIALS` names. The credentials are looked up once, at the first use, and yup-oauth2
//! (already the BigQuery client's) caches and refreshes the tokens per scope. A token is never printed.

use std::sync::Arc;

use gcp_bigquery_client::yup_oauth2::{
    self, ApplicationDefaultCredentialsAuthenticator, ApplicationDefaultCredentialsFlowOpts,
    authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator},
};
use tokio::sync::OnceCell;

/// Environment variable holding an access token to use instead of application default credentials.
pub const ACCESS_TOKEN_ENV: &str = "CILVEST_GCP_ACCESS_TOKEN";

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[error("failed to get a Google access token: {0}")]
pub struct TokenError(String);

/// Where access tokens come from. Cheap to clone; clones share the credentials and their token cache.
#[derive(Clone)]
pub struct GoogleToken(Source);

#[derive(Clone)]
enum Source {
    Fixed(Arc<str>),
    Default(Arc<OnceCell<DefaultAuthenticator>>),
}

impl std::fmt::Debug for GoogleToken {
    // The token itself must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Source::Fixed(_) => "GoogleToken::Fixed(..)",
            Source::Default(_) => "GoogleToken::ApplicationDefault",
        })
    }
}

impl GoogleToken {
    /// Always this token (one minted outside, or a test's).
    pub fn fixed(token: &str) -> Self {
        Self(Source::Fixed(Arc::from(token)))
    }

    /// For an emulator, which accepts any bearer token: sending one keeps the requests shaped as in production.
    pub fn emulator() -> Self {
        Self::fixed("emulator")
    }

    /// `CILVEST_GCP_ACCESS_TOKEN` when set, application default credentials otherwise.
    pub fn from_env() -> Self {
        match std::env::var(ACCESS_TOKEN_ENV) {
            Ok(token) if !token.is_empty() => Self::fixed(&token),
            _ => Self(Source::Default(Arc::default())),
        }
    }

    /// Find the credentials now, so that a job without any fails at its start rather than at its first call.
    pub async fn check(&self) -> Result<(), TokenError> {
        match &self.0 {
            Source::Fixed(_) => Ok(()),
            Source::Default(cell) => cell.get_or_try_init(application_default).await.map(drop),
        }
    }

    /// An access token for `scope`.
    pub async fn token(&self, scope: &str) -> Result<String, TokenError> {
        match &self.0 {
            Source::Fixed(token) => Ok(token.to_string()),
            Source::Default(cell) => {
                let auth = cell.get_or_try_init(application_default).await?;
                let token = auth
                    .token(&[scope])
                    .await
                    .map_err(|e: yup_oauth2::Error| TokenError(e.to_string()))?;
                token
                    .token()
                    .map(str::to_owned)
                    .ok_or_else(|| TokenError("no access token in the response".to_owned()))
            }
        }
    }
}

async fn application_default() -> Result<DefaultAuthenticator, TokenError> {
    let opts = ApplicationDefaultCredentialsFlowOpts::default();
    let built = match ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
        ApplicationDefaultCredentialsTypes::InstanceMetadata(builder) => builder.build().await,
        ApplicationDefaultCredentialsTypes::ServiceAccount(builder) => builder.build().await,
    };
    built.map_err(|e| TokenError(format!("no application default credentials: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_token_is_returned_and_never_printed() {
        let token = GoogleToken::fixed("ya29.secret");
        assert_eq!(token.token("scope").await.expect("token"), "ya29.secret");
        assert!(!format!("{token:?}").contains("secret"));
        assert_eq!(GoogleToken::emulator().token("s").await.expect("token"), "emulator");
    }
}
