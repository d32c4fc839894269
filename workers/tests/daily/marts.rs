//! What a fixture day must become in BigQuery: the tweets table, the marts, and the fields docs/looker-studio.md names.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use chrono::{Days, NaiveDate};
use cilvest_workers::google::bigquery::{Row, Warehouse};
use serde_json::json;

use super::{DAY1, DAY2, Expected, float, int, select, text};

pub(super) fn assert_warehouse_tweets(rows: &[Row], expected: &BTreeMap<String, Expected>) {
    let by_id: BTreeMap<String, &Row> = rows.iter().map(|r| (text(r, "id"), r)).collect();
    assert_eq!(rows.len(), by_id.len(), "no duplicate ids in tweets");
    assert_eq!(by_id.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (id, want) in expected {
        let row = by_id[id];
        assert_eq!(
            int(row, "created_at"),
            want.created_at.timestamp_micros(),
            "created_at of {id}"
        );
        assert_eq!(
            text(row, "local_date"),
            want.local_date.to_string(),
            "local_date of {id}"
        );
        assert_eq!(int(row, "local_hour"), i64::from(want.local_hour), "local_hour of {id}");
        assert_eq!(row["username"].as_str(), want.username.as_deref(), "username of {id}");
        assert_eq!(text(row, "text"), want.text, "text of {id}");
        assert_eq!(text(row, "text_clean"), want.text_clean, "text_clean of {id}");
        assert_eq!(text(row, "lang"), "id", "lang of {id}");
        assert_eq!(row["keywords"], json!(want.keywords), "keywords of {id}");
    }
}

/// `(keyword, row)` for every keyword of every row: how keyword marts count.
pub(super) fn mentions(rows: &BTreeMap<String, Expected>) -> impl Iterator<Item = (&str, &Expected)> {
    rows.values()
        .flat_map(|row| row.keywords.iter().map(move |k| (k.as_str(), row)))
}

/// Rank by count, descending, with ties sharing a rank (SQL RANK()), keeping ranks up to 10.
fn top10(counts: &BTreeMap<String, i64>) -> BTreeMap<String, (i64, i64)> {
    counts
        .iter()
        .map(|(user, n)| {
            (
                user.clone(),
                (*n, 1 + counts.values().filter(|m| *m > n).count() as i64),
            )
        })
        .filter(|(_, (_, rank))| *rank <= 10)
        .collect()
}

/// docs/looker-studio.md names only tables and fields the daily job builds: each `| `table` | `field`, ... |` row
/// of its table list, against the columns the marts dataset returns.
pub(super) async fn looker_studio_doc_names_real_fields(warehouse: &Warehouse, marts: &str) {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/looker-studio.md"))
        .expect("docs/looker-studio.md");
    let ticked = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut tables = 0;
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        let table = ticked(cells[1]).remove(0);
        let rows = select(warehouse, marts, &table).await;
        let columns: BTreeSet<&String> = rows.first().map(|r| r.keys().collect()).unwrap_or_default();
        assert!(!columns.is_empty(), "{table}: no rows to read columns from");
        for field in ticked(cells[2]) {
            assert!(
                columns.contains(&field),
                "docs/looker-studio.md names {table}.{field}; it has {columns:?}"
            );
        }
        tables += 1;
    }
    assert_eq!(tables, 7, "every mart and view is in the doc's table");
}

pub(super) async fn assert_marts(warehouse: &Warehouse, marts: &str, expected: &BTreeMap<String, Expected>) {
    let authors = |rows: &mut dyn Iterator<Item = &Expected>| -> i64 {
        rows.filter_map(|r| r.username.clone()).collect::<BTreeSet<_>>().len() as i64
    };

    let total = select(warehouse, marts, "mart_total_tweets").await;
    assert_eq!(total.len(), 1);
    assert_eq!(int(&total[0], "tweets"), expected.len() as i64);
    assert_eq!(int(&total[0], "authors"), authors(&mut expected.values()));
    assert_eq!(text(&total[0], "first_day"), DAY1);
    assert_eq!(text(&total[0], "last_day"), DAY2);

    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for keyword in mentions(expected).map(|(k, _)| k).collect::<BTreeSet<_>>() {
        let rows: Vec<&Expected> = mentions(expected)
            .filter(|(k, _)| *k == keyword)
            .map(|(_, r)| r)
            .collect();
        want.insert(
            keyword.to_owned(),
            (rows.len() as i64, authors(&mut rows.iter().copied())),
        );
    }
    let got: BTreeMap<String, (i64, i64)> = select(warehouse, marts, "mart_tweets_per_keyword")
        .await
        .iter()
        .map(|r| (text(r, "keyword"), (int(r, "tweets"), int(r, "authors"))))
        .collect();
    assert_eq!(got, want, "mart_tweets_per_keyword");
    // What a chart reading v_keyword_daily adds up per keyword: the distinct kept tweets that mention it.
    let mut charted: BTreeMap<String, i64> = BTreeMap::new();
    for row in select(warehouse, marts, "v_keyword_daily").await {
        assert_eq!(text(&row, "source"), "read", "{row:?}");
        *charted.entry(text(&row, "keyword")).or_default() += int(&row, "tweets");
    }
    let distinct: BTreeMap<String, i64> = want.iter().map(|(k, (tweets, _))| (k.clone(), *tweets)).collect();
    assert_eq!(
        charted, distinct,
        "v_keyword_daily: one number per keyword and day, summing to the kept tweets"
    );

    let mut daily: BTreeMap<(String, NaiveDate), Vec<&Expected>> = BTreeMap::new();
    for (keyword, row) in mentions(expected) {
        daily.entry((keyword.to_owned(), row.local_date)).or_default().push(row);
    }
    let day_totals: BTreeMap<NaiveDate, usize> = expected.values().fold(BTreeMap::new(), |mut totals, row| {
        *totals.entry(row.local_date).or_default() += 1;
        totals
    });
    let got: BTreeMap<(String, NaiveDate), Row> = select(warehouse, marts, "mart_keyword_daily")
        .await
        .into_iter()
        .map(|r| ((text(&r, "keyword"), text(&r, "local_date").parse().expect("date")), r))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        daily.keys().collect::<Vec<_>>(),
        "mart_keyword_daily keys"
    );
    for ((keyword, date), rows) in &daily {
        let row = &got[&(keyword.clone(), *date)];
        assert_eq!(int(row, "tweets"), rows.len() as i64, "tweets of {keyword} on {date}");
        assert_eq!(
            int(row, "authors"),
            authors(&mut rows.iter().copied()),
            "authors of {keyword} on {date}"
        );
        let week: usize = (0..7)
            .filter_map(|back| date.checked_sub_days(Days::new(back)))
            .map(|day| daily.get(&(keyword.clone(), day)).map_or(0, Vec::len))
            .sum();
        assert!(
            (float(row, "tweets_7d_avg") - week as f64 / 7.0).abs() < 1e-9,
            "7-day average of {keyword} on {date}"
        );
        let share = rows.len() as f64 / day_totals[date] as f64;
        assert!(
            (float(row, "share_of_day") - share).abs() < 1e-9,
            "share of {keyword} on {date}"
        );
    }

    let mut hourly: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for (keyword, row) in mentions(expected) {
        *hourly
            .entry((
                keyword.to_owned(),
                row.local_date.to_string(),
                i64::from(row.local_hour),
            ))
            .or_default() += 1;
    }
    let got: BTreeMap<(String, String, i64), i64> = select(warehouse, marts, "mart_keyword_hourly")
        .await
        .iter()
        .map(|r| {
            (
                (text(r, "keyword"), text(r, "local_date"), int(r, "local_hour")),
                int(r, "tweets"),
            )
        })
        .collect();
    assert_eq!(got, hourly, "mart_keyword_hourly");

    let mut per_user: BTreeMap<String, i64> = BTreeMap::new();
    for username in expected.values().filter_map(|r| r.username.clone()) {
        *per_user.entry(username).or_default() += 1;
    }
    let want = top10(&per_user);
    assert!(want.len() < per_user.len(), "the fixture has users below the top 10");
    let got: BTreeMap<String, (i64, i64)> = select(warehouse, marts, "mart_top_users")
        .await
        .iter()
        .map(|r| (text(r, "username"), (int(r, "tweets"), int(r, "rank"))))
        .collect();
    assert_eq!(got, want, "mart_top_users");

    let mut want: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for keyword in mentions(expected).map(|(k, _)| k).collect::<BTreeSet<_>>() {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for (_, row) in mentions(expected).filter(|(k, _)| *k == keyword) {
            if let Some(username) = &row.username {
                *counts.entry(username.clone()).or_default() += 1;
            }
        }
        for (username, value) in top10(&counts) {
            want.insert((keyword.to_owned(), username), value);
        }
    }
    let got: BTreeMap<(String, String), (i64, i64)> = select(warehouse, marts, "mart_top_users_per_keyword")
        .await
        .iter()
        .map(|r| {
            (
                (text(r, "keyword"), text(r, "username")),
                (int(r, "tweets"), int(r, "rank")),
            )
        })
        .collect();
    assert_eq!(got, want, "mart_top_users_per_keyword");
}
