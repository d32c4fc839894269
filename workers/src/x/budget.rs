//! The monthly X read budget: what the producer has read this calendar month, how fast it may go on, and how big
//! its next request may be.
//!
//! ```text
//!  spent <  80% of the budget ─▶ Normal   poll every pollInterval, pages of 100
//!  spent >= 80%               ─▶ Slow     poll every 4 x pollInterval
//!  spent >= 100%              ─▶ Stopped  no search request until the month (UTC) turns
//!  last request of the budget ─▶ max_results = what is left (at least X's minimum of 10)
//! ```
//! Months are calendar months in UTC, because X's pay-per-use billing period is. The record (month, posts read,
//! requests, counts requests and the range of posts not read yet) lives in a [`UsageStore`], so a restarted
//! producer keeps counting the same month and still knows what it skipped.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use cilvest_crds::{
    XSource as XSpec,
    values::{budget_posts, parse_usd},
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

pub use cilvest_crds::usage::{Unread, UsageRecord};

/// From this share of the budget on, polling slows down.
pub const SLOW_FROM: f64 = 0.8;
/// How much longer the wait between polls is once the budget is nearly spent.
pub const SLOW_FACTOR: u32 = 4;
/// X's smallest `max_results` for recent search: a budget with fewer posts left may overshoot by up to 9.
pub const MIN_RESULTS: u32 = 10;

/// How the producer may poll right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Under 80% of the budget, or no budget.
    Normal,
    /// 80% or more spent: wait [`SLOW_FACTOR`] poll intervals.
    Slow,
    /// Spent: no search until `until` (the next month's first instant, UTC).
    Stopped { until: DateTime<Utc> },
}

impl Pace {
    /// The `XBudget` condition reason that goes with this pace.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "WithinBudget",
            Self::Slow => "BudgetNearlySpent",
            Self::Stopped { .. } => "BudgetSpent",
        }
    }
}

/// The month's usage against the budget, with the prices that turn it into dollars.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Posts per month; `None` for no limit.
    limit: Option<u64>,
    price_per_read: f64,
    price_per_count_request: f64,
    usage: UsageRecord,
}

impl Budget {
    /// The budget the pipeline declares, starting from `stored` (a fresh record if it is of another month).
    pub fn new(spec: &XSpec, stored: Option<UsageRecord>, now: DateTime<Utc>) -> Self {
        let limit = spec
            .monthly_read_budget
            .as_ref()
            .and_then(|b| budget_posts(b, &spec.price_per_read_usd));
        let mut budget = Self {
            limit,
            price_per_read: parse_usd(&spec.price_per_read_usd).unwrap_or(0.0),
            price_per_count_request: parse_usd(&spec.price_per_count_request_usd).unwrap_or(0.0),
            usage: stored.unwrap_or_default(),
        };
        budget.roll(now);
        budget
    }

    /// No limit, priced at X's defaults, counted from zero.
    pub fn unlimited(now: DateTime<Utc>) -> Self {
        Self::new(&XSpec::default(), None, now)
    }

    /// Start a new record when the month has turned. The unread range is kept: it is still unread.
    pub fn roll(&mut self, now: DateTime<Utc>) {
        let month = month_of(now);
        if self.usage.month != month {
            self.usage = UsageRecord {
                month,
                unread: self.usage.unread,
                rejection: self.usage.rejection.clone(),
                ..UsageRecord::default()
            };
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn usage(&self) -> &UsageRecord {
        &self.usage
    }

    /// Posts left this month; `None` without a budget.
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.usage.posts_read))
    }

    pub fn pace(&self, now: DateTime<Utc>) -> Pace {
        let Some(limit) = self.limit else {
            return Pace::Normal;
        };
        let read = self.usage.posts_read;
        if read >= limit {
            Pace::Stopped { until: next_month(now) }
        } else if read as f64 >= limit as f64 * SLOW_FROM {
            Pace::Slow
        } else {
            Pace::Normal
        }
    }

    /// `max_results` for the next search request, or `None` when the budget is spent.
    pub fn page_size(&self, max: u32) -> Option<u32> {
        match self.remaining() {
            None => Some(max),
            Some(0) => None,
            Some(left) => Some(
                u32::try_from(left)
                    .unwrap_or(max)
                    .clamp(MIN_RESULTS, max.max(MIN_RESULTS)),
            ),
        }
    }

    /// A search request was answered with `posts` posts.
    pub fn record_search(&mut self, posts: u64, now: DateTime<Utc>) {
        self.roll(now);
        self.usage.requests += 1;
        self.usage.posts_read += posts;
    }

    /// A counts request was answered.
    pub fn record_counts(&mut self, now: DateTime<Utc>) {
        self.roll(now);
        self.usage.count_requests += 1;
    }

    /// Remember that X refuses the producer's requests (`None`: it answers again). Returns whether it changed.
    pub fn set_rejection(&mut self, rejection: Option<cilvest_crds::usage::Rejection>) -> bool {
        let changed = self.usage.rejection != rejection;
        self.usage.rejection = rejection;
        changed
    }

    pub fn set_unread(&mut self, unread: Option<Unread>) {
        self.usage.unread = unread;
    }

    /// This month's spend in US dollars at the spec's prices.
    pub fn spend_usd(&self) -> f64 {
        self.usage.posts_read as f64 * self.price_per_read
            + self.usage.count_requests as f64 * self.price_per_count_request
    }
}

/// `YYYY-MM` of `at` in UTC.
pub fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// The first instant of the month after `at`'s, UTC.
pub fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(at, |d| Utc.from_utc_datetime(&d))
}

/// What the budget exposes on `/metrics`.
#[derive(Clone, Default)]
pub struct BudgetMetrics {
    month_posts_read: Gauge,
    month_requests: Gauge,
    month_count_requests: Gauge,
    month_spend_usd: Gauge<f64, AtomicU64>,
    budget_posts: Gauge,
    budget_state: Gauge,
    count_requests: Counter,
}

impl BudgetMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "x_month_posts_read",
            "Posts read from X this calendar month (UTC), including before the last restart",
            self.month_posts_read.clone(),
        );
        registry.register(
            "x_month_requests",
            "X recent search requests answered this calendar month (UTC)",
            self.month_requests.clone(),
        );
        registry.register(
            "x_month_count_requests",
            "X counts requests answered this calendar month (UTC)",
            self.month_count_requests.clone(),
        );
        registry.register(
            "x_month_estimated_spend_usd",
            "Estimated X API spend this calendar month in US dollars, at the pipeline's prices",
            self.month_spend_usd.clone(),
        );
        registry.register(
            "x_read_budget_posts",
            "The monthly read budget in posts; 0 when none is set",
            self.budget_posts.clone(),
        );
        registry.register(
            "x_budget_state",
            "0 within budget, 1 nearly spent (polling slowed), 2 spent (reads stopped until the month turns)",
            self.budget_state.clone(),
        );
        registry.register(
            "x_count_requests",
            "X counts requests answered since start",
            self.count_requests.clone(),
        );
    }

    /// Copy the budget's state into the gauges.
    pub fn observe(&self, budget: &Budget, now: DateTime<Utc>) {
        let usage = budget.usage();
        self.month_posts_read.set(gauge_value(usage.posts_read));
        self.month_requests.set(gauge_value(usage.requests));
        self.month_count_requests.set(gauge_value(usage.count_requests));
        self.month_spend_usd.set(budget.spend_usd());
        self.budget_posts.set(budget.limit().map_or(0, gauge_value));
        self.budget_state.set(match budget.pace(now) {
            Pace::Normal => 0,
            Pace::Slow => 1,
            Pace::Stopped { .. } => 2,
        });
    }

    pub fn count_request(&self) {
        self.count_requests.inc();
    }

    /// Counts requests answered since start (for tests and logs).
    pub fn count_requests(&self) -> u64 {
        self.count_requests.get()
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cilvest_crds::ReadBudget;

    fn spec(posts: Option<i64>, usd: Option<&str>) -> XSpec {
        XSpec {
            monthly_read_budget: Some(ReadBudget {
                posts,
                usd: usd.map(str::to_owned),
            }),
            ..XSpec::default()
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn dollars_become_posts_at_the_price() {
        let budget = Budget::new(&spec(None, Some("50")), None, at("2026-11-28T10:00:00Z"));
        assert_eq!(budget.limit(), Some(10_000));
        assert_eq!(Budget::new(&XSpec::default(), None, Utc::now()).limit(), None);
    }

    #[test]
    fn slows_at_80_percent_and_stops_at_the_budget_until_the_month_turns() {
        let now = at("2026-11-28T10:00:00Z");
        let mut budget = Budget::new(&spec(Some(1000), None), None, now);
        budget.record_search(799, now);
        assert_eq!(budget.pace(now), Pace::Normal);
        budget.record_search(1, now);
        assert_eq!(budget.pace(now), Pace::Slow);
        budget.record_search(200, now);
        assert_eq!(
            budget.pace(now),
            Pace::Stopped {
                until: at("2026-12-01T00:00:00Z")
            }
        );
        assert_eq!(budget.page_size(100), None);
        // December: a fresh month, the unread range carried over.
        budget.set_unread(Some(Unread {
            since_id: Some(5),
            until_id: 9,
        }));
        let december = at("2026-12-01T00:00:01Z");
        budget.roll(december);
        assert_eq!(budget.usage().month, "2026-12");
        assert_eq!(budget.usage().posts_read, 0);
        assert!(budget.usage().unread.is_some());
        assert_eq!(budget.pace(december), Pace::Normal);
    }

    #[test]
    fn the_last_request_asks_for_what_is_left() {
        let now = Utc::now();
        let mut budget = Budget::new(&spec(Some(250), None), None, now);
        assert_eq!(budget.page_size(100), Some(100));
        budget.record_search(200, now);
        assert_eq!(budget.page_size(100), Some(50));
        budget.record_search(47, now);
        assert_eq!(
            budget.page_size(100),
            Some(MIN_RESULTS),
            "X's minimum page: overshoot below 10"
        );
    }

    #[test]
    fn a_stored_record_of_this_month_is_continued() {
        let now = at("2026-11-28T10:00:00Z");
        let stored = UsageRecord {
            month: "2026-11".into(),
            posts_read: 40,
            requests: 2,
            count_requests: 3,
            unread: None,
            rejection: None,
        };
        let budget = Budget::new(&spec(Some(100), None), Some(stored.clone()), now);
        assert_eq!(budget.usage(), &stored);
        assert!((budget.spend_usd() - (40.0 * 0.005 + 3.0 * 0.005)).abs() < 1e-9);
        let old = Budget::new(&spec(Some(100), None), Some(stored), at("2027-01-02T00:00:00Z"));
        assert_eq!(old.usage().posts_read, 0);
        assert_eq!(next_month(at("2026-12-31T23:59:59Z")), at("2027-01-01T00:00:00Z"));
    }
}
