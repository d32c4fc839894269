//! Where tweets come from: X API v2 recent search, polled with `since_id` and paged to the end of every poll (the
//! replay source for demos and tests is `super::replay`).
//!
//! ```text
//!  poll(since_id) ─▶ GET /2/tweets/search/recent?since_id=…            ─▶ page 1 (newest first)
//!                  ─▶ GET …&next_token=…  (until meta has no next_token) ─▶ page n (oldest)
//!                  ─▶ Batch: every tweet of the poll, oldest first, with its author's username
//! ```
//! Every request is counted against the monthly read budget (`budget`): the last page of a budget asks for what is
//! left, a spent budget makes no request, and the range a cut-short poll could not read is read first next time.
//! `counts` asks `GET /2/tweets/counts/recent` for hourly volumes with the same retries.
//!
//! Failures never end a poll: 429 waits for `x-rate-limit-reset`, 5xx, timeouts and malformed bodies back off
//! exponentially with jitter, and 401/403/400 (a bad token or query, which only a person can fix) are logged once
//! and retried on a long period. The bearer token never reaches a log line or an error message.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use cilvest_crds::{query::X_RECENT_WINDOW, worker_config::X_BEARER_TOKEN_ENV};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use reqwest::{StatusCode, header::HeaderValue};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use url::Url;

use crate::{
    retry::Backoff,
    telemetry::Telemetry,
    tweet,
    x::budget::{Budget, BudgetMetrics, Pace, Unread},
    x::usage::UsageStore,
};

/// The recent search endpoint, relative to the API base URL.
pub const SEARCH_PATH: &str = "/2/tweets/search/recent";
/// The recent counts endpoint, relative to the API base URL.
pub const COUNTS_PATH: &str = "/2/tweets/counts/recent";
/// The tweet fields the envelope and the daily job read.
/// `note_tweet` carries the full text of posts over 280 characters (`text` has only the first 280).
pub const TWEET_FIELDS: &str = "created_at,lang,author_id,referenced_tweets,public_metrics,note_tweet";
/// X's largest page for recent search.
pub const MAX_RESULTS: u32 = 100;
/// X rejects a `start_time` less than 10 s before the request; keep well clear of it.
const START_TIME_MIN_AGE: TimeDelta = TimeDelta::seconds(30);
/// X rejects `start_time` and `since_id` older than its 7-day window; stay this far inside it.
const WINDOW_MARGIN: TimeDelta = TimeDelta::minutes(5);
/// Waiting for a rate-limit reset: a little past the stated second, for clock skew.
const RESET_MARGIN: Duration = Duration::from_millis(500);
/// X's windows are 15 minutes; a reset much further away is a bad header, not a reason to sleep for a day.
const MAX_RESET_WAIT: Duration = Duration::from_secs(16 * 60);

/// Why a source could not be set up or read. Request failures are retried inside [`XSource::poll`]; they are
/// public so that their categories and messages are the same in logs, metrics and tests.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no X bearer token: set {X_BEARER_TOKEN_ENV} or pass --bearer-token-file")]
    NoToken,
    #[error("failed to read the X bearer token from {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("the X bearer token is empty or contains characters not allowed in an HTTP header")]
    InvalidToken,
    #[error("failed to build the X API client: {0}")]
    Client(reqwest::Error),
    #[error("invalid X API URL {url}: {source}")]
    Url { url: String, source: url::ParseError },
    #[error("X rejected the bearer token (HTTP {status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    #[error("X rejected the search request (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("X search is rate limited (HTTP 429) until {}", reset.map_or("an unknown time".to_owned(), |r| r.to_rfc3339()))]
    RateLimited { reset: Option<DateTime<Utc>> },
    #[error("X search failed with HTTP {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("X search timed out after {0:?}")]
    Timeout(Duration),
    #[error("failed to reach X: {0}")]
    Transport(reqwest::Error),
    #[error("X returned a malformed search response: {0}")]
    Malformed(String),
    #[error("failed to read replay file {path}: {source}")]
    ReplayRead { path: PathBuf, source: std::io::Error },
    #[error("replay file {path} line {line} is not a tweet, envelope or search response: {reason}")]
    ReplayLine { path: PathBuf, line: usize, reason: String },
}

impl SourceError {
    /// Low-cardinality category, used as the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoToken | Self::TokenFile { .. } | Self::InvalidToken => "token",
            Self::Client(_) | Self::Url { .. } => "client",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::Malformed(_) => "malformed",
            Self::ReplayRead { .. } | Self::ReplayLine { .. } => "replay",
        }
    }

    /// A failure that repeating the request cannot fix: a person has to change the token or the query.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Rejected { .. })
    }
}

/// The X API bearer token. `Debug` and `Display` print a placeholder, so the token cannot leak through a log
/// line, an error or a panic message that formats it.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, SourceError> {
        let token = token.trim();
        if token.is_empty() || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(SourceError::InvalidToken);
        }
        Ok(Self(token.to_owned()))
    }

    /// The token from a mounted Secret file, else from `CILVEST_X_BEARER_TOKEN`.
    pub fn load(file: Option<&Path>) -> Result<Self, SourceError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| SourceError::TokenFile {
                path: path.to_owned(),
                source,
            })?;
            return Self::new(&text);
        }
        match std::env::var(X_BEARER_TOKEN_ENV) {
            Ok(token) => Self::new(&token),
            Err(_) => Err(SourceError::NoToken),
        }
    }

    fn header(&self) -> HeaderValue {
        // `new` checked that this is a valid header value; marking it sensitive keeps it out of reqwest's Debug.
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).unwrap_or(HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What the X source exposes on `/metrics`.
#[derive(Clone, Default)]
pub struct SourceMetrics {
    requests: Family<OutcomeLabels, Counter>,
    posts_read: Counter,
    rate_limit_remaining: Gauge,
    rate_limit_waits: Counter,
    configuration_error: Gauge,
}

impl SourceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "x_requests",
            "X API search requests by outcome (ok or the failure category)",
            self.requests.clone(),
        );
        registry.register(
            "x_posts_read",
            "Posts returned by the X API; the monthly post cap X bills counts these",
            self.posts_read.clone(),
        );
        registry.register(
            "x_rate_limit_remaining",
            "Requests left in the current X rate-limit window, from x-rate-limit-remaining",
            self.rate_limit_remaining.clone(),
        );
        registry.register(
            "x_rate_limit_waits",
            "Times the producer paused until an X rate-limit window reset",
            self.rate_limit_waits.clone(),
        );
        registry.register(
            "x_configuration_error",
            "1 while X rejects the token or the query (HTTP 401, 403 or 400), else 0",
            self.configuration_error.clone(),
        );
    }

    fn outcome(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Posts read so far (for tests and logs).
    pub fn posts_read(&self) -> u64 {
        self.posts_read.get()
    }
}

/// Settings of the X source.
#[derive(Clone, Debug)]
pub struct XSettings {
    /// API base URL, such as `https://api.x.com`.
    pub base_url: String,
    /// The search query, from `cilvest_crds::x_query`; `None` when no keyword reads posts (counts only).
    pub query: Option<String>,
    /// How far back to start when there is no `since_id` (the raw topic is empty).
    pub backfill: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// At most this many tweets are held in memory per poll; a larger backlog is taken oldest first over several
    /// polls.
    pub max_poll_tweets: usize,
    /// Return a rejected token or query (401, 403, 400) as an error instead of retrying: for one-shot runs.
    pub fail_on_configuration_error: bool,
}

/// The X endpoints the producer calls; each has its own rate-limit window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Search,
    Counts,
}

/// X API v2 recent search, polled with `since_id`, and recent counts.
pub struct XSource {
    http: reqwest::Client,
    search_url: Url,
    counts_url: Url,
    token: BearerToken,
    settings: XSettings,
    /// Fixed when the source is created, so that polls before the first tweet do not slide past tweets.
    start_time: DateTime<Utc>,
    /// From the last response of each endpoint (search, counts): requests left in the window and when it resets.
    rate_limit: [Option<(u64, DateTime<Utc>)>; 2],
    /// This month's reads against the budget, and where they are kept.
    budget: Budget,
    usage_store: UsageStore,
    budget_metrics: BudgetMetrics,
    /// Set while X rejects the token or query, so that the error is logged once, not on every retry.
    configuration_error: Option<String>,
    metrics: SourceMetrics,
    /// Ready once X answers (the producer polls only after Kafka answered); not ready while X rejects the token.
    telemetry: Telemetry,
}

/// One page of a search response: only what the producer reads; tweets stay raw JSON.
#[derive(Deserialize)]
pub(super) struct SearchPage {
    #[serde(default)]
    pub(super) data: Vec<Value>,
    #[serde(default)]
    pub(super) includes: Includes,
    #[serde(default)]
    meta: Meta,
}

#[derive(Deserialize, Default)]
pub(super) struct Includes {
    #[serde(default)]
    pub(super) users: Vec<User>,
}

#[derive(Deserialize)]
pub(super) struct User {
    pub(super) id: String,
    pub(super) username: String,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    next_token: Option<String>,
}

/// One page of a counts response.
#[derive(Deserialize)]
struct CountsPage {
    #[serde(default)]
    data: Vec<HourCount>,
    #[serde(default)]
    meta: Meta,
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
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<Value>,
}

impl XSource {
    pub fn new(
        settings: XSettings,
        token: BearerToken,
        metrics: SourceMetrics,
        telemetry: Telemetry,
    ) -> Result<Self, SourceError> {
        let base = settings.base_url.trim_end_matches('/');
        let url = |path: &str| {
            Url::parse(&format!("{base}{path}")).map_err(|source| SourceError::Url {
                url: settings.base_url.clone(),
                source,
            })
        };
        let search_url = url(SEARCH_PATH)?;
        let counts_url = url(COUNTS_PATH)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("cilvest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SourceError::Client)?;
        let backfill = TimeDelta::from_std(settings.backfill).unwrap_or(TimeDelta::MAX);
        let start_time = Utc::now()
            .checked_sub_signed(backfill)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Ok(Self {
            http,
            search_url,
            counts_url,
            token,
            settings,
            start_time,
            rate_limit: [None, None],
            budget: Budget::unlimited(Utc::now()),
            usage_store: UsageStore::Memory,
            budget_metrics: BudgetMetrics::default(),
            configuration_error: None,
            metrics,
            telemetry,
        })
    }

    /// Count reads against `budget`, kept in `store`, shown through `metrics`.
    pub fn set_budget(&mut self, budget: Budget, store: UsageStore, metrics: BudgetMetrics) {
        metrics.observe(&budget, Utc::now());
        self.budget = budget;
        self.usage_store = store;
        self.budget_metrics = metrics;
    }

    /// How fast the producer may poll now (the month may have turned since the last request).
    pub fn pace(&mut self) -> Pace {
        let now = Utc::now();
        self.budget.roll(now);
        self.budget_metrics.observe(&self.budget, now);
        self.budget.pace(now)
    }

    /// This month's usage and budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Every tweet newer than `since_id` (or, without one, since the backfill start), following `next_token` to
    /// the last page, within the monthly budget. Posts a budget-cut poll left unread are read first, and the
    /// batch then says `more`. Failed requests are retried until they succeed (see [`XSettings`] for the one
    /// exception); dropping the future abandons the poll without side effects, since nothing has been published.
    pub async fn poll(&mut self, since_id: Option<u64>) -> Result<Batch, SourceError> {
        if self.settings.query.is_none() {
            return Ok(Batch::default());
        }
        let now = Utc::now();
        self.budget.roll(now);
        let window_start = now - TimeDelta::from_std(X_RECENT_WINDOW).unwrap_or(TimeDelta::days(7)) + WINDOW_MARGIN;
        if let Some(unread) = self.budget.usage().unread {
            return self.read_unread(unread, window_start).await;
        }
        let start_time = match since_id {
            Some(id) if tweet::snowflake_time(id).is_some_and(|posted| posted > window_start) => None,
            // X rejects a since_id older than its 7-day window. Everything in the window is newer than it, so
            // the window's start asks the same question; what fell out of the window meanwhile is gone.
            Some(id) => {
                tracing::warn!(
                    since_id = id,
                    "the newest tweet on the topic is older than X's 7-day window: tweets posted between it and \
                     the window's start cannot be read any more"
                );
                Some(window_start)
            }
            None => Some(self.start_time.clamp(window_start, now - START_TIME_MIN_AGE)),
        };
        let since_id = since_id.filter(|_| start_time.is_none());
        let read = self.read_range(since_id, start_time, None).await?;
        if read.cut_short
            && let Some(oldest) = read.oldest_read
        {
            let lower = since_id.or(start_time.map(tweet::snowflake_floor));
            self.leave_unread(lower, oldest).await;
        }
        Ok(read.into_batch(since_id))
    }

    /// The posts between `unread`'s bounds, newest first like any search, as far as the budget reaches.
    async fn read_unread(&mut self, unread: Unread, window_start: DateTime<Utc>) -> Result<Batch, SourceError> {
        let in_window = |id: u64| tweet::snowflake_time(id).is_some_and(|posted| posted > window_start);
        let (since_id, start_time) = match unread.since_id {
            Some(id) if in_window(id) => (Some(id), None),
            lower => {
                tracing::warn!(
                    since_id = ?lower,
                    until_id = unread.until_id,
                    "posts left unread by the read budget are partly older than X's 7-day window: those cannot \
                     be read any more"
                );
                (None, Some(window_start))
            }
        };
        if !in_window(unread.until_id) {
            // Nothing of the range is still in reach.
            self.leave_unread(None, 0).await;
            return Ok(Batch {
                tweets: Vec::new(),
                more: true,
            });
        }
        tracing::info!(since_id = ?since_id, until_id = unread.until_id, "reading posts the budget left unread");
        let read = self.read_range(since_id, start_time, Some(unread.until_id)).await?;
        match read.oldest_read {
            Some(oldest) if read.cut_short => self.leave_unread(since_id.or(unread.since_id), oldest).await,
            // Stopped before the first page: the range stays as it is.
            None if read.cut_short => {}
            _ => self.leave_unread(None, 0).await,
        }
        let more = !read.cut_short;
        let mut batch = read.into_batch(since_id);
        batch.more = batch.more || more;
        Ok(batch)
    }

    /// Remember (or, with `until_id` 0, forget) the range of posts not read yet.
    async fn leave_unread(&mut self, since_id: Option<u64>, until_id: u64) {
        let unread = (until_id > 0).then_some(Unread { since_id, until_id });
        if let Some(range) = unread {
            tracing::warn!(
                since_id = ?range.since_id,
                until_id = range.until_id,
                "the monthly read budget ran out within a poll: the posts in between are read once the budget \
                 allows again (within X's 7-day window)"
            );
        }
        self.budget.set_unread(unread);
        self.save_usage().await;
    }

    /// Store the usage record; a failure is logged and retried with the next save.
    async fn save_usage(&mut self) {
        let now = Utc::now();
        self.budget_metrics.observe(&self.budget, now);
        if let Err(error) = self.usage_store.save(self.budget.usage()).await {
            tracing::warn!(error = %error, "failed to store the X usage record; retrying with the next request");
        }
    }

    /// Pages of one search, newest first, until the last page or the budget's end.
    async fn read_range(
        &mut self,
        since_id: Option<u64>,
        start_time: Option<DateTime<Utc>>,
        until_id: Option<u64>,
    ) -> Result<ReadRange, SourceError> {
        // Pages come newest first; keep only the oldest `max_poll_tweets` so a huge backlog cannot exhaust memory.
        let mut read = ReadRange::default();
        let mut next_token: Option<String> = None;
        loop {
            let Some(max_results) = self.budget.page_size(MAX_RESULTS) else {
                read.cut_short = true;
                break;
            };
            let params = self.search_params(since_id, start_time, until_id, next_token.as_deref(), max_results);
            let page: SearchPage = self.fetch_with_retry(Endpoint::Search, &params).await?;
            let fetched_at = Utc::now();
            self.metrics.posts_read.inc_by(page.data.len() as u64);
            self.budget.record_search(page.data.len() as u64, fetched_at);
            self.save_usage().await;
            let users: HashMap<&str, &str> = page
                .includes
                .users
                .iter()
                .map(|u| (u.id.as_str(), u.username.as_str()))
                .collect();
            for tweet in &page.data {
                let Some(id) = tweet.get("id").and_then(Value::as_str).and_then(tweet::id_number) else {
                    tracing::warn!(tweet = %tweet, "skipping a search result without a numeric id");
                    continue;
                };
                read.oldest_read = Some(read.oldest_read.map_or(id, |oldest| oldest.min(id)));
                let author_username = tweet
                    .get("author_id")
                    .and_then(Value::as_str)
                    .and_then(|author| users.get(author))
                    .map(|username| (*username).to_owned());
                read.tweets.push_back(SourcedTweet {
                    id,
                    tweet: tweet.clone(),
                    author_username,
                    fetched_at,
                });
            }
            while read.tweets.len() > self.settings.max_poll_tweets {
                read.tweets.pop_front();
                read.truncated = true;
            }
            match page.meta.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => break,
            }
        }
        if read.truncated {
            tracing::warn!(
                kept = read.tweets.len(),
                "the backlog is larger than --max-poll-tweets: publishing the oldest part now and reading the \
                 rest again in the next poll, which costs posts twice"
            );
        }
        Ok(read)
    }

    fn search_params(
        &self,
        since_id: Option<u64>,
        start_time: Option<DateTime<Utc>>,
        until_id: Option<u64>,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Vec<(&'static str, String)> {
        let mut params: Vec<(&str, String)> = vec![
            ("query", self.settings.query.clone().unwrap_or_default()),
            ("max_results", max_results.to_string()),
            ("tweet.fields", TWEET_FIELDS.to_owned()),
            ("expansions", "author_id".to_owned()),
            ("user.fields", "username".to_owned()),
        ];
        if let Some(since_id) = since_id {
            params.push(("since_id", since_id.to_string()));
        }
        if let Some(start_time) = start_time {
            params.push(("start_time", start_time.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        if let Some(until_id) = until_id {
            params.push(("until_id", until_id.to_string()));
        }
        if let Some(token) = next_token {
            params.push(("next_token", token.to_owned()));
        }
        params
    }

    /// Hourly post counts of `query` from `start_time` to now (`GET /2/tweets/counts/recent`, `granularity=hour`),
    /// following `next_token`. X bills each request, not the posts counted; none of them is read.
    pub async fn counts(&mut self, query: &str, start_time: DateTime<Utc>) -> Result<Vec<HourCount>, SourceError> {
        let mut buckets = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut params: Vec<(&str, String)> = vec![
                ("query", query.to_owned()),
                ("granularity", "hour".to_owned()),
                ("start_time", start_time.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ];
            if let Some(token) = &next_token {
                params.push(("next_token", token.clone()));
            }
            let page: CountsPage = self.fetch_with_retry(Endpoint::Counts, &params).await?;
            self.budget.record_counts(Utc::now());
            self.budget_metrics.count_request();
            self.save_usage().await;
            buckets.extend(page.data);
            match page.meta.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => break,
            }
        }
        Ok(buckets)
    }

    /// One answer, retried until X gives one; with `fail_on_configuration_error`, a rejected token or query
    /// is returned instead of retried.
    async fn fetch_with_retry<T: DeserializeOwned>(
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
                    return Ok(page);
                }
                Err(error) => error,
            };
            self.metrics.outcome(error.kind());
            failures += 1;
            if error.is_configuration() {
                self.metrics.configuration_error.set(1);
                self.telemetry.set_ready(false);
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

/// What one search read: the tweets (oldest `max_poll_tweets` kept), and whether the budget cut it short.
#[derive(Default)]
struct ReadRange {
    tweets: VecDeque<SourcedTweet>,
    truncated: bool,
    cut_short: bool,
    /// The smallest id read, also of tweets dropped for memory.
    oldest_read: Option<u64>,
}

impl ReadRange {
    fn into_batch(self, since_id: Option<u64>) -> Batch {
        // Oldest first, each id once, and none at or below since_id even if the API misbehaved.
        let by_id: BTreeMap<u64, SourcedTweet> = self
            .tweets
            .into_iter()
            .filter(|t| since_id.is_none_or(|since| t.id > since))
            .map(|t| (t.id, t))
            .collect();
        Batch {
            tweets: by_id.into_values().collect(),
            more: self.truncated,
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
fn problem_detail(body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let token = BearerToken::new(" AAAAsecret-token\n").expect("valid token");
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
        assert_eq!(token.to_string(), "<redacted>");
        assert!(!format!("{:?}", token.header()).contains("secret"));
        assert!(matches!(BearerToken::new("  "), Err(SourceError::InvalidToken)));
        assert!(matches!(BearerToken::new("bad\ntoken"), Err(SourceError::InvalidToken)));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            configuration: Duration::from_secs(300),
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let wait = policy.backoff(attempt);
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait:?}");
        }
    }

    #[test]
    fn snowflake_ids_carry_their_time() {
        // 1850000000000000001 was posted on 2024-10-26 (UTC).
        let time = tweet::snowflake_time(1_850_000_000_000_000_001).expect("time");
        assert_eq!(time.format("%Y-%m-%d").to_string(), "2024-10-26");
    }

    #[test]
    fn problem_details_are_summarised() {
        assert_eq!(
            problem_detail(br#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#),
            "Unauthorized"
        );
        assert_eq!(
            problem_detail(
                br#"{"errors":[{"parameters":{"query":["x"]},"message":"Invalid lang operator"}],"title":"Invalid Request"}"#
            ),
            "Invalid lang operator"
        );
        assert_eq!(problem_detail(b"oops"), "oops");
    }
}
