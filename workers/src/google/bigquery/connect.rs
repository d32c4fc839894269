//! Connecting: the BigQuery client over the workers' one Google token provider, or over an emulator.

use std::sync::Arc;

use gcp_bigquery_client::{Client, auth::Authenticator, client_builder::ClientBuilder, error::BQError};

use super::{BIGQUERY_SCOPE, GOOGLE_V2_URL};
use crate::google::auth::GoogleToken;

/// The BigQuery client's view of the workers' one token provider.
#[derive(Clone, Debug)]
pub(super) struct Credentials(pub(super) GoogleToken);

#[async_trait::async_trait]
impl Authenticator for Credentials {
    async fn access_token(&self) -> Result<String, BQError> {
        self.0.token(BIGQUERY_SCOPE).await.map_err(|e| {
            BQError::InvalidApplicationDefaultCredentialsAuthenticator(std::io::Error::other(e.to_string()))
        })
    }
}

/// A client for `endpoint` (an emulator) or, without one, for BigQuery with the workers' Google credentials.
pub async fn client(endpoint: Option<&str>) -> Result<Client, BQError> {
    let (token, base_url) = token_and_url(endpoint);
    ClientBuilder::new()
        .with_v2_base_url(base_url)
        .build_from_authenticator(Arc::new(Credentials(token)))
        .await
}

/// The credentials and the v2 base URL: an emulator's (any token) or Google's.
pub(super) fn token_and_url(endpoint: Option<&str>) -> (GoogleToken, String) {
    match endpoint {
        Some(endpoint) => (GoogleToken::emulator(), emulator_v2_url(endpoint)),
        None => (GoogleToken::from_env(), GOOGLE_V2_URL.to_owned()),
    }
}

fn emulator_v2_url(endpoint: &str) -> String {
    format!("{}/bigquery/v2", endpoint.trim_end_matches('/'))
}
