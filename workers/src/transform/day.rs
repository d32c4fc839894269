//! One day of raw lines going through the transform's rules, one line at a time, and days fed in parts merged.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::{Counts, CuratedTweet, Rules};
use crate::tweet::{self, View};

/// How many rejected lines a day remembers verbatim (as error messages) for the log.
const REJECTION_SAMPLES: usize = 5;

/// One day of raw lines going through the transform: feed every line of every `raw/dt=D/` object, then
/// [`finish`](Day::finish). The result does not depend on the order of the lines.
#[derive(Debug)]
pub struct Day {
    rules: Rules,
    date: NaiveDate,
    /// The kept rows, one per tweet id, in the order their ids were first seen.
    rows: Vec<CuratedTweet>,
    /// Where each kept id's row is in `rows`.
    index: HashMap<IdKey, usize, foldhash::fast::RandomState>,
    counts: Counts,
    rejections: Vec<String>,
}

/// A tweet id as a number that tells every id [`tweet::parse`] accepts apart (at most 20 decimal digits, so leading
/// zeros matter): its value times 32 plus its length. Hashing it is cheaper than hashing the string.
type IdKey = u128;

/// A further copy of a kept tweet: whether it replaces the kept row (at that index) or not.
enum Duplicate {
    Wins(usize),
    Loses,
}

fn id_key(id: &str) -> IdKey {
    let value = id.bytes().fold(0u128, |n, b| {
        n.wrapping_mul(10).wrapping_add(u128::from(b.wrapping_sub(b'0')))
    });
    value.wrapping_mul(32).wrapping_add(id.len() as u128)
}

impl Day {
    /// Start day `date` (local, in the rules' time zone).
    pub fn new(rules: Rules, date: NaiveDate) -> Self {
        Self {
            rules,
            date,
            rows: Vec::new(),
            index: HashMap::default(),
            counts: Counts::default(),
            rejections: Vec::new(),
        }
    }

    /// Take one NDJSON line. Blank lines are ignored; a line that is not a tweet envelope is counted as rejected and
    /// never stops the day. Only a tweet that is kept is copied out of the line.
    pub fn push_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let view = match tweet::parse_view(line) {
            Ok(view) => view,
            Err(err) => {
                self.counts.rejected += 1;
                if self.rejections.len() < REJECTION_SAMPLES {
                    self.rejections.push(err.to_string());
                }
                return;
            }
        };
        self.counts.tweets_in += 1;
        if view.created_at.with_timezone(&self.rules.time_zone).date_naive() != self.date {
            self.counts.other_day += 1;
        } else if !self.rules.keeps_language(view.lang.as_deref()) {
            self.counts.other_language += 1;
        } else if self.rules.drop_retweets && super::retweet(view.references_retweet, &view.text) {
            self.counts.retweets += 1;
        } else {
            self.keep_view(view);
        }
    }

    /// Keep one copy per id. Copies of a tweet differ at most in the username (the author renamed between fetches);
    /// keeping the one with the smallest (username, text), no username first, makes every engine pick the same copy
    /// whatever order it reads the lines in. A copy that loses is never cleaned nor classified.
    fn keep_view(&mut self, view: View<'_>) {
        let key = id_key(&view.id);
        let candidate = (view.author_username.as_deref(), view.text.as_ref());
        match self.copy_of(key, candidate) {
            Some(Duplicate::Wins(at)) => self.replace(at, self.rules.curate(view)),
            Some(Duplicate::Loses) => {}
            None => self.insert(key, self.rules.curate(view)),
        }
    }

    /// [`keep_view`](Self::keep_view) for a row already curated by another day.
    fn keep(&mut self, row: CuratedTweet) {
        let key = id_key(&row.id);
        match self.copy_of(key, (row.username.as_deref(), &row.text)) {
            Some(Duplicate::Wins(at)) => self.replace(at, row),
            Some(Duplicate::Loses) => {}
            None => self.insert(key, row),
        }
    }

    /// Whether a tweet with `key` and (username, text) is a further copy of a kept one (counted as a duplicate),
    /// and whether it replaces it; `None` when its id is new.
    fn copy_of(&mut self, key: IdKey, candidate: (Option<&str>, &str)) -> Option<Duplicate> {
        let at = *self.index.get(&key)?;
        self.counts.duplicates += 1;
        let existing = self.rows.get(at)?;
        let wins = candidate < (existing.username.as_deref(), existing.text.as_str());
        Some(if wins { Duplicate::Wins(at) } else { Duplicate::Loses })
    }

    fn replace(&mut self, at: usize, row: CuratedTweet) {
        if let Some(existing) = self.rows.get_mut(at) {
            *existing = row;
        }
    }

    fn insert(&mut self, key: IdKey, row: CuratedTweet) {
        self.index.insert(key, self.rows.len());
        self.rows.push(row);
    }

    /// Fold `other`, a day fed with other lines of the same date and rules, into this one: the result is the same as
    /// feeding all the lines here (duplicates across the two are counted, and the same copy is kept).
    pub fn merge(&mut self, other: Day) {
        let Counts {
            tweets_in,
            rejected,
            other_day,
            other_language,
            retweets,
            duplicates,
            ..
        } = other.counts;
        self.counts.tweets_in += tweets_in;
        self.counts.rejected += rejected;
        self.counts.other_day += other_day;
        self.counts.other_language += other_language;
        self.counts.retweets += retweets;
        self.counts.duplicates += duplicates;
        let room = REJECTION_SAMPLES.saturating_sub(self.rejections.len());
        self.rejections.extend(other.rejections.into_iter().take(room));
        self.index.reserve(other.rows.len());
        // Grow by a quarter rather than double: the rows are most of a big day's memory, and a doubled vector is up
        // to half empty (a large block grows in place or by remapping, not by copying).
        if self.rows.capacity() - self.rows.len() < other.rows.len() {
            self.rows.reserve_exact(other.rows.len().max(self.rows.len() / 4));
        }
        for row in other.rows {
            self.keep(row);
        }
    }

    /// The first few rejected lines' errors, for the log.
    pub fn rejections(&self) -> &[String] {
        &self.rejections
    }

    /// The kept rows ordered by (created_at, id as a number), and the day's counts.
    pub fn finish(self) -> (Vec<CuratedTweet>, Counts) {
        let Self {
            rules,
            mut rows,
            index,
            mut counts,
            ..
        } = self;
        drop(index);
        counts.per_keyword = rules.keyword_names().map(|name| (name.to_owned(), 0)).collect();
        // The key once per row (an id is parsed, and a row is large): sorting the rows themselves by a key computed
        // per comparison was a third of a 1M-tweet run.
        rows.sort_by_cached_key(|row| (row.created_at, tweet::id_number(&row.id)));
        for row in &rows {
            if row.keywords.is_empty() {
                counts.unmatched += 1;
            }
            for keyword in &row.keywords {
                match counts.per_keyword.get_mut(keyword.as_str()) {
                    Some(count) => *count += 1,
                    None => {
                        counts.per_keyword.insert(keyword.to_string(), 1);
                    }
                }
            }
        }
        counts.kept = rows.len() as u64;
        (rows, counts)
    }
}
