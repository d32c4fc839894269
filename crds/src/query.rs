//! The X search queries a spec makes: the recent-search query of the keywords whose posts are read, and the counts
//! query of one keyword, both within X's limits.

use std::{collections::HashSet, time::Duration};

use crate::spec::{CilvestPipelineSpec, INDONESIAN, Keyword};

/// X recent search rejects queries longer than this many characters (self-serve access levels).
pub const X_QUERY_LIMIT: usize = 512;

/// Recent search only reaches this far back.
pub const X_RECENT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The query is longer than X accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the X search query built from the keywords' terms is {length} characters, over X's limit of {X_QUERY_LIMIT}: use fewer or shorter terms"
)]
pub struct QueryTooLong {
    pub length: usize,
}

/// The X recent-search query for the terms of every keyword whose posts are read (mode `posts` or `both`), e.g.
/// `(saham OR reksadana OR "reksa dana" OR sukuk) lang:id -is:retweet`. Repeated terms appear once.
pub fn x_query(spec: &CilvestPipelineSpec) -> Result<String, QueryTooLong> {
    let query = render_query_for(spec, spec.keywords.iter().filter(|k| k.mode.reads_posts()), true);
    let length = query.chars().count();
    if length > X_QUERY_LIMIT {
        Err(QueryTooLong { length })
    } else {
        Ok(query)
    }
}

/// The X counts query of one keyword: its terms with the pipeline's language and retweet operators, so that
/// a counted volume means the same as a read one.
pub fn x_keyword_query(spec: &CilvestPipelineSpec, keyword: &Keyword) -> Result<String, QueryTooLong> {
    let query = render_query_for(spec, std::iter::once(keyword), true);
    let length = query.chars().count();
    if length > X_QUERY_LIMIT {
        Err(QueryTooLong { length })
    } else {
        Ok(query)
    }
}

/// Without `dedup` this is the worst case the CRD's CEL rule measures, so both reject the same specs.
pub(crate) fn render_query(spec: &CilvestPipelineSpec, dedup: bool) -> String {
    render_query_for(spec, spec.keywords.iter(), dedup)
}

fn render_query_for<'a>(
    spec: &CilvestPipelineSpec,
    keywords: impl Iterator<Item = &'a Keyword>,
    dedup: bool,
) -> String {
    let mut seen = HashSet::new();
    let terms: Vec<String> = keywords
        .flat_map(|k| k.terms.iter())
        .filter(|term| !dedup || seen.insert(term.to_lowercase()))
        .map(|term| {
            if term.contains(' ') {
                format!("\"{term}\"")
            } else {
                term.clone()
            }
        })
        .collect();
    let mut query = format!("({}) lang:{}", terms.join(" OR "), canonical_language(&spec.language));
    if spec.drop_retweets {
        query.push_str(" -is:retweet");
    }
    query
}

/// The language code X's query operator accepts: the legacy `in` becomes `id`.
pub fn canonical_language(code: &str) -> String {
    let code = code.to_ascii_lowercase();
    if code == "in" { INDONESIAN.to_owned() } else { code }
}
