//! Property tests of the pure input handling: the text cleaner, the keyword matcher and the tweet envelope parser,
//! on arbitrary Unicode and bytes. `scripts/fuzz` explores the same functions with coverage guidance; these run
//! with every `cargo test`.

use cilvest_crds::MatchMode;
use cilvest_workers::{
    transform::{clean, mentions},
    tweet,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Pieces that hit the cleaner's special cases, mixed with arbitrary characters: URLs, X's HTML entities,
/// invisible characters, line breaks, the Greek sigma whose lowercase depends on its neighbours, letters whose
/// lowercase is longer than they are, combining marks and emoji.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => "[a-zA-Z0-9]{1,8}",
        1 => prop::sample::select(vec![
            " ", "  ", "\n", "\r\n", "\t", "\u{85}", "\u{A0}", "\u{3000}", "#", "@", "_", ".", ":", "/", "&", ";",
            "http://", "https://", "www.", "https://t.co/x", "&amp;", "&lt;", "&gt;", "&am", "p;", "\u{AD}",
            "\u{200B}", "\u{200C}", "\u{200D}", "\u{2060}", "\u{FEFF}", "\u{7}", "\u{0}", "Σ", "ΑΣ", "σ", "ς", "İ",
            "ẞ", "ǅ", "\u{301}", "\u{307}", "ﬁ", "🚀", "👩\u{200D}💻", "RT @", "Reksa", "dana", "SAHAM", "٣", "Ⅻ",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn is_clean(text: &str) -> bool {
    !text.starts_with(' ')
        && !text.ends_with(' ')
        && !text.contains("  ")
        && text.chars().all(|c| c == ' ' || c.is_alphanumeric())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn cleaning_never_panics_and_is_idempotent_on_arbitrary_unicode(text in any::<String>()) {
        let once = clean(&text);
        prop_assert!(is_clean(&once), "{once:?}");
        prop_assert_eq!(clean(&once), once);
    }

    #[test]
    fn cleaning_is_idempotent_on_text_full_of_special_cases(text in tricky_text()) {
        let once = clean(&text);
        prop_assert!(is_clean(&once), "{once:?}");
        prop_assert_eq!(clean(&once), once);
    }

    /// Cleaning works word by word: nothing it does (lowercasing, URLs, entities) reaches across a space.
    #[test]
    fn cleaning_two_texts_joined_by_a_space_cleans_each(left in tricky_text(), right in tricky_text()) {
        let parts: Vec<String> = [clean(&left), clean(&right)].into_iter().filter(|p| !p.is_empty()).collect();
        prop_assert_eq!(clean(&format!("{left} {right}")), parts.join(" "));
    }

    #[test]
    fn matching_never_panics_on_arbitrary_text_and_terms(text in tricky_text(), term in tricky_text()) {
        for (text, term) in [(text.clone(), term.clone()), (clean(&text), clean(&term))] {
            let substring = mentions(MatchMode::Substring, &text, &term);
            let whole_word = mentions(MatchMode::WholeWord, &text, &term);
            prop_assert!(!whole_word || substring, "a whole-word match is also a substring match");
            prop_assert_eq!(substring, !term.is_empty() && text.contains(&term));
        }
    }

    /// A term put between any two texts, with spaces around it as a tweet's words are, is found in both modes.
    #[test]
    fn a_term_is_found_in_a_text_built_around_it(before in tricky_text(), term in tricky_text(), after in tricky_text()) {
        let term_clean = clean(&term);
        prop_assume!(!term_clean.is_empty());
        let text_clean = clean(&format!("{before} {term} {after}"));
        prop_assert!(mentions(MatchMode::Substring, &text_clean, &term_clean), "{term_clean:?} in {text_clean:?}");
        prop_assert!(mentions(MatchMode::WholeWord, &text_clean, &term_clean), "{term_clean:?} in {text_clean:?}");
    }

    #[test]
    fn the_envelope_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(parsed) = tweet::parse(&bytes) {
            prop_assert!(tweet::id_number(&parsed.tweet.id).is_some());
        }
    }

    /// Envelopes and bare tweets whose fields have any JSON type: a tweet or an error, never a panic, and only a
    /// decimal id of at most 20 digits is accepted.
    #[test]
    fn the_envelope_parser_never_panics_on_wrong_types(
        id in json_scalar(), text in json_scalar(), created_at in json_scalar(), lang in json_scalar(),
        username in json_scalar(), wrapped in any::<bool>(),
    ) {
        let tweet_value = json!({"id": id, "text": text, "created_at": created_at, "lang": lang});
        let record = if wrapped {
            json!({"tweet": tweet_value, "author_username": username})
        } else {
            let mut bare = tweet_value;
            bare["author_username"] = username;
            bare
        };
        if let Ok(parsed) = tweet::parse(record.to_string().as_bytes()) {
            prop_assert!(!parsed.tweet.id.is_empty() && parsed.tweet.id.len() <= 20);
            prop_assert!(parsed.tweet.id.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    /// Any text survives the envelope unchanged, whatever it holds.
    #[test]
    fn well_formed_envelopes_parse_with_their_text_intact(id in "[0-9]{1,20}", text in any::<String>()) {
        let record = json!({"tweet": {"id": id, "text": text, "created_at": "2026-11-01T03:04:05.000Z"}});
        let parsed = tweet::parse(record.to_string().as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.tweet.id, id);
        prop_assert_eq!(parsed.tweet.text, text);
    }
}

/// A JSON value of any scalar type, a plausible one most of the time.
fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{0,25}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(json!("2026-11-01T03:04:05Z")),
        Just(json!([1, "2"])),
        Just(json!({"nested": true})),
    ]
}
