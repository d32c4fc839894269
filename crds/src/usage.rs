//! The X usage record the producer keeps in the ConfigMap `<pipeline>-x-usage` and the operator copies into
//! `status.xUsage`: one calendar month (UTC) of posts read, requests, counts requests, and the range of posts
//! not read yet. The operator creates the ConfigMap with metadata only; the producer owns its `data`.

use std::collections::BTreeMap;

/// Suffix of the usage ConfigMap's name after the pipeline's.
pub const USAGE_CONFIGMAP_SUFFIX: &str = "-x-usage";
/// The field manager the producer writes `data` with.
pub const USAGE_FIELD_MANAGER: &str = "cilvest-producer";
/// Environment variable naming the usage ConfigMap in the producer's pod.
pub const USAGE_CONFIGMAP_ENV: &str = "CILVEST_X_USAGE_CONFIGMAP";

const MONTH: &str = "month";
const POSTS_READ: &str = "postsRead";
const REQUESTS: &str = "requests";
const COUNT_REQUESTS: &str = "countRequests";
const UNREAD_SINCE_ID: &str = "unreadSinceId";
const UNREAD_UNTIL_ID: &str = "unreadUntilId";
const REJECTION: &str = "xRejection";
const REJECTION_MESSAGE: &str = "xRejectionMessage";

/// X refuses the producer's requests: only a person can fix it (a revoked token, a query X does not accept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `unauthorized` (HTTP 401 or 403: the bearer token) or `rejected` (HTTP 400: the query).
    pub kind: String,
    /// X's own words, without the token.
    pub message: String,
}

/// Posts X matched but the producer has not read yet: every id above `since_id` and below `until_id`. Left by a
/// poll the budget cut short (search reads newest first); read before anything newer once the budget allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unread {
    /// Exclusive lower bound; `None` when the poll started from a time rather than an id.
    pub since_id: Option<u64>,
    /// Exclusive upper bound: the oldest post read.
    pub until_id: u64,
}

/// One month's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageRecord {
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub posts_read: u64,
    pub requests: u64,
    pub count_requests: u64,
    pub unread: Option<Unread>,
    /// Set while X refuses the producer's requests; cleared by the next answer.
    pub rejection: Option<Rejection>,
}

/// The usage ConfigMap of `pipeline`.
pub fn usage_configmap_name(pipeline: &str) -> String {
    format!("{pipeline}{USAGE_CONFIGMAP_SUFFIX}")
}

impl UsageRecord {
    /// The ConfigMap `data` for this record.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            (MONTH.to_owned(), self.month.clone()),
            (POSTS_READ.to_owned(), self.posts_read.to_string()),
            (REQUESTS.to_owned(), self.requests.to_string()),
            (COUNT_REQUESTS.to_owned(), self.count_requests.to_string()),
        ]);
        if let Some(unread) = self.unread {
            if let Some(since) = unread.since_id {
                data.insert(UNREAD_SINCE_ID.to_owned(), since.to_string());
            }
            data.insert(UNREAD_UNTIL_ID.to_owned(), unread.until_id.to_string());
        }
        if let Some(rejection) = &self.rejection {
            data.insert(REJECTION.to_owned(), rejection.kind.clone());
            data.insert(REJECTION_MESSAGE.to_owned(), rejection.message.clone());
        }
        data
    }

    /// The record in a ConfigMap's `data`; `None` when it holds none (no month). Malformed numbers read as 0.
    pub fn from_data(data: &BTreeMap<String, String>) -> Option<Self> {
        let month = data.get(MONTH).filter(|m| !m.is_empty())?.clone();
        let number = |key: &str| data.get(key).and_then(|v| v.trim().parse::<u64>().ok());
        Some(Self {
            month,
            posts_read: number(POSTS_READ).unwrap_or(0),
            requests: number(REQUESTS).unwrap_or(0),
            count_requests: number(COUNT_REQUESTS).unwrap_or(0),
            unread: number(UNREAD_UNTIL_ID).map(|until_id| Unread {
                since_id: number(UNREAD_SINCE_ID),
                until_id,
            }),
            rejection: data.get(REJECTION).filter(|k| !k.is_empty()).map(|kind| Rejection {
                kind: kind.clone(),
                message: data.get(REJECTION_MESSAGE).cloned().unwrap_or_default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_configmap_data() {
        let record = UsageRecord {
            month: "2026-11".into(),
            posts_read: 1234,
            requests: 20,
            count_requests: 9,
            unread: Some(Unread {
                since_id: Some(7),
                until_id: 99,
            }),
            rejection: Some(Rejection {
                kind: "unauthorized".into(),
                message: "X rejected the bearer token (HTTP 401): Unauthorized".into(),
            }),
        };
        assert_eq!(UsageRecord::from_data(&record.to_data()), Some(record));
        assert_eq!(UsageRecord::from_data(&BTreeMap::new()), None);
    }
}
