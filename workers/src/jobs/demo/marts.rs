//! The embedded warehouse: the BigQuery marts of `warehouse::marts`, computed in memory from curated rows with
//! the same semantics (a tweet counts once per keyword it mentions; authors are distinct non-null usernames;
//! `tweets_7d_avg` sums the 7 calendar days ending that day over 7; top users by `RANK()`, ranks 1-10).
//! `tests/demo/` checks that both give the same tables for the same day.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use crate::transform::CuratedTweet;

// Row fields are named and typed like the mart tables' columns, so that JSON consumers and the agreement test can
// read both the same way.

/// `mart_total_tweets`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Total {
    pub tweets: u64,
    pub authors: u64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
}

/// A row of `mart_tweets_per_keyword`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct KeywordTotal {
    pub keyword: String,
    pub tweets: u64,
    pub authors: u64,
}

/// A row of `mart_keyword_daily`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct KeywordDay {
    pub keyword: String,
    pub local_date: NaiveDate,
    pub tweets: u64,
    pub authors: u64,
    pub tweets_7d_avg: f64,
    pub share_of_day: f64,
    /// `read`: counted from the tweets read (the only kind the embedded marts have); `counted`: X's counts.
    pub source: &'static str,
}

/// A row of `mart_keyword_hourly`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct KeywordHour {
    pub keyword: String,
    pub local_date: NaiveDate,
    pub local_hour: u32,
    pub tweets: u64,
    /// `read` or `counted`, as in [`KeywordDay`].
    pub source: &'static str,
}

/// A row of `mart_top_users` (`keyword` empty) or `mart_top_users_per_keyword`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TopUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub keyword: String,
    pub username: String,
    pub tweets: u64,
    pub rank: u64,
}

/// Every mart. Rows are sorted (BigQuery tables have no order): by keyword name, then day and hour; top users by
/// keyword, rank and username.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Marts {
    pub total: Option<Total>,
    pub per_keyword: Vec<KeywordTotal>,
    pub keyword_daily: Vec<KeywordDay>,
    pub keyword_hourly: Vec<KeywordHour>,
    pub top_users: Vec<TopUser>,
    pub top_users_per_keyword: Vec<TopUser>,
}

/// The `source` of volumes counted from tweets read.
const READ: &str = "read";

/// Ranks kept in the top-user marts.
const TOP: u64 = 10;

/// Compute every mart from the rows of `tweets` (all days).
pub fn compute(rows: &[CuratedTweet]) -> Marts {
    let authors = |users: &BTreeSet<&str>| users.len() as u64;

    let mut all_users: BTreeSet<&str> = BTreeSet::new();
    let mut day_tweets: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    let mut per_keyword: BTreeMap<&str, (u64, BTreeSet<&str>)> = BTreeMap::new();
    let mut daily: BTreeMap<(&str, NaiveDate), (u64, BTreeSet<&str>)> = BTreeMap::new();
    let mut hourly: BTreeMap<(&str, NaiveDate, u32), u64> = BTreeMap::new();
    let mut user_tweets: BTreeMap<&str, u64> = BTreeMap::new();
    let mut keyword_user_tweets: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for row in rows {
        let username = row.username.as_deref();
        *day_tweets.entry(row.local_date).or_default() += 1;
        if let Some(user) = username {
            all_users.insert(user);
            *user_tweets.entry(user).or_default() += 1;
        }
        for keyword in &row.keywords {
            let keyword = keyword.as_str();
            let total = per_keyword.entry(keyword).or_default();
            let day = daily.entry((keyword, row.local_date)).or_default();
            total.0 += 1;
            day.0 += 1;
            *hourly.entry((keyword, row.local_date, row.local_hour)).or_default() += 1;
            if let Some(user) = username {
                total.1.insert(user);
                day.1.insert(user);
                *keyword_user_tweets.entry(keyword).or_default().entry(user).or_default() += 1;
            }
        }
    }

    let keyword_daily = daily
        .iter()
        .map(|(&(keyword, date), (tweets, users))| {
            // RANGE BETWEEN 6 PRECEDING AND CURRENT ROW over the day number: the keyword's days in [date-6, date].
            let window_start = date - chrono::Days::new(6);
            let window: u64 = daily
                .range((keyword, window_start)..=(keyword, date))
                .map(|(_, (tweets, _))| tweets)
                .sum();
            let of_day = day_tweets.get(&date).copied().unwrap_or(1).max(1);
            KeywordDay {
                keyword: keyword.to_owned(),
                local_date: date,
                tweets: *tweets,
                authors: authors(users),
                tweets_7d_avg: window as f64 / 7.0,
                share_of_day: *tweets as f64 / of_day as f64,
                source: READ,
            }
        })
        .collect();

    Marts {
        total: Some(Total {
            tweets: rows.len() as u64,
            authors: authors(&all_users),
            first_day: day_tweets.keys().next().copied(),
            last_day: day_tweets.keys().next_back().copied(),
        }),
        per_keyword: per_keyword
            .iter()
            .map(|(keyword, (tweets, users))| KeywordTotal {
                keyword: (*keyword).to_owned(),
                tweets: *tweets,
                authors: authors(users),
            })
            .collect(),
        keyword_daily,
        keyword_hourly: hourly
            .into_iter()
            .map(|((keyword, local_date, local_hour), tweets)| KeywordHour {
                keyword: keyword.to_owned(),
                local_date,
                local_hour,
                tweets,
                source: READ,
            })
            .collect(),
        top_users: ranked("", &user_tweets),
        top_users_per_keyword: keyword_user_tweets
            .iter()
            .flat_map(|(keyword, users)| ranked(keyword, users))
            .collect(),
    }
}

/// `RANK() OVER (ORDER BY tweets DESC)`, ranks up to [`TOP`]: one more than the number of users with more tweets,
/// so ties share a rank and the next rank is skipped.
fn ranked(keyword: &str, tweets_by_user: &BTreeMap<&str, u64>) -> Vec<TopUser> {
    let mut users: Vec<(&str, u64)> = tweets_by_user.iter().map(|(u, t)| (*u, *t)).collect();
    users.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = Vec::new();
    let mut rank = 0u64;
    for (position, (username, tweets)) in users.iter().enumerate() {
        if position == 0 || users[position - 1].1 != *tweets {
            rank = position as u64 + 1;
        }
        if rank > TOP {
            break;
        }
        out.push(TopUser {
            keyword: keyword.to_owned(),
            username: (*username).to_owned(),
            tweets: *tweets,
            rank,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, date: &str, hour: u32, user: Option<&str>, keywords: &[&str]) -> CuratedTweet {
        CuratedTweet {
            id: id.to_string().into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            local_date: date.parse().expect("date"),
            local_hour: hour,
            username: user.map(Into::into),
            text: String::new(),
            text_clean: String::new(),
            lang: "id".into(),
            keywords: keywords.iter().map(|k| (*k).into()).collect(),
        }
    }

    #[test]
    fn marts_follow_the_warehouse_semantics() {
        let rows = vec![
            row(1, "2026-11-01", 9, Some("budi"), &["saham", "sukuk"]),
            row(2, "2026-11-01", 9, Some("budi"), &["saham"]),
            row(3, "2026-11-01", 10, None, &[]),
            row(4, "2026-11-08", 10, Some("sari"), &["saham"]),
        ];
        let marts = compute(&rows);
        let total = marts.total.expect("total");
        assert_eq!((total.tweets, total.authors), (4, 2));
        assert_eq!(
            marts.per_keyword[0],
            KeywordTotal {
                keyword: "saham".into(),
                tweets: 3,
                authors: 2
            }
        );
        let saham: Vec<&KeywordDay> = marts.keyword_daily.iter().filter(|d| d.keyword == "saham").collect();
        // Nov 1 is 7 days before Nov 8: outside its window.
        assert_eq!(saham[0].tweets_7d_avg, 2.0 / 7.0);
        assert_eq!(saham[1].tweets_7d_avg, 1.0 / 7.0);
        assert_eq!(saham[0].share_of_day, 2.0 / 3.0);
        assert_eq!(marts.top_users[0].username, "budi");
        assert_eq!(marts.top_users[1].rank, 2);
    }

    #[test]
    fn ties_share_a_rank_and_ranks_stop_at_ten() {
        let mut rows = Vec::new();
        for user in 0..12 {
            rows.push(row(user, "2026-11-01", 0, Some(&format!("u{user:02}")), &["saham"]));
        }
        rows.push(row(99, "2026-11-01", 0, Some("u00"), &["saham"]));
        let marts = compute(&rows);
        assert_eq!(marts.top_users[0].rank, 1);
        assert!(marts.top_users[1..].iter().all(|u| u.rank == 2));
        assert_eq!(marts.top_users.len(), 12);
    }
}
