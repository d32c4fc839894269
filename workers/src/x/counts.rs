//! Counts mode: hourly volumes of the keywords in `counts` or `both` mode, from X's counts endpoint into the lake,
//! without reading a single post.
//!
//! ```text
//!  every countsInterval, per keyword ─▶ GET /2/tweets/counts/recent?query=<keyword's terms>&granularity=hour
//!                                       &start_time=<7 days ago>   (one request; X bills it, not the posts)
//!                                   ─▶ counts/dt=D/<keyword>.ndjson   one line per hour of local day D,
//!                                       merged with what is there (the oldest day is only partly in reach)
//! ```
//! The daily job loads `counts/dt=D/` into the marts as `source = 'counted'` next to the volumes it read.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use cilvest_crds::{
    CilvestPipelineSpec,
    query::{X_RECENT_WINDOW, x_keyword_query},
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{
    lake::counts::{CountedHour, day_path, parse_lines},
    x::client::{SourceError, XSource},
};

/// Stay this far inside X's 7-day window, which X measures from its own clock.
const WINDOW_MARGIN: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CountsError {
    #[error("failed to build the counts query of keyword {keyword}: {source}")]
    Query {
        keyword: String,
        source: cilvest_crds::query::QueryTooLong,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("failed to write counted volumes to {path}: {source}")]
    Write { path: String, source: object_store::Error },
}

/// The counts side of the producer.
pub struct CountsJob {
    /// (keyword name, its counts query), in the spec's order.
    keywords: Vec<(String, String)>,
    interval: Duration,
    time_zone: Tz,
    lake: Arc<dyn ObjectStore>,
    last_run: Option<tokio::time::Instant>,
}

impl CountsJob {
    /// The job for `spec`'s keywords in `counts` or `both` mode; `None` when there is none.
    pub fn new(
        spec: &CilvestPipelineSpec,
        interval: Duration,
        time_zone: Tz,
        lake: Arc<dyn ObjectStore>,
    ) -> Result<Option<Self>, CountsError> {
        let keywords = spec
            .keywords
            .iter()
            .filter(|k| k.mode.counts())
            .map(|k| {
                x_keyword_query(spec, k)
                    .map(|query| (k.name.clone(), query))
                    .map_err(|source| CountsError::Query {
                        keyword: k.name.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!keywords.is_empty()).then_some(Self {
            keywords,
            interval,
            time_zone,
            lake,
            last_run: None,
        }))
    }

    /// Fetch and store every keyword's hourly counts when the interval has passed since the last run.
    pub async fn run_if_due(&mut self, x: &mut XSource) -> Result<(), CountsError> {
        let now = tokio::time::Instant::now();
        if self
            .last_run
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return Ok(());
        }
        self.run(x).await?;
        self.last_run = Some(now);
        Ok(())
    }

    /// Fetch and store every keyword's hourly counts of the last 7 days.
    pub async fn run(&mut self, x: &mut XSource) -> Result<(), CountsError> {
        let now = Utc::now();
        let start = now - TimeDelta::from_std(X_RECENT_WINDOW).unwrap_or(TimeDelta::days(7)) + WINDOW_MARGIN;
        // Whole hours, so that the oldest bucket is a full hour rather than a sliver of one.
        let start = start
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .map_or(start, |t| t + TimeDelta::hours(1));
        for (keyword, query) in self.keywords.clone() {
            let buckets = x.counts(&query, start).await?;
            let mut by_day: BTreeMap<String, Vec<CountedHour>> = BTreeMap::new();
            for bucket in buckets {
                let local = bucket.start.with_timezone(&self.time_zone);
                let hour = CountedHour {
                    keyword: keyword.clone(),
                    start: bucket.start,
                    local_date: local.format("%Y-%m-%d").to_string(),
                    local_hour: local.hour(),
                    tweet_count: bucket.tweet_count,
                    fetched_at: now,
                };
                by_day.entry(hour.local_date.clone()).or_default().push(hour);
            }
            let total: u64 = by_day.values().flatten().map(|h| h.tweet_count).sum();
            for (day, hours) in by_day {
                self.merge_day(&keyword, &day, hours).await?;
            }
            tracing::info!(keyword = %keyword, posts_counted = total, "stored hourly counts of the last 7 days");
        }
        Ok(())
    }

    /// Write `hours` into `counts/dt=<day>/<keyword>.ndjson`, keeping the hours already there that this run did
    /// not reach.
    async fn merge_day(&self, keyword: &str, day: &str, hours: Vec<CountedHour>) -> Result<(), CountsError> {
        let path = day_path(day, keyword);
        let mut merged: BTreeMap<DateTime<Utc>, CountedHour> = BTreeMap::new();
        if let Ok(existing) = self.lake.get(&path).await
            && let Ok(bytes) = existing.bytes().await
        {
            for hour in parse_lines(&bytes) {
                merged.insert(hour.start, hour);
            }
        }
        for hour in hours {
            merged.insert(hour.start, hour);
        }
        let mut body = Vec::new();
        for hour in merged.values() {
            if let Ok(line) = serde_json::to_vec(hour) {
                body.extend(line);
                body.push(b'\n');
            }
        }
        self.lake
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|source| CountsError::Write {
                path: path.to_string(),
                source,
            })
    }
}
