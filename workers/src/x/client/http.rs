//! One request to X and its retries: rate-limit windows, backoff, and X's problem details turned into errors.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Endpoint, MAX_RESET_WAIT, RESET_MARGIN, SourceError, XSource, wire::Problem};
use crate::retry::Backoff;

/// How long to wait between failed requests.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// First wait after a 5xx, timeout or malformed body; doubled on every further failure.
    pub initial: Duration,
    /// Longest wait after a 5xx, timeout or malformed body.
    pub max: Duration,
    /// Wait after 401, 403 or 400: only a person can fix those, so ask rarely.
    pub configuration: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): the workers' one backoff ([`crate::retry`]).
    pub fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.initial, self.max).wait(attempt)
    }
}

impl XSource {
    /// One answer, retried until X gives one; with `fail_on_configuration_error`, a rejected token or query
    /// is returned instead of retried.
    pub(super) async fn fetch_with_retry<T: DeserializeOwned>(
        &mut self,
        endpoint: Endpoint,
        params: &[(&str, String)],
    ) -> Result<T, SourceError> {
        let mut failures = 0u32;
        loop {
            self.wait_for_rate_limit(endpoint).await;
            let error = match self.fetch(endpoint, params).await {
                Ok(page) => {
                    self.metrics.outcome("ok");
                    self.telemetry.set_ready(true);
                    if let Some(previous) = self.configuration_error.take() {
                        tracing::info!(previous_error = %previous, "X accepts the search request again");
                        self.metrics.configuration_error.set(0);
                    }
                    // Also a rejection an earlier process recorded: cleared in the usage record, which the caller
                    // saves with this request's count.
                    self.budget.set_rejection(None);
                    return Ok(page);
                }
                Err(error) => error,
            };
            self.metrics.outcome(error.kind());
            failures += 1;
            if error.is_configuration() {
                self.metrics.configuration_error.set(1);
                self.telemetry.set_ready(false);
                // Into the usage record, where the operator reads it (reason XUnauthorized or XRequestRejected).
                let rejection = cilvest_crds::usage::Rejection {
                    kind: error.kind().to_owned(),
                    message: error.to_string(),
                };
                if self.budget.set_rejection(Some(rejection)) {
                    self.save_usage().await;
                }
                if self.settings.fail_on_configuration_error {
                    return Err(error);
                }
            }
            let wait = match &error {
                SourceError::RateLimited { reset } => {
                    self.metrics.rate_limit_waits.inc();
                    let wait = match reset.and_then(until) {
                        Some(wait) => wait.min(MAX_RESET_WAIT) + RESET_MARGIN,
                        None => self.settings.retry.backoff(failures),
                    };
                    tracing::info!(error = %error, wait = ?wait, "pausing until the X rate-limit window resets");
                    wait
                }
                error if error.is_configuration() => {
                    // Once per distinct rejection: a log line every few minutes for days helps nobody.
                    let message = error.to_string();
                    if self.configuration_error.as_ref() != Some(&message) {
                        tracing::error!(
                            error = %message,
                            retry_in = ?self.settings.retry.configuration,
                            "X rejects the producer's requests: check the bearer token Secret and the pipeline's \
                             keywords; retrying rarely until it is fixed"
                        );
                    } else {
                        tracing::debug!(error = %message, "X still rejects the producer's requests");
                    }
                    self.configuration_error = Some(message);
                    self.settings.retry.configuration
                }
                _ => {
                    let wait = self.settings.retry.backoff(failures);
                    tracing::warn!(error = %error, attempt = failures, retry_in = ?wait, "X request failed");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Keep under `x-rate-limit-remaining`: with no request left in the endpoint's window, wait for its reset
    /// instead of spending a request on a 429.
    async fn wait_for_rate_limit(&mut self, endpoint: Endpoint) {
        let slot = &mut self.rate_limit[endpoint as usize];
        if let Some((0, reset)) = *slot
            && let Some(wait) = until(reset)
        {
            self.metrics.rate_limit_waits.inc();
            let wait = wait.min(MAX_RESET_WAIT) + RESET_MARGIN;
            tracing::info!(wait = ?wait, "no X requests left in this rate-limit window; waiting for its reset");
            tokio::time::sleep(wait).await;
        }
        self.rate_limit[endpoint as usize] = None;
    }

    async fn fetch<T: DeserializeOwned>(
        &mut self,
        endpoint: Endpoint,
        params: &[(&str, String)],
    ) -> Result<T, SourceError> {
        let url = match endpoint {
            Endpoint::Search => self.search_url.clone(),
            Endpoint::Counts => self.counts_url.clone(),
        };
        let response = self
            .http
            .get(url)
            .query(params)
            .header(reqwest::header::AUTHORIZATION, self.token.header())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let headers = response.headers();
        let remaining = header_number(headers, "x-rate-limit-remaining");
        let reset = header_number(headers, "x-rate-limit-reset").and_then(|s| DateTime::from_timestamp(s as i64, 0));
        if let Some(remaining) = remaining
            && endpoint == Endpoint::Search
        {
            self.metrics.rate_limit_remaining.set(remaining as i64);
        }
        self.rate_limit[endpoint as usize] = remaining.zip(reset);
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body).map_err(|e| SourceError::Malformed(e.to_string())),
            StatusCode::TOO_MANY_REQUESTS => Err(SourceError::RateLimited { reset }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
                status: status.as_u16(),
                detail: problem_detail(&body),
            }),
            s if s.is_server_error() => Err(SourceError::Server {
                status: s.as_u16(),
                detail: problem_detail(&body),
            }),
            s => Err(SourceError::Rejected {
                status: s.as_u16(),
                detail: problem_detail(&body),
            }),
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> SourceError {
        if error.is_timeout() {
            SourceError::Timeout(self.settings.timeout)
        } else if error.is_decode() || error.is_body() {
            SourceError::Malformed(error.without_url().to_string())
        } else {
            // The URL carries only the query; leave it out all the same to keep log lines short.
            SourceError::Transport(error.without_url())
        }
    }
}

/// The time between now and `at`, if `at` is in the future.
fn until(at: DateTime<Utc>) -> Option<Duration> {
    (at - Utc::now()).to_std().ok()
}

fn header_number(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A short description from an error body: `detail`, the first of `errors`, or `title`.
pub(super) fn problem_detail(body: &[u8]) -> String {
    let problem: Problem = serde_json::from_slice(body).unwrap_or_default();
    let first_error = problem
        .errors
        .first()
        .and_then(|e| e.get("message").or_else(|| e.get("detail")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let text = match (first_error, problem.detail, problem.title) {
        (Some(error), _, _) => error,
        (None, Some(detail), _) => detail,
        (None, None, Some(title)) => title,
        (None, None, None) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(300).collect()
}
