//! A fake of X API v2 recent search (`GET /2/tweets/search/recent`) that keeps the public contract: bearer
//! authentication, query validation (512 characters, `lang:in` refused as X does), `max_results` 10-100,
//! `since_id`/`start_time` within the 7-day window, `until_id`, newest-first pages linked by `next_token` tokens
//! that never expire, `includes.users` for `expansions=author_id`, only the requested `tweet.fields`, rate-limit
//! headers and problem-JSON errors. Recent counts (`GET /2/tweets/counts/recent`) answers the same way with
//! `data: [{start, end, tweet_count}]` buckets (`granularity` minute, hour or day; the first bucket starts at
//! `start_time`, the others on the granularity's boundaries), `meta.total_tweet_count` and `next_token` after
//! 168 buckets. Tests grow the corpus over time, inject faults, and read back what was asked and served.
//!
//! ```text
//!  test ──add_tweets / inject(faults) / set_rate_limit──▶ FakeX ◀──GET /2/tweets/search/recent── producer
//!       ◀──requests() / posts_served() / matching_ids()──
//! ```

mod pages;
mod server;
mod tweets;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{Router, routing::get};
use chrono::{DateTime, TimeDelta, Utc};

use server::{counts, search};
use tweets::ParsedQuery;

/// The snowflake epoch: ids carry milliseconds since 2010-11-04T01:42:54.657Z in their top bits.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
const QUERY_LIMIT: usize = 512;
const INVALID_REQUEST: &str = "https://api.twitter.com/2/problems/invalid-request";
/// Characters of a long post that X returns in `text`; the rest is only in `note_tweet.text`.
pub const NOTE_TWEET_CUT: usize = 280;

/// What the next requests get instead of (or before) a normal answer, one per request, in order.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer normally.
    Pass,
    /// 429 and an exhausted window that resets this far ahead: requests before the reset get 429 too.
    RateLimited { reset_in: Duration },
    /// 503 with a problem body.
    Unavailable,
    /// Wait this long before answering normally. Past the client's timeout the client gives up first; the
    /// answer still counts in `posts_served`, as X counts what it sent.
    Delay(Duration),
    /// 200 with a truncated JSON body.
    Malformed,
    /// 401, whatever the token.
    Unauthorized,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: DateTime<Utc>,
    /// `search` or `counts`.
    pub endpoint: &'static str,
    /// The answer's status; 0 while a delayed answer is pending (or was abandoned by the client).
    pub status: u16,
    pub params: BTreeMap<String, String>,
    /// Tweets in the answer's `data`.
    pub served: usize,
    /// `x-rate-limit-reset` of the answer, when it carried one.
    pub reset: Option<i64>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

#[derive(Clone)]
struct StoredTweet {
    id: u64,
    created_at: DateTime<Utc>,
    text: String,
    lang: String,
    author_id: String,
    retweet_of: Option<u64>,
    reply_to: Option<u64>,
    likes: u64,
}

/// Where a `next_token` continues: the same search, below the last id served.
#[derive(Clone)]
struct Cursor {
    search: Search,
    below: u64,
}

#[derive(Clone, PartialEq)]
struct Search {
    query: String,
    since_id: Option<u64>,
    start_time: Option<DateTime<Utc>>,
    until_id: Option<u64>,
}

struct RateWindow {
    limit: u64,
    length: Duration,
    remaining: u64,
    reset: DateTime<Utc>,
}

struct FakeState {
    token: String,
    tweets: BTreeMap<u64, StoredTweet>,
    users: BTreeMap<String, String>,
    cursors: HashMap<String, Cursor>,
    faults: VecDeque<Fault>,
    window: RateWindow,
    requests: Vec<Request>,
    posts_served: u64,
    last_id: u64,
    next_token: u64,
}

/// The fake server; stops when dropped.
pub struct FakeX {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(state: &Shared) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeX {
    /// Serve on 127.0.0.1 (a free port), accepting `token` as the bearer token.
    pub async fn start(token: &str) -> Self {
        Self::start_on(token, "127.0.0.1:0").await
    }

    /// Serve on `address` (e.g. `0.0.0.0:0`, for pods on the real node), accepting `token`.
    pub async fn start_on(token: &str, address: &str) -> Self {
        let now = Utc::now();
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_owned(),
            tweets: BTreeMap::new(),
            users: BTreeMap::new(),
            cursors: HashMap::new(),
            faults: VecDeque::new(),
            // X's app-only recent search limit: 450 requests per 15 minutes.
            window: RateWindow {
                limit: 450,
                length: Duration::from_secs(900),
                remaining: 450,
                reset: now + TimeDelta::seconds(900),
            },
            requests: Vec::new(),
            posts_served: 0,
            last_id: 0,
            next_token: 1,
        }));
        let app = Router::new()
            .route("/2/tweets/search/recent", get(search))
            .route("/2/tweets/counts/recent", get(counts))
            .with_state(state.clone());
        let (addr, server) = super::serve(app, address, "X API").await;
        Self { addr, state, server }
    }

    /// Base URL for `--x-api-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL as seen from `host` (e.g. the node IP pods use), on the port the fake listens on.
    pub fn url_via(&self, host: &str) -> String {
        format!("http://{host}:{}", self.addr.port())
    }

    /// Accept a different bearer token from now on.
    pub fn set_token(&self, token: &str) {
        lock(&self.state).token = token.to_owned();
    }

    /// Add `count` Indonesian tweets about the Cilvest keywords, posted now; returns their ids.
    pub fn add_tweets(&self, count: usize) -> Vec<u64> {
        self.add_tweets_at(count, Utc::now())
    }

    /// Add `count` matching tweets posted at `created_at` (ids follow the time, as snowflakes do).
    pub fn add_tweets_at(&self, count: usize, created_at: DateTime<Utc>) -> Vec<u64> {
        const TEXTS: [&str; 6] = [
            "Hari ini beli saham BBCA lagi",
            "Reksadana pasar uang cocok buat pemula",
            "Ada yang sudah coba reksa dana syariah?",
            "Sukuk ritel SR021 sudah dibuka",
            "Portofolio #saham merah semua minggu ini",
            "IHSG naik, sahamnya ikut hijau",
        ];
        let mut state = lock(&self.state);
        (0..count)
            .map(|i| {
                let author_id = state.user(i % 7);
                let id = state.new_id(created_at);
                let reply_to = (i % 5 == 4).then(|| id.saturating_sub(1_000_000));
                state.tweets.insert(
                    id,
                    StoredTweet {
                        id,
                        created_at,
                        text: format!("{} ({i})", TEXTS[i % TEXTS.len()]),
                        lang: "in".to_owned(),
                        author_id,
                        retweet_of: None,
                        reply_to,
                        likes: (i as u64 * 7) % 50,
                    },
                );
                id
            })
            .collect()
    }

    /// Add one Indonesian long post (over 280 characters) posted at `created_at`, whose only keyword comes after
    /// character 280: X serves its head in `text` and the whole in `note_tweet.text`; returns its id.
    pub fn add_long_post_at(&self, created_at: DateTime<Utc>, keyword: &str) -> u64 {
        let mut state = lock(&self.state);
        let author_id = state.user(3);
        let id = state.new_id(created_at);
        let text = format!(
            "{}lalu soal #{keyword} juga",
            "Catatan panjang tentang pasar modal hari ini. ".repeat(7)
        );
        state.tweets.insert(
            id,
            StoredTweet {
                id,
                created_at,
                text,
                lang: "in".to_owned(),
                author_id,
                retweet_of: None,
                reply_to: None,
                likes: 3,
            },
        );
        id
    }

    /// Add tweets the Cilvest query must not match: retweets, English tweets, and tweets without a keyword.
    pub fn add_noise(&self, count: usize) {
        let now = Utc::now();
        let mut state = lock(&self.state);
        for i in 0..count {
            let author_id = state.user(i % 3);
            let id = state.new_id(now);
            let (text, lang, retweet_of) = match i % 3 {
                0 => (
                    format!("RT @budi: beli saham ({i})"),
                    "in",
                    Some(id.saturating_sub(5_000_000)),
                ),
                1 => (format!("Stocks (saham) rally in Jakarta ({i})"), "en", None),
                _ => (format!("Makan siang apa hari ini? ({i})"), "in", None),
            };
            state.tweets.insert(
                id,
                StoredTweet {
                    id,
                    created_at: now,
                    text,
                    lang: lang.to_owned(),
                    author_id,
                    retweet_of,
                    reply_to: None,
                    likes: 0,
                },
            );
        }
    }

    /// Apply `faults` to the next requests, one each, after any already queued.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state).faults.extend(faults);
    }

    /// Allow `limit` requests per window of `length`, starting a new window now.
    pub fn set_rate_limit(&self, limit: u64, length: Duration) {
        let mut state = lock(&self.state);
        state.window = RateWindow {
            limit,
            length,
            remaining: limit,
            reset: reset_after(Utc::now(), length),
        };
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Requests answered with `status`.
    pub fn status_count(&self, status: u16) -> usize {
        lock(&self.state).requests.iter().filter(|r| r.status == status).count()
    }

    /// Recent search requests (any status).
    pub fn search_request_count(&self) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.endpoint == "search")
            .count()
    }

    /// Recent counts requests (any status).
    pub fn counts_request_count(&self) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.endpoint == "counts")
            .count()
    }

    /// The number of tweets `query` matches per hour (UTC, keyed by the hour's start), ignoring time bounds.
    pub fn hourly_counts(&self, query: &str) -> BTreeMap<DateTime<Utc>, u64> {
        let parsed = ParsedQuery::parse(query).expect("a valid query");
        let mut hours = BTreeMap::new();
        for tweet in lock(&self.state).tweets.values().filter(|t| parsed.matches(t)) {
            *hours
                .entry(floor_to(tweet.created_at, TimeDelta::hours(1)))
                .or_insert(0) += 1;
        }
        hours
    }

    /// Tweets returned in successful answers: what X would bill against the monthly post cap.
    pub fn posts_served(&self) -> u64 {
        lock(&self.state).posts_served
    }

    /// Ids of the tweets `query` matches now, ignoring time bounds.
    pub fn matching_ids(&self, query: &str) -> BTreeSet<u64> {
        let parsed = ParsedQuery::parse(query).expect("a valid query");
        lock(&self.state)
            .tweets
            .values()
            .filter(|t| parsed.matches(t))
            .map(|t| t.id)
            .collect()
    }

    /// The username the fake gives `author_id`.
    pub fn username(&self, author_id: &str) -> Option<String> {
        lock(&self.state).users.get(author_id).cloned()
    }
}

impl Drop for FakeX {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reset_after(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    let at = now + TimeDelta::from_std(length).unwrap_or(TimeDelta::seconds(900));
    // x-rate-limit-reset has second granularity: the window ends at a whole second.
    DateTime::from_timestamp(at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0), 0).unwrap_or(at)
}

/// The start of the `step`-long bucket `at` falls in (steps divide a day).
fn floor_to(at: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step = step.num_seconds().max(1);
    DateTime::from_timestamp(at.timestamp().div_euclid(step) * step, 0).unwrap_or(at)
}
