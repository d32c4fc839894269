//! The pages the fake answers: recent search (newest first, `next_token`, `since_id`/`start_time`/`until_id`,
//! `includes.users`) and recent counts buckets.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use super::tweets::ParsedQuery;
use super::{Cursor, FakeState, SNOWFLAKE_EPOCH_MS, Search, StoredTweet, floor_to};

pub(super) fn search_page(
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

/// Buckets per counts page before a `next_token`.
const COUNTS_PAGE: usize = 168;

pub(super) fn counts_page(
    state: &mut FakeState,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, String> {
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
