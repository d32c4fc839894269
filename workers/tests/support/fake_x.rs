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

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

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

impl FakeState {
    /// One of a fixed set of authors, created on first use.
    fn user(&mut self, slot: usize) -> String {
        let id = (1000 + slot).to_string();
        self.users
            .entry(id.clone())
            .or_insert_with(|| format!("investor_{slot}"));
        id
    }

    /// A snowflake id for a tweet posted at `created_at`.
    fn new_id(&mut self, created_at: DateTime<Utc>) -> u64 {
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

    fn tweet_json(&self, tweet: &StoredTweet, fields: &BTreeSet<&str>) -> Value {
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

fn reset_after(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    let at = now + TimeDelta::from_std(length).unwrap_or(TimeDelta::seconds(900));
    // x-rate-limit-reset has second granularity: the window ends at a whole second.
    DateTime::from_timestamp(at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0), 0).unwrap_or(at)
}

/// The parts of a query the fake understands: `(a OR "b c" OR #d) lang:xx -is:retweet`.
struct ParsedQuery {
    terms: Vec<String>,
    lang: Option<String>,
    no_retweets: bool,
}

impl ParsedQuery {
    fn parse(query: &str) -> Result<Self, String> {
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

    fn matches(&self, tweet: &StoredTweet) -> bool {
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

fn problem(status: StatusCode, title: &str, detail: &str, kind: &str) -> (StatusCode, String) {
    let body = json!({"title": title, "detail": detail, "type": kind, "status": status.as_u16()});
    (status, body.to_string())
}

fn invalid_request(message: String) -> (StatusCode, String) {
    let body = json!({
        "errors": [{"parameters": {}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": INVALID_REQUEST,
    });
    (StatusCode::BAD_REQUEST, body.to_string())
}

async fn search(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    serve(state, headers, uri, "search").await
}

async fn counts(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    serve(state, headers, uri, "counts").await
}

async fn serve(state: Shared, headers: HeaderMap, uri: Uri, endpoint: &'static str) -> Response {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let now = Utc::now();
    let (index, fault) = {
        let mut state = lock(&state);
        let fault = state.faults.pop_front().unwrap_or(Fault::Pass);
        state.requests.push(Request {
            at: now,
            endpoint,
            status: 0,
            params: params.clone(),
            served: 0,
            reset: None,
        });
        (state.requests.len() - 1, fault)
    };
    if let Fault::Delay(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    let mut state = lock(&state);
    let (status, body, served, rate_headers) = answer(&mut state, &headers, &params, fault, endpoint);
    state.requests[index].status = status.as_u16();
    state.requests[index].served = served;
    state.requests[index].reset = rate_headers.map(|(_, _, reset)| reset);
    state.posts_served += served as u64;
    let mut response = (status, [("content-type", "application/json; charset=utf-8")], body).into_response();
    if let Some((limit, remaining, reset)) = rate_headers {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-rate-limit-limit", limit.to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ] {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
    }
    response
}

type Answer = (StatusCode, String, usize, Option<(u64, u64, i64)>);

fn answer(
    state: &mut FakeState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
    fault: Fault,
    endpoint: &str,
) -> Answer {
    let now = Utc::now();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token));
    if matches!(fault, Fault::Unauthorized) || !authorized {
        let (status, body) = problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", "about:blank");
        return (status, body, 0, None);
    }

    // Rate limiting: a new window once the old one has reset; an injected 429 exhausts the window until then.
    if now >= state.window.reset {
        state.window.remaining = state.window.limit;
        state.window.reset = reset_after(now, state.window.length);
    }
    if let Fault::RateLimited { reset_in } = fault {
        state.window.remaining = 0;
        state.window.reset = reset_after(now, reset_in);
    }
    let limit = state.window.limit;
    if state.window.remaining == 0 {
        let (status, body) = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Too Many Requests",
            "about:blank",
        );
        return (status, body, 0, Some((limit, 0, state.window.reset.timestamp())));
    }
    state.window.remaining -= 1;
    let rate = Some((limit, state.window.remaining, state.window.reset.timestamp()));

    match fault {
        Fault::Unavailable => {
            let (status, body) = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "Service Unavailable",
                "about:blank",
            );
            return (status, body, 0, rate);
        }
        Fault::Malformed => return (StatusCode::OK, r#"{"data":[{"id":"18500"#.to_owned(), 0, rate),
        _ => {}
    }

    let page = if endpoint == "counts" {
        // Counts answers carry no posts: nothing of them is served against the post cap.
        counts_page(state, params, now).map(|body| (body, 0))
    } else {
        search_page(state, params, now)
    };
    match page {
        Ok((body, served)) => (StatusCode::OK, body.to_string(), served, rate),
        Err(message) => {
            let (status, body) = invalid_request(message);
            (status, body, 0, rate)
        }
    }
}

fn search_page(
    state: &mut FakeState,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(Value, usize), String> {
    let query = params
        .get("query")
        .ok_or("The `query` query parameter can not be empty")?;
    let parsed = ParsedQuery::parse(query)?;
    let max_results: usize = match params.get("max_results") {
        None => 10,
        Some(text) => match text.parse() {
            Ok(n) if (10..=100).contains(&n) => n,
            _ => {
                return Err(format!(
                    "The `max_results` query parameter value [{text}] is not between 10 and 100"
                ));
            }
        },
    };
    let window_start = now - TimeDelta::days(7);
    let since_id = match params.get("since_id") {
        None => None,
        Some(text) => {
            let id: u64 = text
                .parse()
                .map_err(|_| format!("The `since_id` query parameter value [{text}] is not valid"))?;
            let posted = DateTime::from_timestamp_millis((id >> 22) as i64 + SNOWFLAKE_EPOCH_MS).unwrap_or(now);
            if posted < window_start {
                return Err(format!(
                    "Invalid 'since_id':'{text}'. 'since_id' must be a tweet id created after {}.",
                    window_start.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
            }
            Some(id)
        }
    };
    let start_time = match params.get("start_time") {
        None => None,
        Some(text) => {
            let at = DateTime::parse_from_rfc3339(text)
                .map_err(|_| format!("Invalid 'start_time':'{text}'"))?
                .with_timezone(&Utc);
            if at < window_start {
                return Err(format!(
                    "Invalid 'start_time':'{text}'. 'start_time' must be on or after {}",
                    window_start.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
            }
            if at > now - TimeDelta::seconds(10) {
                return Err(format!(
                    "Invalid 'start_time':'{text}'. 'start_time' must be a minimum of 10 seconds prior to the \
                     request time."
                ));
            }
            Some(at)
        }
    };
    let until_id = match params.get("until_id") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| format!("The `until_id` query parameter value [{text}] is not valid"))?,
        ),
    };
    let search = Search {
        query: query.clone(),
        since_id,
        start_time,
        until_id,
    };
    let token = params.get("next_token").or_else(|| params.get("pagination_token"));
    let below = match token {
        None => None,
        Some(token) => {
            let cursor = state
                .cursors
                .get(token)
                .ok_or_else(|| format!("The `next_token` query parameter value [{token}] is not valid"))?;
            if cursor.search != search {
                return Err("The `next_token` was issued for a different search".to_owned());
            }
            Some(cursor.below)
        }
    };

    let fields: BTreeSet<&str> = params
        .get("tweet.fields")
        .map(|f| f.split(',').collect())
        .unwrap_or_default();
    let expand_authors = params
        .get("expansions")
        .is_some_and(|e| e.split(',').any(|x| x == "author_id"));
    let mut matching = state.tweets.values().rev().filter(|t| {
        below.is_none_or(|b| t.id < b)
            && until_id.is_none_or(|u| t.id < u)
            && since_id.is_none_or(|s| t.id > s)
            && start_time.is_none_or(|s| t.created_at >= s)
            && parsed.matches(t)
    });
    let page: Vec<StoredTweet> = matching.by_ref().take(max_results).cloned().collect();
    let more = matching.next().is_some();

    let mut meta = json!({"result_count": page.len()});
    if let (Some(newest), Some(oldest)) = (page.first(), page.last()) {
        meta["newest_id"] = json!(newest.id.to_string());
        meta["oldest_id"] = json!(oldest.id.to_string());
    }
    if more && let Some(last) = page.last() {
        let token = format!("b26v89c19zqg8o3f{:012x}", state.next_token);
        state.next_token += 1;
        state.cursors.insert(token.clone(), Cursor { search, below: last.id });
        meta["next_token"] = json!(token);
    }
    let mut body = json!({"meta": meta});
    if !page.is_empty() {
        body["data"] = page.iter().map(|t| state.tweet_json(t, &fields)).collect();
        if expand_authors {
            let authors: BTreeSet<&str> = page.iter().map(|t| t.author_id.as_str()).collect();
            let users: Vec<Value> = authors
                .into_iter()
                .filter_map(|id| {
                    let username = state.users.get(id)?;
                    Some(json!({"id": id, "name": format!("Investor {id}"), "username": username}))
                })
                .collect();
            body["includes"] = json!({"users": users});
        }
    }
    Ok((body, page.len()))
}

/// The start of the `step`-long bucket `at` falls in (steps divide a day).
fn floor_to(at: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step = step.num_seconds().max(1);
    DateTime::from_timestamp(at.timestamp().div_euclid(step) * step, 0).unwrap_or(at)
}

/// Buckets per counts page before a `next_token`.
const COUNTS_PAGE: usize = 168;

fn counts_page(state: &mut FakeState, params: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<Value, String> {
    let query = params
        .get("query")
        .ok_or("The `query` query parameter can not be empty")?;
    let parsed = ParsedQuery::parse(query)?;
    let step = match params.get("granularity").map(String::as_str) {
        None | Some("hour") => TimeDelta::hours(1),
        Some("minute") => TimeDelta::minutes(1),
        Some("day") => TimeDelta::days(1),
        Some(other) => {
            return Err(format!(
                "The `granularity` query parameter value [{other}] is not one of [minute,hour,day]"
            ));
        }
    };
    let window_start = now - TimeDelta::days(7);
    let time = |name: &str, default: DateTime<Utc>| -> Result<DateTime<Utc>, String> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| format!("Invalid '{name}':'{text}'")),
        }
    };
    let start = time("start_time", window_start)?;
    let end = time("end_time", now - TimeDelta::seconds(30))?;
    if start < window_start {
        return Err(format!(
            "Invalid 'start_time':'{}'. 'start_time' must be on or after {}",
            start.to_rfc3339_opts(SecondsFormat::Secs, true),
            window_start.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    if end <= start || end > now - TimeDelta::seconds(10) {
        return Err("Invalid 'end_time': it must be after 'start_time' and at least 10 seconds before now".to_owned());
    }
    let mut buckets = Vec::new();
    let mut bucket_start = start;
    while bucket_start < end {
        let bucket_end = (floor_to(bucket_start, step) + step).min(end);
        buckets.push((bucket_start, bucket_end));
        bucket_start = bucket_end;
    }
    let skip: usize = match params.get("next_token").or_else(|| params.get("pagination_token")) {
        None => 0,
        Some(token) => state
            .cursors
            .get(token)
            .map(|c| c.below as usize)
            .ok_or_else(|| format!("The `next_token` query parameter value [{token}] is not valid"))?,
    };
    let page: Vec<(DateTime<Utc>, DateTime<Utc>)> = buckets.iter().skip(skip).take(COUNTS_PAGE).copied().collect();
    let data: Vec<Value> = page
        .iter()
        .map(|(from, to)| {
            let count = state
                .tweets
                .values()
                .filter(|t| t.created_at >= *from && t.created_at < *to && parsed.matches(t))
                .count();
            json!({
                "start": from.to_rfc3339_opts(SecondsFormat::Millis, true),
                "end": to.to_rfc3339_opts(SecondsFormat::Millis, true),
                "tweet_count": count,
            })
        })
        .collect();
    let total: u64 = data.iter().filter_map(|d| d["tweet_count"].as_u64()).sum();
    let mut meta = json!({"total_tweet_count": total});
    if skip + page.len() < buckets.len() {
        let token = format!("counts{:012x}", state.next_token);
        state.next_token += 1;
        state.cursors.insert(
            token.clone(),
            Cursor {
                search: Search {
                    query: query.clone(),
                    since_id: None,
                    start_time: Some(start),
                    until_id: None,
                },
                below: (skip + page.len()) as u64,
            },
        );
        meta["next_token"] = json!(token);
    }
    Ok(json!({"data": data, "meta": meta}))
}
