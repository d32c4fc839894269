//! The daily transform's semantics: which raw tweets of a day count, how their text is cleaned and which keywords
//! they mention. Pure: no I/O, no clock.
//!
//! Every engine (this native one, PySpark on Dataproc later) must implement exactly these rules; the
//! "Transform semantics" section of `ARCHITECTURE.md` states them for the other engines.
//!
//! ```text
//!  line ─parse─▶ tweet ─▶ local day == D? ─▶ language? ─▶ not a retweet? ─▶ one copy per id ─▶ clean ─▶ classify
//!   └▶ rejected           └▶ other_day       └▶ other_language └▶ retweets    └▶ duplicates
//! ```

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use cilvest_crds::{CilvestPipelineSpec, MatchMode, query::canonical_language};
use serde::{Deserialize, Serialize};

use crate::tweet::{self, Tweet};

/// How many rejected lines a day remembers verbatim (as error messages) for the log.
const REJECTION_SAMPLES: usize = 5;

/// One curated row: a kept tweet with its cleaned text and keywords. The column order is the curated Parquet's and
/// the warehouse table's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CuratedTweet {
    /// The tweet id, a decimal snowflake.
    pub id: String,
    /// When the tweet was posted, UTC.
    pub created_at: DateTime<Utc>,
    /// `created_at`'s day in the pipeline's time zone: the `dt=` of the raw and curated objects.
    pub local_date: NaiveDate,
    /// `created_at`'s hour (0-23) in the pipeline's time zone.
    pub local_hour: u32,
    /// The author's username, when the record carried one.
    pub username: Option<String>,
    /// The text exactly as X returned it.
    pub text: String,
    /// The text after [`clean`].
    pub text_clean: String,
    /// The tweet's language as its canonical code ([`canonical_language`]: `in` becomes `id`).
    pub lang: String,
    /// The names of the keywords whose terms the cleaned text mentions, in the spec's keyword order; may be empty.
    pub keywords: Vec<String>,
}

/// What happened to the lines of one day. `tweets_in = other_day + other_language + retweets + duplicates + kept`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Lines that parsed as tweets.
    pub tweets_in: u64,
    /// Non-blank lines that are not tweet envelopes (bad JSON, missing fields, bad id).
    pub rejected: u64,
    /// Tweets whose local day is not the day being processed.
    pub other_day: u64,
    /// Tweets in another (or no) language.
    pub other_language: u64,
    /// Retweets, when the spec drops them.
    pub retweets: u64,
    /// Further copies of a tweet id already kept.
    pub duplicates: u64,
    /// Distinct tweets kept.
    pub kept: u64,
    /// Kept tweets that mention no keyword (X matched something cleaning removed, such as a URL).
    pub unmatched: u64,
    /// Kept tweets per keyword name; every keyword of the spec appears, also with 0.
    pub per_keyword: BTreeMap<String, u64>,
}

/// The rules of one pipeline: keywords with their cleaned terms, matching mode, language and retweet policy.
#[derive(Clone, Debug)]
pub struct Rules {
    keywords: Vec<Keyword>,
    mode: MatchMode,
    language: String,
    drop_retweets: bool,
    time_zone: Tz,
}

#[derive(Clone, Debug)]
struct Keyword {
    name: String,
    /// Terms after [`clean`]; a term that cleans to nothing is left out because it could match everything.
    terms: Vec<String>,
}

impl Rules {
    /// The rules of `spec`, with local days and hours in `time_zone`.
    pub fn new(spec: &CilvestPipelineSpec, time_zone: Tz) -> Self {
        let keywords = spec
            .keywords
            .iter()
            .map(|keyword| Keyword {
                name: keyword.name.clone(),
                terms: keyword
                    .terms
                    .iter()
                    .map(|term| clean(term))
                    .filter(|term| !term.is_empty())
                    .collect(),
            })
            .collect();
        Self {
            keywords,
            mode: spec.matching.mode,
            language: canonical_language(&spec.language),
            drop_retweets: spec.drop_retweets,
            time_zone,
        }
    }

    /// The keyword names whose terms `text_clean` mentions, in the spec's order.
    pub fn classify(&self, text_clean: &str) -> Vec<String> {
        self.keywords
            .iter()
            .filter(|keyword| keyword.terms.iter().any(|term| mentions(self.mode, text_clean, term)))
            .map(|keyword| keyword.name.clone())
            .collect()
    }

    /// Whether a tweet's `lang` is the pipeline's language; a tweet without one is not.
    pub fn keeps_language(&self, lang: Option<&str>) -> bool {
        lang.is_some_and(|lang| canonical_language(lang) == self.language)
    }

    /// The names of all keywords, in the spec's order.
    pub fn keyword_names(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|keyword| keyword.name.as_str())
    }

    /// The pipeline's time zone.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The curated row of a tweet that passed the filters.
    fn curate(&self, tweet: Tweet, username: Option<String>) -> CuratedTweet {
        let local = tweet.created_at.with_timezone(&self.time_zone);
        let text_clean = clean(&tweet.text);
        CuratedTweet {
            keywords: self.classify(&text_clean),
            lang: tweet.lang.as_deref().map(canonical_language).unwrap_or_default(),
            local_date: local.date_naive(),
            local_hour: local.hour(),
            id: tweet.id,
            created_at: tweet.created_at,
            username,
            text: tweet.text,
            text_clean,
        }
    }
}

/// A retweet: it references a tweet of type `retweeted`, or its text starts with `RT @` (old clients and
/// copy-paste retweets carry no reference).
pub fn is_retweet(tweet: &Tweet) -> bool {
    tweet.referenced_tweets.iter().any(|r| r.kind == "retweeted") || tweet.text.starts_with("RT @")
}

/// Whether the cleaned `term` occurs in the cleaned `text`: anywhere (`substring`, so `saham` also counts
/// `sahamnya`), or only as whole words (`wholeWord`: bounded by the start, the end or a space). Both inputs must
/// come from [`clean`], so multi-word terms such as `reksa dana` meet single spaces.
pub fn mentions(mode: MatchMode, text: &str, term: &str) -> bool {
    if term.is_empty() {
        return false;
    }
    match mode {
        MatchMode::Substring => text.contains(term),
        MatchMode::WholeWord => {
            // Every occurrence, overlapping ones too: in "ba a a" the term "a a" is a whole word only at the second.
            let bytes = text.as_bytes();
            let mut from = 0;
            while let Some(found) = text.get(from..).and_then(|rest| rest.find(term)) {
                let start = from + found;
                let end = start + term.len();
                if (start == 0 || bytes[start - 1] == b' ') && (end == bytes.len() || bytes[end] == b' ') {
                    return true;
                }
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
            false
        }
    }
}

/// Clean a tweet's text (or a term) for matching and analysis, in this order:
///
/// 1. lowercase (Unicode full lowercase of the whole string);
/// 2. replace every URL, `http://`, `https://` or `www.` up to the next whitespace, with a space;
/// 3. replace the HTML entities X escapes in tweet text (`&amp;`, `&lt;`, `&gt;`) with a space;
/// 4. map every character: letters and numbers (Unicode Alphabetic or Numeric) stay; invisible characters (control
///    characters other than whitespace, soft hyphen U+00AD, U+200B-U+200D, word joiner U+2060, BOM U+FEFF) are
///    deleted so they never split a word; everything else (whitespace including line breaks, punctuation, `@`, `#`,
///    `_`, symbols, emoji) becomes a space, so words on either side stay apart;
/// 5. collapse runs of spaces into one and trim both ends.
///
/// The result holds only lowercase letters, numbers and single spaces, so cleaning it again changes nothing.
pub fn clean(text: &str) -> String {
    let lower = text.to_lowercase();
    let without_urls = replace_urls(&lower);
    let without_entities = without_urls
        .replace("&amp;", " ")
        .replace("&lt;", " ")
        .replace("&gt;", " ");
    let mut out = String::with_capacity(without_entities.len());
    let mut gap = false;
    for c in without_entities.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else if !is_invisible(c) {
            gap = true;
        }
    }
    out
}

/// Characters that are deleted rather than turned into a space: a zero-width joiner inside a word must not split it.
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace()) || matches!(c, '\u{AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// The regular expression `(https?://|www\.)\S*` replaced by a space, on already lowercased text.
fn replace_urls(text: &str) -> String {
    const STARTS: [&str; 3] = ["http://", "https://", "www."];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = STARTS.iter().filter_map(|prefix| rest.find(prefix)).min() {
        out.push_str(&rest[..start]);
        out.push(' ');
        let url = &rest[start..];
        rest = &url[url.find(char::is_whitespace).unwrap_or(url.len())..];
    }
    out.push_str(rest);
    out
}

/// One day of raw lines going through the transform: feed every line of every `raw/dt=D/` object, then
/// [`finish`](Day::finish). The result does not depend on the order of the lines.
#[derive(Debug)]
pub struct Day {
    rules: Rules,
    date: NaiveDate,
    kept: HashMap<String, CuratedTweet>,
    counts: Counts,
    rejections: Vec<String>,
}

impl Day {
    /// Start day `date` (local, in the rules' time zone).
    pub fn new(rules: Rules, date: NaiveDate) -> Self {
        Self {
            rules,
            date,
            kept: HashMap::new(),
            counts: Counts::default(),
            rejections: Vec::new(),
        }
    }

    /// Take one NDJSON line. Blank lines are ignored; a line that is not a tweet envelope is counted as rejected and
    /// never stops the day.
    pub fn push_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let parsed = match tweet::parse(line) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.counts.rejected += 1;
                if self.rejections.len() < REJECTION_SAMPLES {
                    self.rejections.push(err.to_string());
                }
                return;
            }
        };
        self.counts.tweets_in += 1;
        let tweet = parsed.tweet;
        if tweet.created_at.with_timezone(&self.rules.time_zone).date_naive() != self.date {
            self.counts.other_day += 1;
        } else if !self.rules.keeps_language(tweet.lang.as_deref()) {
            self.counts.other_language += 1;
        } else if self.rules.drop_retweets && is_retweet(&tweet) {
            self.counts.retweets += 1;
        } else {
            self.keep(self.rules.curate(tweet, parsed.author_username));
        }
    }

    /// Keep one copy per id. Copies of a tweet differ at most in the username (the author renamed between fetches);
    /// keeping the one with the smallest (username, text), no username first, makes every engine pick the same copy
    /// whatever order it reads the lines in.
    fn keep(&mut self, row: CuratedTweet) {
        match self.kept.get_mut(&row.id) {
            Some(existing) => {
                self.counts.duplicates += 1;
                if (&row.username, &row.text) < (&existing.username, &existing.text) {
                    *existing = row;
                }
            }
            None => {
                self.kept.insert(row.id.clone(), row);
            }
        }
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
        self.kept.reserve(other.kept.len());
        for row in other.kept.into_values() {
            self.keep(row);
        }
    }

    /// The first few rejected lines' errors, for the log.
    pub fn rejections(&self) -> &[String] {
        &self.rejections
    }

    /// The kept rows ordered by (created_at, id as a number), and the day's counts.
    pub fn finish(self) -> (Vec<CuratedTweet>, Counts) {
        let mut counts = self.counts;
        counts.per_keyword = self.rules.keyword_names().map(|name| (name.to_owned(), 0)).collect();
        let mut rows: Vec<CuratedTweet> = self.kept.into_values().collect();
        // The key once per row (an id is parsed, and a row is large): sorting the rows themselves by a key computed
        // per comparison was a third of a 1M-tweet run.
        rows.sort_by_cached_key(|row| (row.created_at, tweet::id_number(&row.id)));
        for row in &rows {
            if row.keywords.is_empty() {
                counts.unmatched += 1;
            }
            for keyword in &row.keywords {
                *counts.per_keyword.entry(keyword.clone()).or_default() += 1;
            }
        }
        counts.kept = rows.len() as u64;
        (rows, counts)
    }
}
