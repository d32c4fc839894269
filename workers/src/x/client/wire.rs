//! The X API's response bodies, as far as the source reads them, and what the source returns.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// One tweet as a source returns it: the v2 object untouched plus what the envelope adds.
#[derive(Clone, Debug, PartialEq)]
pub struct SourcedTweet {
    pub id: u64,
    pub tweet: Value,
    pub author_username: Option<String>,
    pub fetched_at: DateTime<Utc>,
}

/// What one call to a source returned.
#[derive(Debug, Default)]
pub struct Batch {
    /// Oldest first, without duplicates, every id above the `since_id` asked for.
    pub tweets: Vec<SourcedTweet>,
    /// More is available right away: call again without waiting for the poll interval.
    pub more: bool,
}

/// One page of a search response: only what the producer reads; tweets stay raw JSON.
#[derive(Deserialize)]
pub(crate) struct SearchPage {
    #[serde(default)]
    pub(crate) data: Vec<Value>,
    #[serde(default)]
    pub(crate) includes: Includes,
    #[serde(default)]
    pub(crate) meta: Meta,
}

#[derive(Deserialize, Default)]
pub(crate) struct Includes {
    #[serde(default)]
    pub(crate) users: Vec<User>,
}

#[derive(Deserialize)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct Meta {
    #[serde(default)]
    pub(crate) next_token: Option<String>,
}

/// One page of a counts response.
#[derive(Deserialize)]
pub(crate) struct CountsPage {
    #[serde(default)]
    pub(crate) data: Vec<HourCount>,
    #[serde(default)]
    pub(crate) meta: Meta,
}

/// The number of posts a query matched in one bucket (an hour, with `granularity=hour`).
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HourCount {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tweet_count: u64,
}

/// X's error bodies: RFC 7807 problem details (`title`, `detail`, `type`), sometimes with an `errors` list.
#[derive(Deserialize, Default)]
pub(crate) struct Problem {
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) detail: Option<String>,
    #[serde(default)]
    pub(crate) errors: Vec<Value>,
}
