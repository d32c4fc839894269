//! Text rules: how a tweet's text (or a keyword's term) is cleaned, and when a cleaned term occurs in a cleaned text.

use std::borrow::Cow;

use cilvest_crds::MatchMode;
use memchr::memmem::Finder;

/// A cleaned, non-empty keyword term, with its searcher built once rather than once per tweet.
#[derive(Clone, Debug)]
pub(super) struct Term(Finder<'static>);

impl Term {
    /// The term of `cleaned`, or `None` when it cleaned to nothing (it could match everything).
    pub(super) fn new(cleaned: &str) -> Option<Self> {
        (!cleaned.is_empty()).then(|| Self(Finder::new(cleaned).into_owned()))
    }

    /// [`mentions`] of this term.
    pub(super) fn in_text(&self, mode: MatchMode, text: &str) -> bool {
        occurs(mode, text, &self.0)
    }
}

/// Whether the cleaned `term` occurs in the cleaned `text`: anywhere (`substring`, so `saham` also counts
/// `sahamnya`), or only as whole words (`wholeWord`: bounded by the start, the end or a space). Both inputs must
/// come from [`clean`], so multi-word terms such as `reksa dana` meet single spaces.
pub fn mentions(mode: MatchMode, text: &str, term: &str) -> bool {
    Term::new(term).is_some_and(|term| term.in_text(mode, text))
}

fn occurs(mode: MatchMode, text: &str, term: &Finder<'_>) -> bool {
    let bytes = text.as_bytes();
    match mode {
        MatchMode::Substring => term.find(bytes).is_some(),
        MatchMode::WholeWord => {
            // Every occurrence, overlapping ones too: in "ba a a" the term "a a" is a whole word only at the second.
            // A match of a UTF-8 term starts on a character boundary of the UTF-8 text.
            let len = term.needle().len();
            let mut from = 0;
            while let Some(found) = bytes.get(from..).and_then(|rest| term.find(rest)) {
                let start = from + found;
                let end = start + len;
                let before = start.checked_sub(1).and_then(|i| bytes.get(i));
                if before.is_none_or(|&b| b == b' ') && bytes.get(end).is_none_or(|&b| b == b' ') {
                    return true;
                }
                from = start
                    + text
                        .get(start..)
                        .and_then(|rest| rest.chars().next())
                        .map_or(1, char::len_utf8);
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
    let without_entities = replace_entities(&without_urls);
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
    // Sized for the text before cleaning; a kept row holds this all day.
    out.shrink_to_fit();
    out
}

/// Characters that are deleted rather than turned into a space: a zero-width joiner inside a word must not split it.
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace()) || matches!(c, '\u{AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// The regular expression `(https?://|www\.)\S*` replaced by a space, on already lowercased text (borrowed when the
/// text has no URL).
fn replace_urls(text: &str) -> Cow<'_, str> {
    const STARTS: [&str; 3] = ["http://", "https://", "www."];
    if !text.contains("http") && !text.contains("www.") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = STARTS.iter().filter_map(|prefix| rest.find(prefix)).min() {
        out.push_str(&rest[..start]);
        out.push(' ');
        let url = &rest[start..];
        rest = &url[url.find(char::is_whitespace).unwrap_or(url.len())..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `&amp;`, `&lt;` and `&gt;` replaced by a space, one after the other (borrowed when the text has no `&`).
fn replace_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace("&amp;", " ").replace("&lt;", " ").replace("&gt;", " "))
}
