//! The summary of one run: `reports/dt=D.json` in the lake and, cut down to `DailyRun`, the container's
//! termination message, from which the operator fills `status.lastRun`.

use std::collections::BTreeMap;

use cilvest_crds::DailyRun;
use serde::{Deserialize, Serialize};

use crate::transform::Counts;

/// Kubernetes keeps at most this many bytes of a termination message.
const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// `DailyRun.result` of a run that did everything it was asked to.
pub const SUCCEEDED: &str = "Succeeded";
/// `DailyRun.result` of a run that stopped at an error.
pub const FAILED: &str = "Failed";

/// Everything a run reports. The first fields are `DailyRun`'s, with the same names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The local day, `YYYY-MM-DD`.
    pub date: String,
    /// `Succeeded` or `Failed`.
    pub result: String,
    pub tweets_in: u64,
    pub tweets_kept: u64,
    pub rejected: u64,
    pub duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The transform engine, `native`.
    pub engine: String,
    /// Raw objects read.
    pub objects: u64,
    /// Tweets dropped, by reason.
    pub dropped: Dropped,
    /// Kept tweets that mention no keyword.
    pub unmatched: u64,
    /// Kept tweets per keyword.
    pub per_keyword: BTreeMap<String, u64>,
    /// Seconds spent in each step.
    pub durations: Durations,
    /// Where the outputs went; a step that did not run is absent.
    pub outputs: Outputs,
    /// The day's input when it was read: the watermark a later run compares with (`catch_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<super::catch_up::LakeState>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dropped {
    pub other_day: u64,
    pub other_language: u64,
    pub retweets: u64,
    pub duplicates: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    pub read: f64,
    pub transform: f64,
    pub lake: f64,
    pub warehouse: f64,
    pub search: f64,
    pub total: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// The curated Parquet object, relative to the lake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curated: Option<String>,
    /// `project.dataset.tweets` when the warehouse was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    /// The marts dataset when the marts were rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marts: Option<String>,
    /// The search index written, when search was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_index: Option<String>,
    /// Documents indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_documents: Option<u64>,
    /// Item retries after Elasticsearch throttled a bulk request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_retries: Option<u64>,
}

impl Report {
    /// Take the transform's counts.
    pub fn set_counts(&mut self, counts: &Counts) {
        self.tweets_in = counts.tweets_in;
        self.tweets_kept = counts.kept;
        self.rejected = counts.rejected;
        self.dropped = Dropped {
            other_day: counts.other_day,
            other_language: counts.other_language,
            retweets: counts.retweets,
            duplicates: counts.duplicates,
        };
        self.unmatched = counts.unmatched;
        self.per_keyword = counts.per_keyword.clone();
    }

    /// The termination message: this report as a `DailyRun`, within Kubernetes' size limit.
    /// The run as the operator's status shows it.
    pub fn daily_run(&self) -> DailyRun {
        DailyRun {
            date: self.date.clone(),
            result: self.result.clone(),
            tweets_in: i64::try_from(self.tweets_in).unwrap_or(i64::MAX),
            tweets_kept: i64::try_from(self.tweets_kept).unwrap_or(i64::MAX),
            rejected: i64::try_from(self.rejected).unwrap_or(i64::MAX),
            duration_seconds: (self.duration_seconds * 1000.0).round() / 1000.0,
            message: self.message.clone(),
        }
    }

    /// The termination message of a one-day run: its [`DailyRun`], the message cut to fit Kubernetes' 4 KiB.
    pub fn termination_message(&self) -> String {
        let mut run = self.daily_run();
        loop {
            let text = serde_json::to_string(&run).unwrap_or_default();
            match &mut run.message {
                Some(message) if text.len() > TERMINATION_MESSAGE_LIMIT => {
                    let keep = message.len().saturating_sub(text.len() - TERMINATION_MESSAGE_LIMIT + 3);
                    cut(message, keep);
                }
                _ => return text,
            }
        }
    }
}

/// The termination message of a run over several days: a list of [`DailyRun`], oldest day first. To fit 4 KiB,
/// error messages are cut short first, then the oldest successful days are left out (their reports stay in the
/// lake); failures are kept as long as possible.
pub fn termination_messages(reports: &[Report]) -> String {
    let mut runs: Vec<DailyRun> = reports.iter().map(Report::daily_run).collect();
    let share = TERMINATION_MESSAGE_LIMIT / runs.len().max(1);
    for message in runs.iter_mut().filter_map(|r| r.message.as_mut()) {
        if message.len() > share / 2 {
            cut(message, share / 2);
        }
    }
    loop {
        let text = serde_json::to_string(&runs).unwrap_or_default();
        if text.len() <= TERMINATION_MESSAGE_LIMIT || runs.len() <= 1 {
            return text;
        }
        let drop = runs.iter().position(|r| r.result == SUCCEEDED).unwrap_or(0);
        runs.remove(drop);
    }
}

/// Cut `message` to at most `keep` bytes on a character boundary, and say so.
fn cut(message: &mut String, keep: usize) {
    let at = (0..=keep.min(message.len()))
        .rev()
        .find(|&i| message.is_char_boundary(i))
        .unwrap_or(0);
    message.truncate(at);
    message.push_str("...");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_termination_message_is_a_daily_run() {
        let report = Report {
            date: "2026-11-01".into(),
            result: SUCCEEDED.into(),
            tweets_in: 20,
            tweets_kept: 12,
            rejected: 3,
            duration_seconds: 1.23456,
            engine: "native".into(),
            ..Default::default()
        };
        let run: DailyRun = serde_json::from_str(&report.termination_message()).expect("DailyRun");
        assert_eq!(run.tweets_kept, 12);
        assert_eq!(run.duration_seconds, 1.235);
        assert_eq!(run.message, None);
        // The full report also reads as a DailyRun, so either can fill status.lastRun.
        let full: DailyRun = serde_json::from_str(&serde_json::to_string(&report).expect("json")).expect("full");
        assert_eq!(full.rejected, 3);
    }

    #[test]
    fn a_long_error_is_cut_to_the_termination_message_limit() {
        let report = Report {
            date: "2026-11-01".into(),
            result: FAILED.into(),
            message: Some("é".repeat(5000)),
            ..Default::default()
        };
        let text = report.termination_message();
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let run: DailyRun = serde_json::from_str(&text).expect("DailyRun");
        assert!(run.message.expect("message").ends_with("..."));
    }

    #[test]
    fn a_run_over_many_days_fits_its_termination_message_and_keeps_the_failures() {
        let reports: Vec<Report> = (1..=40)
            .map(|day| Report {
                date: format!("2026-10-{:02}", day % 31 + 1),
                result: if day % 10 == 0 { FAILED } else { SUCCEEDED }.into(),
                message: (day % 10 == 0).then(|| "BigQuery refused the load: ".repeat(100)),
                ..Report::default()
            })
            .collect();
        let text = termination_messages(&reports);
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let runs: Vec<DailyRun> = serde_json::from_str(&text).expect("a list of runs");
        assert_eq!(runs.iter().filter(|r| r.result == FAILED).count(), 4, "{runs:?}");
        assert!(
            runs.iter()
                .all(|r| r.message.as_ref().is_none_or(|m| m.ends_with("...")))
        );
        let one: Vec<DailyRun> = serde_json::from_str(&termination_messages(&reports[..1])).expect("one run");
        assert_eq!(one.len(), 1);
    }
}
