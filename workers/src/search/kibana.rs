//! Kibana's saved objects import API (`POST /api/saved_objects/_import?overwrite=true`): the NDJSON of
//! `search::dashboard` sent as the multipart `file` field, with the `kbn-xsrf` header Kibana requires of every
//! write and basic authentication. Kibana answers 503 until it has started, so unavailability is retried (the one
//! backoff, `crate::retry`) until a deadline; a refusal (400, 401, 403, …) or an import that reports errors is not.

use std::time::{Duration, Instant};

use reqwest::{
    StatusCode,
    multipart::{Form, Part},
};
use serde::Deserialize;

use crate::retry::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum KibanaError {
    #[error("invalid kibana url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("the kibana CA bundle holds no PEM certificate: {0}")]
    Ca(String),
    #[error("failed to build the kibana HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("kibana at {url} was not ready within {waited:?}; last answer: {last}")]
    NotReady {
        url: String,
        waited: Duration,
        last: String,
    },
    #[error("kibana refused the saved objects import with {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("kibana imported {imported} saved objects but refused {}: {}", .errors.len(), .errors.join("; "))]
    Partial { imported: u64, errors: Vec<String> },
    #[error("kibana's import answer is not the documented JSON: {0}")]
    Answer(#[source] reqwest::Error),
}

/// A Kibana, reached as one user.
#[derive(Clone)]
pub struct Kibana {
    http: reqwest::Client,
    url: String,
    username: String,
    password: String,
}

impl std::fmt::Debug for Kibana {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kibana")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What one import did.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportAnswer {
    pub success: bool,
    #[serde(default)]
    pub success_count: u64,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
}

impl Kibana {
    /// A client of the Kibana at `url` (`https://<name>-kb-http.<namespace>.svc:5601` for ECK's), trusting
    /// `ca_pem` when given (ECK's `<name>-kb-http-certs-public`).
    pub fn new(url: &str, username: &str, password: &str, ca_pem: Option<&[u8]>) -> Result<Self, KibanaError> {
        let parsed = reqwest::Url::parse(url).map_err(|err| KibanaError::Url {
            url: url.to_owned(),
            reason: err.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(KibanaError::Url {
                url: url.to_owned(),
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|err| KibanaError::Ca(err.to_string()))?;
            if certificates.is_empty() {
                return Err(KibanaError::Ca("no BEGIN CERTIFICATE block".to_owned()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            http: builder.build().map_err(KibanaError::Client)?,
            url: url.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Import `ndjson`, replacing objects with the same ids; retry while Kibana is unavailable, up to `wait`.
    pub async fn import(&self, ndjson: &str, wait: Duration) -> Result<ImportAnswer, KibanaError> {
        let started = Instant::now();
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(20));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = match self.import_once(ndjson).await {
                Ok(answer) => return answer_result(answer),
                Err(Attempt::Refused(err)) => return Err(err),
                Err(Attempt::Unavailable(last)) => last,
            };
            let delay = backoff.wait(attempt);
            if started.elapsed() + delay > wait {
                return Err(KibanaError::NotReady {
                    url: self.url.clone(),
                    waited: started.elapsed(),
                    last,
                });
            }
            tracing::info!(attempt, %last, ?delay, "kibana is not ready; retrying the import");
            tokio::time::sleep(delay).await;
        }
    }

    async fn import_once(&self, ndjson: &str) -> Result<ImportAnswer, Attempt> {
        let part = Part::text(ndjson.to_owned())
            .file_name("cilvest.ndjson")
            .mime_str("application/ndjson")
            .map_err(|err| Attempt::Refused(KibanaError::Client(err)))?;
        let response = self
            .http
            .post(format!("{}/api/saved_objects/_import", self.url))
            .query(&[("overwrite", "true")])
            .header("kbn-xsrf", "cilvest")
            .basic_auth(&self.username, Some(&self.password))
            .multipart(Form::new().part("file", part))
            .send()
            .await
            .map_err(|err| Attempt::Unavailable(err.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|err| Attempt::Refused(KibanaError::Answer(err)));
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(500).collect();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::BAD_GATEWAY
                | StatusCode::GATEWAY_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
        ) {
            Err(Attempt::Unavailable(format!("{status}: {body}")))
        } else {
            Err(Attempt::Refused(KibanaError::Refused { status, body }))
        }
    }
}

enum Attempt {
    Unavailable(String),
    Refused(KibanaError),
}

fn answer_result(answer: ImportAnswer) -> Result<ImportAnswer, KibanaError> {
    if answer.success && answer.errors.is_empty() {
        return Ok(answer);
    }
    let errors = answer
        .errors
        .iter()
        .map(|error| {
            format!(
                "{} {}: {}",
                error["type"].as_str().unwrap_or("?"),
                error["id"].as_str().unwrap_or("?"),
                error["error"]["type"].as_str().unwrap_or("unknown")
            )
        })
        .collect();
    Err(KibanaError::Partial {
        imported: answer.success_count,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http() {
        assert!(matches!(
            Kibana::new("ftp://kibana", "u", "p", None),
            Err(KibanaError::Url { .. })
        ));
        assert!(matches!(
            Kibana::new("not a url", "u", "p", None),
            Err(KibanaError::Url { .. })
        ));
        assert!(matches!(
            Kibana::new("https://k:5601", "u", "p", Some(b"not pem")),
            Err(KibanaError::Ca(_))
        ));
        let kibana = Kibana::new("https://k:5601/", "u", "secret", None).expect("valid");
        assert_eq!(kibana.url, "https://k:5601");
        assert!(
            !format!("{kibana:?}").contains("secret"),
            "the password never reaches a log"
        );
    }

    #[test]
    fn an_import_with_errors_names_each_object() {
        let answer: ImportAnswer = serde_json::from_value(serde_json::json!({
            "success": false, "successCount": 6,
            "errors": [{"id": "cilvest-p-posts", "type": "search", "title": "Posts",
                        "error": {"type": "missing_references"}}]
        }))
        .expect("documented shape");
        let err = answer_result(answer).expect_err("a partial import fails");
        assert_eq!(
            err.to_string(),
            "kibana imported 6 saved objects but refused 1: search cilvest-p-posts: missing_references"
        );
    }
}
