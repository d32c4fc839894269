//! The fake's tweets: authors, snowflake ids and the JSON X returns for a tweet (only the requested fields), and the
//! queries the fake understands.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{FakeState, NOTE_TWEET_CUT, QUERY_LIMIT, SNOWFLAKE_EPOCH_MS, StoredTweet};

impl FakeState {
    /// One of a fixed set of authors, created on first use.
    pub(super) fn user(&mut self, slot: usize) -> String {
        let id = (1000 + slot).to_string();
        self.users
            .entry(id.clone())
            .or_insert_with(|| format!("investor_{slot}"));
        id
    }

    /// A snowflake id for a tweet posted at `created_at`.
    pub(super) fn new_id(&mut self, created_at: DateTime<Utc>) -> u64 {
        let base = ((created_at.timestamp_millis() - SNOWFLAKE_EPOCH_MS).max(0) as u64) << 22;
        // A tweet posted now gets an id above every earlier one, as on X; a back-dated one a free id at its time.
        let mut id = if created_at > Utc::now() - TimeDelta::seconds(60) {
            base.max(self.last_id + 1)
        } else {
            base
        };
        while self.tweets.contains_key(&id) {
            id += 1;
        }
        self.last_id = self.last_id.max(id);
        id
    }

    pub(super) fn tweet_json(&self, tweet: &StoredTweet, fields: &BTreeSet<&str>) -> Value {
        // X's default fields; everything else only when asked for in tweet.fields. A long post's `text` is its first
        // 280 characters; the whole post is only in `note_tweet`, and only when asked for.
        let long = tweet.text.chars().count() > NOTE_TWEET_CUT;
        let text: String = tweet.text.chars().take(NOTE_TWEET_CUT).collect();
        let mut object =
            json!({"id": tweet.id.to_string(), "text": text, "edit_history_tweet_ids": [tweet.id.to_string()]});
        let map = object.as_object_mut().expect("an object");
        if long && fields.contains("note_tweet") {
            map.insert(
                "note_tweet".into(),
                json!({"text": tweet.text, "entities": {"hashtags": hashtags(&tweet.text)}}),
            );
        }
        if fields.contains("created_at") {
            map.insert(
                "created_at".into(),
                json!(tweet.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        if fields.contains("lang") {
            map.insert("lang".into(), json!(tweet.lang));
        }
        if fields.contains("author_id") {
            map.insert("author_id".into(), json!(tweet.author_id));
        }
        if fields.contains("referenced_tweets") {
            let mut referenced = Vec::new();
            if let Some(id) = tweet.retweet_of {
                referenced.push(json!({"type": "retweeted", "id": id.to_string()}));
            }
            if let Some(id) = tweet.reply_to {
                referenced.push(json!({"type": "replied_to", "id": id.to_string()}));
            }
            if !referenced.is_empty() {
                map.insert("referenced_tweets".into(), Value::Array(referenced));
            }
        }
        if fields.contains("public_metrics") {
            map.insert(
                "public_metrics".into(),
                json!({"retweet_count": tweet.likes / 5, "reply_count": tweet.likes / 7, "like_count": tweet.likes,
                       "quote_count": 0, "bookmark_count": tweet.likes / 10, "impression_count": tweet.likes * 40}),
            );
        }
        object
    }
}

/// X's `entities.hashtags` of a text: each `#tag` with its character offsets.
fn hashtags(text: &str) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let mut tags = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '#' {
            let end = (i + 1..chars.len())
                .find(|&j| !chars[j].is_alphanumeric() && chars[j] != '_')
                .unwrap_or(chars.len());
            if end > i + 1 {
                let tag: String = chars[i + 1..end].iter().collect();
                tags.push(json!({"start": i, "end": end, "tag": tag}));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    tags
}

/// The parts of a query the fake understands: `(a OR "b c" OR #d) lang:xx -is:retweet`.
pub(super) struct ParsedQuery {
    terms: Vec<String>,
    lang: Option<String>,
    no_retweets: bool,
}

impl ParsedQuery {
    pub(super) fn parse(query: &str) -> Result<Self, String> {
        let length = query.chars().count();
        if length > QUERY_LIMIT {
            return Err(format!(
                "There were errors processing your request: Query length ({length}) exceeds the maximum of \
                 {QUERY_LIMIT} characters"
            ));
        }
        let (group, rest) = match (query.find('('), query.rfind(')')) {
            (Some(open), Some(close)) if open < close => (&query[open + 1..close], &query[close + 1..]),
            _ => return Err("There were errors processing your request: expected a group of terms".to_owned()),
        };
        let terms: Vec<String> = group
            .split(" OR ")
            .map(|term| term.trim().trim_matches('"').to_lowercase())
            .filter(|term| !term.is_empty())
            .collect();
        let mut lang = None;
        let mut no_retweets = false;
        for operator in rest.split_whitespace() {
            if let Some(code) = operator.strip_prefix("lang:") {
                // X's query language accepts BCP-47 only; the legacy `in` (which it still returns) is refused.
                if code == "in" || !(2..=3).contains(&code.len()) {
                    return Err(format!(
                        "There were errors processing your request: Invalid language code `{code}` for operator \
                         `lang` (at position {})",
                        query.find(operator).map_or(0, |p| p + 1)
                    ));
                }
                lang = Some(code.to_owned());
            } else if operator == "-is:retweet" {
                no_retweets = true;
            }
        }
        Ok(Self {
            terms,
            lang,
            no_retweets,
        })
    }

    pub(super) fn matches(&self, tweet: &StoredTweet) -> bool {
        let text = tweet.text.to_lowercase();
        let lang_ok = match self.lang.as_deref() {
            // Responses say `in` for Indonesian while the operator says `id`.
            Some("id") => tweet.lang == "in" || tweet.lang == "id",
            Some(code) => tweet.lang == code,
            None => true,
        };
        lang_ok && !(self.no_retweets && tweet.retweet_of.is_some()) && self.terms.iter().any(|t| text.contains(t))
    }
}
