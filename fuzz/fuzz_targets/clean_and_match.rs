//! Arbitrary UTF-8 as tweet text and as a keyword term: cleaning never panics, is idempotent and leaves only
//! lowercase letters, numbers and single spaces; matching never panics, and a cleaned term is found in both modes in
//! a text built around it.
#![no_main]

use cilvest_crds::MatchMode;
use cilvest_fuzz::transform::{clean, mentions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the term, the rest the text.
    let (term, text) = input.split_once('\n').unwrap_or((input, ""));
    let text_clean = clean(text);
    assert_eq!(clean(&text_clean), text_clean, "clean is not idempotent on {text:?}");
    assert!(!text_clean.starts_with(' ') && !text_clean.ends_with(' ') && !text_clean.contains("  "));
    let term_clean = clean(term);
    for mode in [MatchMode::Substring, MatchMode::WholeWord] {
        mentions(mode, &text_clean, &term_clean);
        mentions(mode, text, term);
        if !term_clean.is_empty() {
            let built = clean(&format!("{text} {term} {text}"));
            assert!(
                mentions(mode, &built, &term_clean),
                "{mode:?}: {term_clean:?} not found in {built:?}"
            );
        }
    }
});
