//! Which days a daily run processes. The watermark is in the lake: each processed day's report
//! (`reports/dt=D.json`) records what its raw tweets and counts looked like when it ran ([`LakeState`]). A
//! scheduled run processes yesterday, and before it, oldest first, every day of the `catchUpDays` before it that
//! has data and was never processed, failed, or changed since (tweets that landed late). A backfill
//! (`--from`/`--to`) processes every day of its range; `--date` exactly one.
//!
//! ```text
//!  D-8 .. D-2: list raw/dt=D, counts/dt=D ─▶ compare with reports/dt=D.json ─▶ process if new, failed or changed
//!  D-1 (yesterday): always
//! ```

use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde::{Deserialize, Serialize};

use super::{DailyError, Report, raw, report};
use crate::lake::counts::COUNTS_PREFIX;

/// The longest range one backfill takes: a run does its days one after another, and a larger range is better done
/// in pieces (or by the Spark engine, day by day).
pub const MAX_BACKFILL_DAYS: u64 = 366;

/// What a day's input looked like: raw objects and counts objects, their bytes and the newest write. Objects are
/// only ever added (raw) or rewritten (counts), so any change to the input changes this.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LakeState {
    pub objects: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<DateTime<Utc>>,
}

impl LakeState {
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }
}

/// The input of day `date` as it is now.
pub async fn state(lake: &dyn ObjectStore, date: NaiveDate) -> Result<LakeState, DailyError> {
    let mut state = LakeState::default();
    for prefix in [raw::day_prefix(date), Path::from(format!("{COUNTS_PREFIX}/dt={date}"))] {
        let objects: Vec<object_store::ObjectMeta> =
            lake.list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| DailyError::List {
                    prefix: prefix.to_string(),
                    source,
                })?;
        for meta in objects {
            state.objects += 1;
            state.bytes += meta.size;
            state.newest = state.newest.max(Some(meta.last_modified));
        }
    }
    Ok(state)
}

/// `reports/dt=D.json`.
pub fn report_path(date: NaiveDate) -> Path {
    Path::from(format!("reports/dt={date}.json"))
}

/// The report of the last run of `date`, if there was one; an unreadable report counts as none (the day is done
/// again, which is safe: every output of a day is replaced, not appended to).
pub async fn previous(lake: &dyn ObjectStore, date: NaiveDate) -> Result<Option<Report>, DailyError> {
    let path = report_path(date);
    let body = match lake.get(&path).await {
        Ok(result) => result.bytes().await,
        Err(err) => Err(err),
    };
    match body {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(DailyError::Read {
            path: path.to_string(),
            source,
        }),
    }
}

/// Whether a day whose input is `now` needs a run, given its last report.
pub fn needs_run(last: Option<&Report>, now: &LakeState) -> bool {
    match last {
        None => !now.is_empty(),
        Some(last) if last.result != report::SUCCEEDED => true,
        Some(last) => last.input.as_ref() != Some(now),
    }
}

/// The days of a scheduled run, oldest first: those of the `catch_up_days` before `yesterday` that need a run,
/// then `yesterday` itself.
pub async fn scheduled(
    lake: &dyn ObjectStore,
    yesterday: NaiveDate,
    catch_up_days: u32,
) -> Result<Vec<NaiveDate>, DailyError> {
    let mut days = Vec::new();
    for back in (1..=u64::from(catch_up_days)).rev() {
        let Some(date) = yesterday.checked_sub_days(Days::new(back)) else {
            continue;
        };
        let now = state(lake, date).await?;
        let last = previous(lake, date).await?;
        if needs_run(last.as_ref(), &now) {
            tracing::info!(%date, objects = now.objects, processed_before = last.is_some(), "catching up on a day");
            days.push(date);
        }
    }
    days.push(yesterday);
    Ok(days)
}

/// Every day from `from` to `to`, both included.
pub fn range(from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>, DailyError> {
    if to < from {
        return Err(DailyError::Range(format!("--to {to} is before --from {from}")));
    }
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    if days.len() as u64 > MAX_BACKFILL_DAYS {
        return Err(DailyError::Range(format!(
            "--from {from} --to {to} is {} days; backfill at most {MAX_BACKFILL_DAYS} at once",
            days.len()
        )));
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(objects: u64, bytes: u64) -> LakeState {
        LakeState {
            objects,
            bytes,
            newest: DateTime::from_timestamp(1_764_800_000 + objects as i64, 0),
        }
    }

    fn report(result: &str, input: Option<LakeState>) -> Report {
        Report {
            result: result.into(),
            input,
            ..Report::default()
        }
    }

    #[test]
    fn a_day_is_done_again_when_new_failed_or_changed() {
        assert!(
            !needs_run(None, &LakeState::default()),
            "no data, never processed: nothing to do"
        );
        assert!(needs_run(None, &state(3, 100)), "data never processed");
        assert!(needs_run(
            Some(&report(report::FAILED, Some(state(3, 100)))),
            &state(3, 100)
        ));
        assert!(!needs_run(
            Some(&report(report::SUCCEEDED, Some(state(3, 100)))),
            &state(3, 100)
        ));
        assert!(
            needs_run(Some(&report(report::SUCCEEDED, Some(state(3, 100)))), &state(4, 130)),
            "late tweets"
        );
        assert!(
            needs_run(Some(&report(report::SUCCEEDED, None)), &state(3, 100)),
            "a report from before watermarks"
        );
    }

    #[test]
    fn a_backfill_range_is_inclusive_and_bounded() {
        let day = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert_eq!(range(day("2026-11-01"), day("2026-11-03")).expect("range").len(), 3);
        assert_eq!(range(day("2026-11-01"), day("2026-11-01")).expect("range").len(), 1);
        let backwards = range(day("2026-11-03"), day("2026-11-01")).expect_err("backwards");
        assert!(backwards.to_string().contains("before --from"), "{backwards}");
        assert!(range(day("2024-01-01"), day("2026-01-01")).is_err());
    }
}
