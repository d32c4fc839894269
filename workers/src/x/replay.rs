//! The replay source: a JSONL file of tweets in the v2 shape, published in id order for demos and tests, at a given
//! rate or as fast as the bus takes them.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use chrono::Utc;
use serde_json::Value;

use super::client::{Batch, SearchPage, SourceError, SourcedTweet};
use crate::tweet;

/// A JSONL file of tweets in the v2 shape, replayed oldest first: each line is a search response page
/// (`{"data":[…],"includes":{"users":[…]}}`), an envelope (`{"tweet":{…},"author_username":"…"}`) or a bare
/// tweet object, optionally with `author_username`.
pub struct ReplaySource {
    tweets: Vec<SourcedTweet>,
    /// Tweets per second, or as fast as Kafka takes them.
    rate: Option<f64>,
    next_slot: Option<tokio::time::Instant>,
}

impl ReplaySource {
    pub fn open(path: &Path, rate: Option<f64>) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::ReplayRead {
            path: path.to_owned(),
            source,
        })?;
        let fetched_at = Utc::now();
        let mut by_id = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| SourceError::ReplayLine {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            for (tweet, author_username) in replay_line(value).map_err(bad)? {
                let id = tweet
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(tweet::id_number)
                    .ok_or_else(|| bad("a tweet has no numeric string id".to_owned()))?;
                by_id.entry(id).or_insert(SourcedTweet {
                    id,
                    tweet,
                    author_username,
                    fetched_at,
                });
            }
        }
        Ok(Self {
            tweets: by_id.into_values().collect(),
            rate: rate.filter(|r| *r > 0.0),
            next_slot: None,
        })
    }

    /// Number of distinct tweets in the file.
    pub fn len(&self) -> usize {
        self.tweets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tweets.is_empty()
    }

    /// The next tweets above `since_id`: all of them, or with a rate, one second's worth after waiting for
    /// their turn.
    pub async fn next(&mut self, since_id: Option<u64>) -> Batch {
        let start = since_id.map_or(0, |since| self.tweets.partition_point(|t| t.id <= since));
        let remaining = &self.tweets[start..];
        let Some(rate) = self.rate else {
            return Batch {
                tweets: remaining.to_vec(),
                more: false,
            };
        };
        if remaining.is_empty() {
            return Batch::default();
        }
        let count = (rate.floor() as usize).clamp(1, remaining.len());
        let now = tokio::time::Instant::now();
        let slot = self.next_slot.unwrap_or(now).max(now);
        tokio::time::sleep_until(slot).await;
        self.next_slot = Some(slot + Duration::from_secs_f64(count as f64 / rate));
        Batch {
            tweets: remaining[..count].to_vec(),
            more: count < remaining.len(),
        }
    }
}

/// The tweets (with usernames) one replay line carries.
fn replay_line(value: Value) -> Result<Vec<(Value, Option<String>)>, String> {
    let Value::Object(mut map) = value else {
        return Err("not a JSON object".to_owned());
    };
    if let Some(data) = map.get("data") {
        let page: SearchPage = serde_json::from_value(Value::Object(map.clone())).map_err(|e| e.to_string())?;
        let users: HashMap<String, String> = page.includes.users.into_iter().map(|u| (u.id, u.username)).collect();
        let Value::Array(tweets) = data else {
            return Err("`data` is not an array".to_owned());
        };
        return Ok(tweets
            .iter()
            .map(|tweet| {
                let username = tweet
                    .get("author_id")
                    .and_then(Value::as_str)
                    .and_then(|author| users.get(author).cloned());
                (tweet.clone(), username)
            })
            .collect());
    }
    let username = map
        .remove("author_username")
        .and_then(|u| u.as_str().map(str::to_owned));
    match map.remove("tweet") {
        Some(tweet) => Ok(vec![(tweet, username)]),
        None => Ok(vec![(Value::Object(map), username)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_lines_in_every_shape() {
        let page = serde_json::json!({
            "data": [{"id": "12", "text": "saham", "author_id": "7"}],
            "includes": {"users": [{"id": "7", "username": "budi", "name": "Budi"}]},
            "meta": {"result_count": 1}
        });
        let parsed = replay_line(page).expect("page");
        assert_eq!(parsed[0].1.as_deref(), Some("budi"));
        let envelope = serde_json::json!({"tweet": {"id": "13", "text": "sukuk"}, "author_username": "sari"});
        assert_eq!(replay_line(envelope).expect("envelope")[0].1.as_deref(), Some("sari"));
        let bare = serde_json::json!({"id": "14", "text": "reksa dana", "author_username": "ani"});
        let parsed = replay_line(bare).expect("bare");
        assert_eq!(parsed[0].1.as_deref(), Some("ani"));
        assert!(
            parsed[0].0.get("author_username").is_none(),
            "the tweet keeps its v2 shape"
        );
        assert!(replay_line(serde_json::json!([1])).is_err());
    }
}
