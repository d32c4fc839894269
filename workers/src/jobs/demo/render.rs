//! The demand report three ways: an aligned plain-text table for people, JSON for machines, and a self-contained
//! HTML page with inline SVG charts (`charts`): mentions per keyword per day and per local hour, and the most
//! active authors (no scripts, styles or fonts from elsewhere).

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::Serialize;

use super::{charts, marts::Marts};
use crate::transform::Counts;
use charts::escape;

/// Everything the demo reports.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DemoReport {
    /// Where the tweets came from, said first: generated (with the generator's settings) or the input file.
    pub data: String,
    pub pipeline: String,
    pub time_zone: String,
    /// The keywords, in the pipeline's order.
    pub keywords: Vec<String>,
    /// The local days the lake held.
    pub days: Vec<NaiveDate>,
    /// Records on the bus.
    pub records: u64,
    /// Records the lake writer set aside in `rejected/` (not tweet envelopes).
    pub rejected_records: u64,
    /// The daily transform's counts, summed over the days.
    pub transform: Counts,
    /// Mentions per keyword per local hour (0-23), summed over the days: `hourly[keyword][hour]`.
    pub hourly: Vec<(String, [u64; 24])>,
    pub marts: Marts,
    pub lake: String,
    pub seconds: f64,
}

impl DemoReport {
    /// Mentions of `keyword` on `day` (0 when the mart has no row: BigQuery keeps no empty groups).
    pub fn daily(&self, keyword: &str, day: NaiveDate) -> u64 {
        self.marts
            .keyword_daily
            .iter()
            .find(|d| d.keyword == keyword && d.local_date == day)
            .map_or(0, |d| d.tweets)
    }

    fn keyword_total(&self, keyword: &str) -> (u64, u64) {
        self.marts
            .per_keyword
            .iter()
            .find(|k| k.keyword == keyword)
            .map_or((0, 0), |k| (k.tweets, k.authors))
    }
}

/// A plain-text table: a header and right-aligned numbers, first column left-aligned.
fn table(out: &mut String, title: &str, header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    // Numeric columns are right-aligned (header included), the others left-aligned.
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|row| row.get(i).is_some_and(|c| c.parse::<f64>().is_ok()))
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if !numeric[i] {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(out, "{}", line(header));
    let _ = writeln!(
        out,
        "{}",
        widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ")
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
}

fn strings<I: IntoIterator<Item = S>, S: ToString>(items: I) -> Vec<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

/// The report as text tables.
pub fn text(report: &DemoReport) -> String {
    let mut out = String::new();
    let t = &report.transform;
    let _ = writeln!(out, "Data: {}", report.data);
    let _ = writeln!(
        out,
        "Cilvest demand report: pipeline {}, {} day(s) from {} to {} ({})",
        report.pipeline,
        report.days.len(),
        report.days.first().map(ToString::to_string).unwrap_or_default(),
        report.days.last().map(ToString::to_string).unwrap_or_default(),
        report.time_zone,
    );
    let _ = writeln!(
        out,
        "{} records on the bus, {} not tweets; {} tweets in: {} other language, {} retweets, {} duplicates, \
         {} other day dropped; {} kept ({} mention no keyword). Lake: {}. {:.2}s.",
        report.records,
        report.rejected_records + t.rejected,
        t.tweets_in,
        t.other_language,
        t.retweets,
        t.duplicates,
        t.other_day,
        t.kept,
        t.unmatched,
        report.lake,
        report.seconds,
    );

    let total = report.marts.total.clone().unwrap_or(super::marts::Total {
        tweets: 0,
        authors: 0,
        first_day: None,
        last_day: None,
    });
    let mut rows: Vec<Vec<String>> = report
        .keywords
        .iter()
        .map(|k| {
            let (tweets, authors) = report.keyword_total(k);
            strings([k.clone(), tweets.to_string(), authors.to_string()])
        })
        .collect();
    rows.push(strings([
        "all tweets".to_owned(),
        total.tweets.to_string(),
        total.authors.to_string(),
    ]));
    table(
        &mut out,
        "Mentions per keyword",
        &strings(["keyword", "tweets", "authors"]),
        &rows,
    );

    let mut header = vec!["day".to_owned()];
    header.extend(report.keywords.iter().cloned());
    let rows: Vec<Vec<String>> = report
        .days
        .iter()
        .map(|day| {
            let mut row = vec![day.to_string()];
            row.extend(report.keywords.iter().map(|k| report.daily(k, *day).to_string()));
            row
        })
        .collect();
    table(&mut out, "Mentions per keyword per day", &header, &rows);

    let mut header = vec!["hour".to_owned()];
    header.extend(report.keywords.iter().cloned());
    let rows: Vec<Vec<String>> = (0..24)
        .map(|hour| {
            let mut row = vec![format!("{hour:02}:00")];
            row.extend(report.hourly.iter().map(|(_, counts)| counts[hour].to_string()));
            row
        })
        .collect();
    table(
        &mut out,
        "Mentions per keyword per local hour (all days)",
        &header,
        &rows,
    );

    let rows: Vec<Vec<String>> = report
        .marts
        .top_users
        .iter()
        .map(|u| strings([u.rank.to_string(), format!("@{}", u.username), u.tweets.to_string()]))
        .collect();
    table(&mut out, "Top users", &strings(["rank", "username", "tweets"]), &rows);
    out
}

/// Series colours, one per keyword in order; distinct enough to tell apart in a screenshot.
pub const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The HTML page: the daily chart, then the tables of the text report.
pub fn html(report: &DemoReport) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cilvest demand report</title>\n\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}pre{{font-size:13px;white-space:pre-wrap}}\
         .legend span{{margin-right:18px}}</style></head><body>\n\
         <p id=\"data\"><b>Data: {}</b></p>\n\
         <h1>Cilvest demand report</h1>\n<p>Pipeline <b>{}</b>, {} day(s), time zone {}.</p>\n\
         <h2>Daily mentions per keyword</h2>\n",
        escape(&report.data),
        escape(&report.pipeline),
        report.days.len(),
        escape(&report.time_zone)
    );
    page.push_str(&charts::line_chart(&charts::LineChart {
        id: "daily-chart",
        title: "Daily mentions per keyword",
        series_id: "series",
        label_class: "",
        x: report.days.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect(),
        series: report
            .keywords
            .iter()
            .map(|k| (k.clone(), report.days.iter().map(|d| report.daily(k, *d)).collect()))
            .collect(),
    }));
    page.push_str("<p class=\"legend\" id=\"legend\">");
    for (i, keyword) in report.keywords.iter().enumerate() {
        let _ = write!(
            page,
            "<span><b style=\"color:{}\">&#9632;</b> {}</span>",
            COLOURS[i % COLOURS.len()],
            escape(keyword)
        );
    }
    page.push_str("</p>\n<h2>Mentions per local hour of day</h2>\n");
    page.push_str(&charts::line_chart(&charts::LineChart {
        id: "hourly-chart",
        title: "Mentions per keyword per local hour, summed over the days",
        series_id: "hourly",
        label_class: " hourly",
        x: (0..24).map(|h| format!("{h:02}")).collect(),
        series: report
            .hourly
            .iter()
            .map(|(k, hours)| (k.clone(), hours.to_vec()))
            .collect(),
    }));
    page.push_str("<h2>Most active authors</h2>\n");
    page.push_str(&charts::bar_chart(
        "top-authors-chart",
        "Tweets of the most active authors",
        &report
            .marts
            .top_users
            .iter()
            .map(|u| (u.username.clone(), u.tweets))
            .collect::<Vec<_>>(),
    ));
    page.push_str("<h2>Tables</h2>\n<pre id=\"report\">");
    page.push_str(&escape(&text(report)));
    page.push_str("</pre>\n</body></html>\n");
    page
}
