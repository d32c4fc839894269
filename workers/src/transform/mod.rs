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

mod day;
#[cfg(test)]
mod tests;
mod text;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use cilvest_crds::{CilvestPipelineSpec, MatchMode, query::canonical_language, spec::INDONESIAN};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use self::text::Term;
pub use self::{
    day::Day,
    text::{clean, mentions},
};
use crate::tweet::{Tweet, View};

/// One curated row: a kept tweet with its cleaned text and keywords. The column order is the curated Parquet's and
/// the warehouse table's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CuratedTweet {
    /// The tweet id, a decimal snowflake.
    pub id: CompactString,
    /// When the tweet was posted, UTC.
    pub created_at: DateTime<Utc>,
    /// `created_at`'s day in the pipeline's time zone: the `dt=` of the raw and curated objects.
    pub local_date: NaiveDate,
    /// `created_at`'s hour (0-23) in the pipeline's time zone.
    pub local_hour: u32,
    /// The author's username, when the record carried one.
    pub username: Option<CompactString>,
    /// The text exactly as X returned it.
    pub text: String,
    /// The text after [`clean`].
    pub text_clean: String,
    /// The tweet's language as its canonical code ([`canonical_language`]: `in` becomes `id`).
    pub lang: CompactString,
    /// The names of the keywords whose terms the cleaned text mentions, in the spec's keyword order; may be empty.
    pub keywords: Vec<CompactString>,
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
    name: CompactString,
    /// Terms after [`clean`]; a term that cleans to nothing is left out because it could match everything.
    terms: Vec<Term>,
}

impl Rules {
    /// The rules of `spec`, with local days and hours in `time_zone`.
    pub fn new(spec: &CilvestPipelineSpec, time_zone: Tz) -> Self {
        let keywords = spec
            .keywords
            .iter()
            .map(|keyword| Keyword {
                name: CompactString::new(&keyword.name),
                terms: keyword
                    .terms
                    .iter()
                    .filter_map(|term| Term::new(&clean(term)))
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
    pub fn classify(&self, text_clean: &str) -> Vec<CompactString> {
        let mut names = Vec::new();
        for keyword in &self.keywords {
            if keyword.terms.iter().any(|term| term.in_text(self.mode, text_clean)) {
                // One place at a time (a collected vector starts at four): a curated row usually has one keyword
                // and lives all day.
                names.reserve_exact(1);
                names.push(keyword.name.clone());
            }
        }
        names
    }

    /// Whether a tweet's `lang` is the pipeline's language; a tweet without one is not. The same as comparing
    /// [`canonical_language`] of `lang` with the pipeline's (already canonical, so ASCII-lowercase) language, without
    /// an allocation per tweet.
    pub fn keeps_language(&self, lang: Option<&str>) -> bool {
        lang.is_some_and(|lang| {
            if lang.eq_ignore_ascii_case("in") {
                self.language == INDONESIAN
            } else {
                lang.eq_ignore_ascii_case(&self.language)
            }
        })
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
    fn curate(&self, tweet: View<'_>) -> CuratedTweet {
        let local = tweet.created_at.with_timezone(&self.time_zone);
        let text_clean = clean(&tweet.text);
        CuratedTweet {
            keywords: self.classify(&text_clean),
            // What `keeps_language` let through: the pipeline's language.
            lang: CompactString::new(&self.language),
            local_date: local.date_naive(),
            local_hour: local.hour(),
            id: CompactString::new(&tweet.id),
            created_at: tweet.created_at,
            username: tweet.author_username.as_deref().map(CompactString::new),
            text: tweet.text.into_owned(),
            text_clean,
        }
    }
}

/// A retweet: it references a tweet of type `retweeted`, or its text starts with `RT @` (old clients and
/// copy-paste retweets carry no reference).
pub fn is_retweet(tweet: &Tweet) -> bool {
    retweet(tweet.references_retweet(), &tweet.text)
}

/// [`is_retweet`] from whether the tweet references a retweeted one and from its (whole) text.
fn retweet(references_retweet: bool, text: &str) -> bool {
    references_retweet || text.starts_with("RT @")
}
