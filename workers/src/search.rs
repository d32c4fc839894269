//! The Elasticsearch client, verifying the cluster's CA (ECK's `<name>-es-http-certs-public`) when given one.

use elasticsearch::{
    Elasticsearch,
    auth::Credentials,
    cert::{Certificate, CertificateValidation},
    http::transport::{BuildError, SingleNodeConnectionPool, TransportBuilder},
};

#[derive(Debug, thiserror::Error)]
pub enum SearchClientError {
    #[error("invalid elasticsearch url {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("invalid elasticsearch CA certificate: {0}")]
    Ca(#[source] elasticsearch::Error),
    #[error("failed to build the elasticsearch client: {0}")]
    Build(#[from] BuildError),
}

/// Basic-auth user and password. `Debug` never prints the password.
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A client for one node URL, with optional basic auth and a PEM CA bundle to verify the server against.
pub fn client(url: &str, auth: Option<BasicAuth>, ca_pem: Option<&[u8]>) -> Result<Elasticsearch, SearchClientError> {
    let parsed = url::Url::parse(url).map_err(|source| SearchClientError::Url {
        url: url.to_owned(),
        source,
    })?;
    let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(parsed));
    if let Some(auth) = auth {
        builder = builder.auth(Credentials::Basic(auth.username, auth.password));
    }
    if let Some(pem) = ca_pem {
        let ca = Certificate::from_pem(pem).map_err(SearchClientError::Ca)?;
        builder = builder.cert_validation(CertificateValidation::Full(ca));
    }
    Ok(Elasticsearch::new(builder.build()?))
}
