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
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use cilvest_crds::query::X_RECENT_WINDOW;
use serde_json::Value;
use url::Url;

mod error;
mod http;
mod metrics;
#[cfg(test)]
mod tests;
mod wire;

pub use error::{BearerToken, SourceError};
pub use http::RetryPolicy;
pub use metrics::SourceMetrics;
use wire::CountsPage;
pub(super) use wire::SearchPage;
pub use wire::{Batch, HourCount, SourcedTweet};

use crate::{
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
pub(super) const RESET_MARGIN: Duration = Duration::from_millis(500);
/// X's windows are 15 minutes; a reset much further away is a bad header, not a reason to sleep for a day.
pub(super) const MAX_RESET_WAIT: Duration = Duration::from_secs(16 * 60);

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
    pub(super) async fn save_usage(&mut self) {
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
