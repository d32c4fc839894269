//! The tweet envelope: the one record format on the raw topic and in the lake's `raw/` objects.
//!
//! The producer writes `{"tweet": <the X API v2 tweet object as returned>, "author_username": "...",
//! "fetched_at": "<RFC 3339>"}` with the tweet id as the Kafka key. Readers also accept a bare v2 tweet object
//! with an `author_username` field (the demo's `--input` format).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields of an X API v2 tweet that Cilvest reads. Unknown fields are kept by the envelope's raw value.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct Tweet {
    pub id: String,
    /// The whole post: X's `text` carries only the first 280 characters of a long post, whose full text is in
    /// `note_tweet.text` (when `tweet.fields` asks for `note_tweet`); [`parse`] puts the full text here.
    pub text: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referenced_tweets: Vec<ReferencedTweet>,
    /// A long post's full text (X API v2 `note_tweet`, posts over 280 characters since 2023).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_tweet: Option<NoteTweet>,
}

/// The full text of a long post.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct NoteTweet {
    pub text: String,
}

/// A tweet this one retweets, quotes or replies to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct ReferencedTweet {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// A tweet with its author's username, as carried on the raw topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The tweet object exactly as X returned it.
    pub tweet: Value,
    /// The author's username, resolved from the response's `includes.users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_username: Option<String>,
    /// When the producer read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<DateTime<Utc>>,
}

/// Why a record is not a tweet envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a tweet: {0}")]
    Tweet(serde_json::Error),
    #[error("tweet id {0:?} is not a decimal number")]
    Id(String),
}

/// An envelope whose tweet has been checked and decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub tweet: Tweet,
    pub author_username: Option<String>,
}

impl Envelope {
    /// Wrap a tweet object from the API.
    pub fn new(tweet: Value, author_username: Option<String>, fetched_at: DateTime<Utc>) -> Self {
        Self {
            tweet,
            author_username,
            fetched_at: Some(fetched_at),
        }
    }
}

/// Parse one record: an envelope, or a bare tweet object with `author_username`.
pub fn parse(bytes: &[u8]) -> Result<Parsed, EnvelopeError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let (tweet_value, author_username) = match value {
        Value::Object(mut map) if map.contains_key("tweet") => {
            let username = map
                .remove("author_username")
                .and_then(|u| u.as_str().map(str::to_owned));
            (map.remove("tweet").unwrap_or(Value::Null), username)
        }
        Value::Object(map) => {
            let username = map.get("author_username").and_then(Value::as_str).map(str::to_owned);
            (Value::Object(map), username)
        }
        other => (other, None),
    };
    let mut tweet: Tweet = serde_json::from_value(tweet_value).map_err(EnvelopeError::Tweet)?;
    // Cleaning, matching, the warehouse and search all read the whole post.
    if let Some(note) = tweet.note_tweet.take() {
        tweet.text = note.text;
    }
    if tweet.id.is_empty() || tweet.id.len() > 20 || !tweet.id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EnvelopeError::Id(tweet.id));
    }
    Ok(Parsed { tweet, author_username })
}

/// Tweet ids are snowflakes: numeric order is time order. Compare them as numbers, not strings.
pub fn id_number(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// Twitter's snowflake epoch (2010-11-04T01:42:54.657Z): an id's top 41 bits count milliseconds from it.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// When the tweet with this id was posted: snowflake ids carry their creation time.
pub fn snowflake_time(id: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(id >> 22).ok()? + SNOWFLAKE_EPOCH_MS)
}

/// The largest id a post from before `at` can have: a `since_id` that means "posted at `at` or later".
pub fn snowflake_floor(at: DateTime<Utc>) -> u64 {
    let ms = (at.timestamp_millis() - SNOWFLAKE_EPOCH_MS).max(1) as u64;
    (ms << 22).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelopes_and_bare_tweets() {
        let envelope = br#"{"tweet":{"id":"1850000000000000001","text":"beli saham","created_at":"2026-11-01T03:04:05.000Z","lang":"in","author_id":"42"},"author_username":"budi"}"#;
        let parsed = parse(envelope).expect("envelope");
        assert_eq!(parsed.tweet.id, "1850000000000000001");
        assert_eq!(parsed.tweet.lang.as_deref(), Some("in"));
        assert_eq!(parsed.author_username.as_deref(), Some("budi"));

        let bare = br#"{"id":"7","text":"sukuk","created_at":"2026-11-01T03:04:05Z","author_username":"sari"}"#;
        assert_eq!(parse(bare).expect("bare").author_username.as_deref(), Some("sari"));
    }

    #[test]
    fn a_long_post_is_read_whole_from_note_tweet() {
        let head = "a".repeat(280);
        let full = format!("{head} reksadana");
        let envelope = serde_json::json!({
            "tweet": {"id": "9", "text": head, "created_at": "2026-11-01T03:04:05Z",
                      "note_tweet": {"text": full, "entities": {"hashtags": []}}},
            "author_username": "budi",
        });
        let parsed = parse(envelope.to_string().as_bytes()).expect("envelope");
        assert_eq!(parsed.tweet.text, full);
        assert_eq!(parsed.tweet.note_tweet, None, "the full text moved into text");
    }

    #[test]
    fn rejects_what_is_not_a_tweet() {
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"tweet":{"id":"1"}}"#,
            br#"{"id":"12a","text":"x","created_at":"2026-11-01T00:00:00Z"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
