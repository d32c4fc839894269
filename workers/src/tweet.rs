//! The tweet envelope: the one record format on the raw topic and in the lake's `raw/` objects.
//!
//! The producer writes `{"tweet": <the X API v2 tweet object as returned>, "author_username": "...",
//! "fetched_at": "<RFC 3339>"}` with the tweet id as the Kafka key. Readers also accept a bare v2 tweet object
//! with an `author_username` field (the demo's `--input` format).

use std::borrow::Cow;

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

/// The `type` of a reference to the tweet this one retweets.
const RETWEETED: &str = "retweeted";

impl Tweet {
    /// Whether the tweet references a tweet of type `retweeted`.
    pub fn references_retweet(&self) -> bool {
        self.referenced_tweets.iter().any(|r| r.kind == RETWEETED)
    }
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
    if !valid_id(&tweet.id) {
        return Err(EnvelopeError::Id(tweet.id));
    }
    Ok(Parsed { tweet, author_username })
}

/// The fields of a record the daily transform reads, borrowed from the line wherever no JSON escape forces a copy:
/// what [`parse`] gives, without building the record as a `Value` first or copying the fields nobody reads.
#[derive(Clone, Debug, PartialEq)]
pub struct View<'a> {
    pub id: Cow<'a, str>,
    /// The whole post (`note_tweet.text` when there is one).
    pub text: Cow<'a, str>,
    pub created_at: DateTime<Utc>,
    pub lang: Option<Cow<'a, str>>,
    /// Whether the tweet references a tweet of type `retweeted`.
    pub references_retweet: bool,
    pub author_username: Option<Cow<'a, str>>,
}

/// Parse one record as [`parse`] does, borrowing its strings. A record the borrowed reading cannot take as it is
/// (escapes aside: a duplicate key, a field of an unexpected type, a bad id) goes through [`parse`], so the result
/// and the error are always [`parse`]'s.
pub fn parse_view(bytes: &[u8]) -> Result<View<'_>, EnvelopeError> {
    if let Some(view) = fast::view(bytes) {
        return Ok(view);
    }
    let Parsed { tweet, author_username } = parse(bytes)?;
    Ok(View {
        references_retweet: tweet.references_retweet(),
        id: Cow::Owned(tweet.id),
        text: Cow::Owned(tweet.text),
        created_at: tweet.created_at,
        lang: tweet.lang.map(Cow::Owned),
        author_username: author_username.map(Cow::Owned),
    })
}

/// The borrowed reading of a record. It must never accept a record that [`parse`] refuses or read one differently:
/// every field [`Tweet`] declares is declared here with the same type and default, so that it fails where
/// [`Tweet`] fails, and anything doubtful returns `None` for [`parse`] to decide.
mod fast {
    use super::*;

    /// An envelope. A bare tweet (the demo's `--input` format) has no `tweet` and goes to [`parse`]; so does
    /// `"tweet": null`, which [`parse`] refuses too. Strings that are never escaped in practice are borrowed as
    /// `&str`: an escaped one fails here and goes to [`parse`].
    #[derive(Deserialize)]
    struct Record<'a> {
        #[serde(borrow)]
        tweet: Fields<'a>,
        #[serde(default)]
        author_username: Option<&'a str>,
    }

    /// The fields of [`Tweet`], with its types and defaults.
    #[derive(Deserialize)]
    struct Fields<'a> {
        id: &'a str,
        #[serde(borrow)]
        text: Cow<'a, str>,
        created_at: DateTime<Utc>,
        #[serde(default)]
        lang: Option<&'a str>,
        #[serde(default, rename = "author_id")]
        _author_id: Option<&'a str>,
        #[serde(default, borrow)]
        referenced_tweets: Vec<Reference<'a>>,
        #[serde(default, borrow)]
        note_tweet: Option<Note<'a>>,
    }

    #[derive(Deserialize)]
    struct Reference<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(rename = "id")]
        _id: &'a str,
    }

    #[derive(Deserialize)]
    struct Note<'a> {
        #[serde(borrow)]
        text: Cow<'a, str>,
    }

    /// Whether serde_json could also build a `Value` of the whole line, as [`parse`] does first: the checks a
    /// `Value` makes of every field and skipping a field does not (valid UTF-8, no lone surrogate escapes, numbers
    /// within `f64`, nesting under serde_json's limit of 128), each made conservatively. A line that fails one (the
    /// fuzz target found the first) goes to [`parse`], which decides.
    fn value_would_read(bytes: &[u8]) -> bool {
        if std::str::from_utf8(bytes).is_err() {
            return false;
        }
        let surrogate = memchr::memmem::find_iter(bytes, b"\\u").any(|at| {
            matches!(
                bytes.get(at + 2..at + 4),
                Some([b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'])
            )
        });
        if surrogate {
            return false;
        }
        // A number with an exponent (or what looks like one inside a string), more than 300 digits in a row, or
        // more than 100 brackets in all. Searches, not a loop over every byte: that cost a third of the transform.
        let exponent = memchr::memchr2_iter(b'e', b'E', bytes).any(|at| {
            at.checked_sub(1)
                .and_then(|before| bytes.get(before))
                .is_some_and(|&b| b.is_ascii_digit() || b == b'.')
        });
        let brackets = memchr::memchr2_iter(b'[', b'{', bytes).count();
        !exponent && brackets <= 100 && !long_digit_run(bytes)
    }

    /// Whether `bytes` holds more than 300 ASCII digits in a row. Such a run covers two positions 150 apart that
    /// are both multiples of 150, so only those positions are looked at, and a run only where both are digits.
    pub(super) fn long_digit_run(bytes: &[u8]) -> bool {
        const STRIDE: usize = 150;
        let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
        (STRIDE..bytes.len()).step_by(STRIDE).any(|at| {
            if !(digit(at) && digit(at - STRIDE)) {
                return false;
            }
            let start = (0..at).rev().find(|&i| !digit(i)).map_or(0, |i| i + 1);
            let end = (at..bytes.len()).find(|&i| !digit(i)).unwrap_or(bytes.len());
            end - start > 300
        })
    }

    pub(super) fn view(bytes: &[u8]) -> Option<View<'_>> {
        // Only objects: [`parse`] reads anything else as a bare tweet in sequence form, which this does not mimic.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') || !value_would_read(bytes) {
            return None;
        }
        let Record {
            tweet: fields,
            author_username,
        } = serde_json::from_slice(bytes).ok()?;
        let id = fields.id;
        if !valid_id(id) {
            return None;
        }
        Some(View {
            references_retweet: fields.referenced_tweets.iter().any(|r| r.kind == RETWEETED),
            text: fields.note_tweet.map_or(fields.text, |note| note.text),
            id: Cow::Borrowed(id),
            created_at: fields.created_at,
            lang: fields.lang.map(Cow::Borrowed),
            author_username: author_username.map(Cow::Borrowed),
        })
    }
}

/// An id [`parse`] accepts: 1 to 20 decimal digits.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
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

    /// The borrowed reading agrees with [`parse`] on every record, odd ones included, errors and all.
    #[test]
    fn the_borrowed_reading_is_parse() {
        let t = r#""id":"0012","text":"beli \"saham\" \ud83d\ude80","created_at":"2026-11-01T03:04:05Z""#;
        let records = [
            format!(
                r#"{{"tweet":{{{t},"lang":"in","referenced_tweets":[{{"type":"retweeted","id":"1"}}]}},"author_username":"budi"}}"#
            ),
            format!(r#"{{"tweet":{{{t},"note_tweet":{{"text":"panjang"}}}},"author_username":5}}"#),
            format!(r#"{{"tweet":null,{t}}}"#),
            format!(r#"{{{t},"author_username":"sari","lang":null}}"#),
            format!(r#"{{{t},"referenced_tweets":null}}"#),
            format!(r#"{{"tweet":{{{t},"author_id":7}}}}"#),
            format!(r#"{{"tweet":{{{t},"lang":"in","lang":"en"}}}}"#),
            format!(r#"{{"tweet":{{{t}}},"tweet":{{{t}}}}}"#),
            format!(r#"{{"tweet":{{{t}}},"id":5}}"#),
            r#"{"tweet":{"id":"12a","text":"x","created_at":"2026-11-01T00:00:00Z"}}"#.to_owned(),
            r#"{"tweet":{"id":"123456789012345678901","text":"x","created_at":"2026-11-01T00:00:00Z"}}"#.to_owned(),
            r#"["7","x","2026-11-01T00:00:00Z"]"#.to_owned(),
            r#"  {"id":"7","text":"x","created_at":"2026-11-01T00:00:00Z","author_username":"a\u0062"}"#.to_owned(),
            "{not json".to_owned(),
            // Found by the fuzz target: what a `Value` refuses in a field nobody reads.
            format!(r#"{{{t},"_expect":{{"t\ud800":1}}}}"#),
            format!(r#"{{"tweet":{{{t}}},"x":1e400}}"#),
            format!(r#"{{"tweet":{{{t}}},"x":{}}}"#, "9".repeat(400)),
            format!(r#"{{"tweet":{{{t}}},"x":{}1{}}}"#, "[".repeat(130), "]".repeat(130)),
        ];
        for record in &records {
            let expected = parse(record.as_bytes()).map(|Parsed { tweet, author_username }| {
                let retweet = tweet.references_retweet();
                (
                    tweet.id,
                    tweet.text,
                    tweet.created_at,
                    tweet.lang,
                    retweet,
                    author_username,
                )
            });
            let got = parse_view(record.as_bytes()).map(|v| {
                (
                    v.id.into_owned(),
                    v.text.into_owned(),
                    v.created_at,
                    v.lang.map(Cow::into_owned),
                    v.references_retweet,
                    v.author_username.map(Cow::into_owned),
                )
            });
            match (expected, got) {
                (Ok(expected), Ok(got)) => assert_eq!(got, expected, "{record}"),
                (Err(expected), Err(got)) => assert_eq!(got.to_string(), expected.to_string(), "{record}"),
                (expected, got) => panic!("{record}: parse gave {expected:?}, parse_view {got:?}"),
            }
        }
        let mut invalid_utf8 = format!(r#"{{"tweet":{{{t}}},"x":"ab"}}"#).into_bytes();
        let at = invalid_utf8.len() - 3;
        invalid_utf8[at] = 0xff;
        let (parsed, viewed) = (parse(&invalid_utf8), parse_view(&invalid_utf8));
        assert!(parsed.is_err(), "a Value refuses invalid UTF-8 anywhere");
        assert_eq!(
            viewed.map(|_| ()).map_err(|e| e.to_string()),
            parsed.map(|_| ()).map_err(|e| e.to_string())
        );
        let plain = br#"{"tweet":{"id":"7","text":"beli saham","created_at":"2026-11-01T00:00:00Z","lang":"in"},"author_username":"budi"}"#;
        let view = parse_view(plain).expect("plain");
        assert!(
            matches!(view.text, Cow::Borrowed(_)),
            "a record without escapes is read without copies"
        );
    }

    #[test]
    fn a_long_digit_run_is_found_wherever_it_starts() {
        for offset in 0..320 {
            for run in [299, 300, 301, 450] {
                let line = format!("{}{}x", "a".repeat(offset), "9".repeat(run));
                assert_eq!(
                    fast::long_digit_run(line.as_bytes()),
                    run > 300,
                    "{run} digits after {offset}"
                );
            }
        }
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
