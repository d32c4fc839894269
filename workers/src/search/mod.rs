//! Elasticsearch: the client (verifying the cluster's CA, ECK's `<name>-es-http-certs-public`, when given one), the
//! tweets index with its explicit mapping, and the replacement of one local day's documents.
//!
//! ```text
//!  alias <index> ──▶ <index>-2026.10, <index>-2026.11, …   (one index per local month, created with the mapping)
//!  day D: delete_by_query local_date = D on the alias ─▶ _bulk into <index>-YYYY.MM with _id = tweet id ─▶ refresh
//! ```
//! Documents have the tweet id as `_id`, so indexing a day twice overwrites instead of duplicating; deleting the
//! day first also removes tweets that a rerun no longer keeps.

use std::time::Duration;

use chrono::{NaiveDate, SecondsFormat};
use elasticsearch::{
    BulkParts, DeleteByQueryParts, Elasticsearch,
    auth::Credentials,
    cert::{Certificate, CertificateValidation},
    http::{
        StatusCode,
        request::JsonBody,
        transport::{BuildError, SingleNodeConnectionPool, TransportBuilder},
    },
    indices::{IndicesCreateParts, IndicesExistsParts, IndicesPutAliasParts, IndicesRefreshParts},
    params::Conflicts,
};
use serde_json::{Value, json};

use crate::{retry::Backoff, transform::CuratedTweet};

pub mod dashboard;
pub mod kibana;

/// Documents per `_bulk` request: a few MB of tweets, well below Elasticsearch's 100 MB request limit.
const BULK_CHUNK: usize = 1_000;
/// How many failed items a report keeps verbatim.
const FAILURE_EXAMPLES: usize = 5;

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

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("failed to {action} {target}: {source}")]
    Request {
        action: &'static str,
        target: String,
        #[source]
        source: elasticsearch::Error,
    },
    #[error("failed to {action} {target}: HTTP {status}: {body}")]
    Status {
        action: &'static str,
        target: String,
        status: u16,
        body: String,
    },
    #[error("failed to index {failed} of {total} documents into {index}: {examples}")]
    Rejected {
        index: String,
        failed: usize,
        total: usize,
        examples: String,
    },
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

/// The explicit mapping of tweet documents: exact-match fields are `keyword`, prose is `text`, and unknown fields
/// are refused so that a typo cannot silently grow the mapping.
pub fn mapping() -> Value {
    json!({
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "created_at": {"type": "date"},
            "local_date": {"type": "date", "format": "yyyy-MM-dd"},
            "local_hour": {"type": "integer"},
            "username": {"type": "keyword"},
            "text": {"type": "text"},
            "text_clean": {"type": "text"},
            "lang": {"type": "keyword"},
            "keywords": {"type": "keyword"},
        }
    })
}

/// The index holding local day `date`'s documents: `<alias>-YYYY.MM`.
pub fn monthly_index(alias: &str, date: NaiveDate) -> String {
    format!("{alias}-{}", date.format("%Y.%m"))
}

/// The search document of a curated tweet.
pub fn document(row: &CuratedTweet) -> Value {
    json!({
        "id": row.id,
        "created_at": row.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "local_date": row.local_date.to_string(),
        "local_hour": row.local_hour,
        "username": row.username,
        "text": row.text,
        "text_clean": row.text_clean,
        "lang": row.lang,
        "keywords": row.keywords,
    })
}

/// Create `index` with the mapping behind `alias`, or, when it exists, make sure it is behind `alias`.
pub async fn ensure_index(es: &Elasticsearch, alias: &str, index: &str) -> Result<(), SearchError> {
    let exists = es
        .indices()
        .exists(IndicesExistsParts::Index(&[index]))
        .send()
        .await
        .map_err(|source| request_error("check", index, source))?;
    let response = if exists.status_code().is_success() {
        es.indices()
            .put_alias(IndicesPutAliasParts::IndexName(&[index], alias))
            .send()
            .await
            .map_err(|source| request_error("add alias to", index, source))?
    } else {
        es.indices()
            .create(IndicesCreateParts::Index(index))
            .body(json!({"mappings": mapping(), "aliases": {alias: {}}}))
            .send()
            .await
            .map_err(|source| request_error("create", index, source))?
    };
    let status = response.status_code();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    // Another run created it between our check and our create.
    if status == StatusCode::BAD_REQUEST && body.contains("resource_already_exists_exception") {
        return Ok(());
    }
    Err(status_error("create", index, status, body))
}

/// Delete every document of local day `date` behind `alias`; returns how many. An alias that does not exist yet
/// holds nothing.
pub async fn delete_day(es: &Elasticsearch, alias: &str, date: NaiveDate) -> Result<u64, SearchError> {
    let target = format!("{alias} documents of {date}");
    let response = es
        .delete_by_query(DeleteByQueryParts::Index(&[alias]))
        .conflicts(Conflicts::Proceed)
        .refresh(true)
        .body(json!({"query": {"term": {"local_date": date.to_string()}}}))
        .send()
        .await
        .map_err(|source| request_error("delete", &target, source))?;
    let status = response.status_code();
    if status == StatusCode::NOT_FOUND {
        return Ok(0);
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(status_error("delete", &target, status, body));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|source| request_error("delete", &target, source))?;
    if body["failures"].as_array().is_some_and(|f| !f.is_empty()) {
        return Err(status_error("delete", &target, status, body["failures"].to_string()));
    }
    Ok(body["deleted"].as_u64().unwrap_or(0))
}

/// How item-level throttling (429) is retried.
#[derive(Debug, Clone, Copy)]
pub struct BulkRetry {
    /// Attempts per item, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one.
    pub initial_backoff: Duration,
}

impl Default for BulkRetry {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// One document Elasticsearch would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub id: String,
    pub status: u16,
    pub reason: String,
}

/// The outcome of indexing a set of documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Documents indexed.
    pub indexed: usize,
    /// Item retries after a 429.
    pub retries: usize,
    /// Documents refused for good (or still throttled after every attempt).
    pub failed: Vec<ItemFailure>,
}

impl BulkReport {
    /// An error naming the failures, if there were any.
    pub fn into_result(self, index: &str, total: usize) -> Result<Self, SearchError> {
        if self.failed.is_empty() {
            return Ok(self);
        }
        let examples = self
            .failed
            .iter()
            .take(FAILURE_EXAMPLES)
            .map(|f| format!("{} (HTTP {}: {})", f.id, f.status, f.reason))
            .collect::<Vec<_>>()
            .join(", ");
        Err(SearchError::Rejected {
            index: index.to_owned(),
            failed: self.failed.len(),
            total,
            examples,
        })
    }
}

/// What became of one item of a `_bulk` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Indexed,
    /// 429: Elasticsearch is busy; the same item may succeed later.
    Throttled,
    Failed {
        status: u16,
        reason: String,
    },
}

/// The outcome of each item of a `_bulk` response, in request order. Items missing from the response count as
/// failed.
pub fn item_outcomes(response: &Value, expected: usize) -> Vec<ItemOutcome> {
    let items = response["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    (0..expected)
        .map(|i| {
            let Some(item) = items.get(i).and_then(|item| item.as_object()?.values().next()) else {
                return ItemOutcome::Failed {
                    status: 0,
                    reason: "missing from the bulk response".to_owned(),
                };
            };
            let status = item["status"].as_u64().unwrap_or(0) as u16;
            match status {
                200..=299 => ItemOutcome::Indexed,
                429 => ItemOutcome::Throttled,
                _ => ItemOutcome::Failed {
                    status,
                    reason: match &item["error"] {
                        Value::Object(error) => format!(
                            "{}: {}",
                            error.get("type").and_then(Value::as_str).unwrap_or("error"),
                            error.get("reason").and_then(Value::as_str).unwrap_or("")
                        ),
                        Value::Null => "no error given".to_owned(),
                        other => other.to_string(),
                    },
                },
            }
        })
        .collect()
}

/// Index `docs` (`_id`, document) into `index` in chunks, retrying throttled items (and whole requests answered
/// with 429 or 503) with exponential backoff. Permanent item failures are returned in the report, not as an error,
/// so that one bad document does not hold back the rest.
pub async fn bulk_index(
    es: &Elasticsearch,
    index: &str,
    docs: &[(String, Value)],
    retry: BulkRetry,
) -> Result<BulkReport, SearchError> {
    let mut report = BulkReport::default();
    for chunk in docs.chunks(BULK_CHUNK) {
        let mut pending: Vec<&(String, Value)> = chunk.iter().collect();
        // Steps double up to the last attempt's, as many as there are attempts.
        let last_step = retry
            .initial_backoff
            .saturating_mul(1 << retry.attempts.clamp(1, 16).saturating_sub(1));
        let backoff = Backoff::new(retry.initial_backoff, last_step);
        for attempt in 1..=retry.attempts.max(1) {
            let body: Vec<JsonBody<Value>> = pending
                .iter()
                .flat_map(|(id, doc)| [json!({"index": {"_id": id}}).into(), doc.clone().into()])
                .collect();
            let response = es
                .bulk(BulkParts::Index(index))
                .body(body)
                .send()
                .await
                .map_err(|source| request_error("bulk index into", index, source))?;
            let status = response.status_code();
            let last = attempt == retry.attempts.max(1);
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                if last {
                    let body = response.text().await.unwrap_or_default();
                    return Err(status_error("bulk index into", index, status, body));
                }
                report.retries += pending.len();
                tokio::time::sleep(backoff.wait(attempt)).await;
                continue;
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(status_error("bulk index into", index, status, body));
            }
            let body: Value = response
                .json()
                .await
                .map_err(|source| request_error("bulk index into", index, source))?;
            let mut throttled = Vec::new();
            for (doc, outcome) in pending.iter().zip(item_outcomes(&body, pending.len())) {
                match outcome {
                    ItemOutcome::Indexed => report.indexed += 1,
                    ItemOutcome::Throttled if !last => throttled.push(*doc),
                    ItemOutcome::Throttled => report.failed.push(ItemFailure {
                        id: doc.0.clone(),
                        status: 429,
                        reason: format!("still throttled after {attempt} attempts"),
                    }),
                    ItemOutcome::Failed { status, reason } => report.failed.push(ItemFailure {
                        id: doc.0.clone(),
                        status,
                        reason,
                    }),
                }
            }
            if throttled.is_empty() {
                break;
            }
            report.retries += throttled.len();
            pending = throttled;
            tokio::time::sleep(backoff.wait(attempt)).await;
        }
    }
    Ok(report)
}

/// Make what was indexed visible to searches now rather than at the next periodic refresh.
pub async fn refresh(es: &Elasticsearch, index: &str) -> Result<(), SearchError> {
    let response = es
        .indices()
        .refresh(IndicesRefreshParts::Index(&[index]))
        .send()
        .await
        .map_err(|source| request_error("refresh", index, source))?;
    let status = response.status_code();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(status_error("refresh", index, status, body))
    }
}

fn request_error(action: &'static str, target: &str, source: elasticsearch::Error) -> SearchError {
    SearchError::Request {
        action,
        target: target.to_owned(),
        source,
    }
}

fn status_error(action: &'static str, target: &str, status: StatusCode, body: String) -> SearchError {
    let body = match body.char_indices().nth(500) {
        Some((end, _)) => body[..end].to_owned(),
        None => body,
    };
    SearchError::Status {
        action,
        target: target.to_owned(),
        status: status.as_u16(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_are_indexed_throttled_or_failed() {
        let response = json!({"errors": true, "items": [
            {"index": {"_id": "1", "status": 201, "result": "created"}},
            {"index": {"_id": "2", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}}},
            {"index": {"_id": "3", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad date"}}},
            {"index": {"_id": "4", "status": 200, "result": "updated"}},
        ]});
        assert_eq!(
            item_outcomes(&response, 5),
            [
                ItemOutcome::Indexed,
                ItemOutcome::Throttled,
                ItemOutcome::Failed {
                    status: 400,
                    reason: "mapper_parsing_exception: bad date".into()
                },
                ItemOutcome::Indexed,
                ItemOutcome::Failed {
                    status: 0,
                    reason: "missing from the bulk response".into()
                },
            ]
        );
    }

    #[test]
    fn a_report_with_failures_is_an_error_naming_them() {
        let report = BulkReport {
            indexed: 9,
            retries: 0,
            failed: vec![ItemFailure {
                id: "7".into(),
                status: 400,
                reason: "mapper_parsing_exception: bad".into(),
            }],
        };
        let err = report.into_result("tweets-2026.11", 10).expect_err("failures");
        assert_eq!(
            err.to_string(),
            "failed to index 1 of 10 documents into tweets-2026.11: 7 (HTTP 400: mapper_parsing_exception: bad)"
        );
    }

    #[test]
    fn monthly_indices_follow_the_local_day() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        assert_eq!(monthly_index("cilvest-tweets", date), "cilvest-tweets-2026.11");
    }
}
