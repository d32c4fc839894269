//! The BigQuery warehouse client: Google's API in production, an emulator in tests.

use std::sync::Arc;

use gcp_bigquery_client::{Client, auth::Authenticator, client_builder::ClientBuilder, error::BQError};

/// Environment variable naming a BigQuery emulator base URL such as `http://127.0.0.1:9050`.
pub const BQ_ENDPOINT_ENV: &str = "CILVEST_BQ_ENDPOINT";

/// Emulators accept any bearer token; sending one keeps the request shape identical to production.
#[derive(Clone)]
struct EmulatorToken;

#[async_trait::async_trait]
impl Authenticator for EmulatorToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("emulator".to_owned())
    }
}

/// A client for `endpoint` (an emulator) or, without one, for BigQuery with application default credentials.
pub async fn client(endpoint: Option<&str>) -> Result<Client, BQError> {
    match endpoint {
        Some(endpoint) => {
            ClientBuilder::new()
                .with_v2_base_url(format!("{}/bigquery/v2", endpoint.trim_end_matches('/')))
                .build_from_authenticator(Arc::new(EmulatorToken))
                .await
        }
        None => Client::from_application_default_credentials().await,
    }
}
