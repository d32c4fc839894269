//! Unit tests of `transform`.

use super::*;
use cilvest_crds::{Keyword, Matching};
use serde_json::json;

fn spec(mode: MatchMode) -> CilvestPipelineSpec {
    serde_json::from_value(json!({
        "keywords": [
            {"name": "saham", "terms": ["saham", "#saham"]},
            {"name": "reksadana", "terms": ["reksadana", "reksa dana"]},
            {"name": "sukuk", "terms": ["Sukuk"]},
        ],
        "matching": {"mode": if mode == MatchMode::WholeWord { "wholeWord" } else { "substring" }},
        "language": "in",
        "targets": {"lake": {"uri": "gs://lake"}, "bigquery": {"project": "cilvest-test", "dataset": "d"}},
    }))
    .expect("spec")
}

fn rules(mode: MatchMode) -> Rules {
    Rules::new(&spec(mode), chrono_tz::Asia::Jakarta)
}

fn line(id: &str, text: &str, created_at: &str, lang: &str, extra: serde_json::Value) -> Vec<u8> {
    let mut tweet = json!({"id": id, "text": text, "created_at": created_at, "lang": lang});
    if let (Some(tweet), Some(extra)) = (tweet.as_object_mut(), extra.as_object()) {
        tweet.extend(extra.clone());
    }
    serde_json::to_vec(&json!({"tweet": tweet, "author_username": "budi"})).expect("line")
}

#[test]
fn cleaning_removes_urls_emoji_and_punctuation() {
    let cases = [
        ("Beli #SAHAM @budi_santoso!!", "beli saham budi santoso"),
        ("cek https://t.co/AbC123 dan www.idx.co.id/saham ya", "cek dan ya"),
        ("lihat:https://t.co/x,sekarang", "lihat"),
        ("saham 🚀🚀 naik📈terus", "saham naik terus"),
        ("reksa\u{200D}dana sa\u{AD}ham bel\u{7}i", "reksadana saham beli"),
        ("harga &amp; yield &lt;5% &gt;3%", "harga yield 5 3"),
        ("  RT:  sukuk   ritel...  ", "rt sukuk ritel"),
        ("ÉMISSION Obligasi", "émission obligasi"),
        ("Ünïcödé 株式 ٣", "ünïcödé 株式 ٣"),
        ("", ""),
        ("🚀 !!! 🚀", ""),
    ];
    for (text, expected) in cases {
        assert_eq!(clean(text), expected, "clean({text:?})");
    }
}

#[test]
fn cleaning_keeps_words_apart_across_line_breaks() {
    // The original joined lines with '' and produced "sahamnaik".
    assert_eq!(clean("beli saham\nnaik\r\nterus\tya"), "beli saham naik terus ya");
    assert_eq!(clean("reksa\ndana"), "reksa dana");
}

#[test]
fn cleaning_does_not_copy_the_original_strip_bug() {
    // The original's `strip('[link]')` removed the characters [ l i n k ] from both ends of every tweet.
    assert_eq!(clean("link ke saham"), "link ke saham");
    assert_eq!(clean("kini beli saham bank"), "kini beli saham bank");
    assert_eq!(clean("[link] naik"), "link naik");
    assert_eq!(clean("ikan"), "ikan");
}

#[test]
fn cleaning_is_idempotent_and_normal_on_random_text() {
    const PIECES: &[&str] = &[
        "saham",
        "Reksa",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "#",
        "@",
        "_",
        ".",
        ",",
        "!",
        "?",
        "'",
        "\"",
        "(",
        "]",
        "https://t.co/x",
        "http://a.b/c?d=1&amp;e",
        "www.",
        "www.x.id",
        "&amp;",
        "&lt;",
        "&gt",
        "🚀",
        "📈",
        "👨\u{200D}👩\u{200D}👧",
        "\u{FE0F}",
        "\u{200B}",
        "\u{AD}",
        "\u{7}",
        "\u{0}",
        "\u{A0}",
        "\u{3000}",
        "İ",
        "ΣΑΣ",
        "é",
        "e\u{301}",
        "株",
        "٣",
        "²",
        "ß",
        "ẞ",
        "Ǆ",
        "RT @",
        "1.000",
        "-",
        "\u{2028}",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5_000 {
        let len = (next() % 12) as usize;
        let text: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        let once = clean(&text);
        assert_eq!(clean(&once), once, "clean is not idempotent on {text:?}");
        assert!(
            !once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "),
            "{once:?}"
        );
        assert!(once.chars().all(|c| c == ' ' || c.is_alphanumeric()), "{once:?}");
        assert_eq!(once.to_lowercase(), once, "{once:?}");
    }
}

#[test]
fn terms_are_cleaned_like_text_and_matched_case_insensitively() {
    let rules = rules(MatchMode::Substring);
    assert_eq!(rules.classify(&clean("Mau beli #Saham dan SUKUK")), ["saham", "sukuk"]);
    assert_eq!(rules.classify(&clean("reksa\ndana pasar uang")), ["reksadana"]);
    assert_eq!(
        rules.classify(&clean("Reksa  Dana dan sahamnya")),
        ["saham", "reksadana"]
    );
    assert!(rules.classify(&clean("cek https://saham.id/sukuk")).is_empty());
}

#[test]
fn substring_and_whole_word_modes_differ_on_suffixes() {
    let text = clean("sahamnya naik, reksa danaku aman, sukuk");
    assert_eq!(
        rules(MatchMode::Substring).classify(&text),
        ["saham", "reksadana", "sukuk"]
    );
    assert_eq!(rules(MatchMode::WholeWord).classify(&text), ["sukuk"]);
    assert!(mentions(MatchMode::WholeWord, "beli reksa dana", "reksa dana"));
    assert!(mentions(MatchMode::WholeWord, "saham", "saham"));
    assert!(!mentions(MatchMode::WholeWord, "ssaham saham2", "saham"));
    assert!(mentions(MatchMode::WholeWord, "ba a a", "a a"));
    assert!(mentions(MatchMode::WholeWord, "株式 株", "株"));
    assert!(!mentions(MatchMode::Substring, "saham", ""));
}

#[test]
fn a_term_that_cleans_to_nothing_matches_nothing() {
    let mut spec = spec(MatchMode::Substring);
    spec.keywords.push(Keyword {
        name: "emoji".into(),
        terms: vec!["🚀🚀".into()],
        mode: Default::default(),
    });
    spec.matching = Matching::default();
    let rules = Rules::new(&spec, chrono_tz::UTC);
    assert!(rules.classify("anything at all").is_empty());
}

#[test]
fn a_long_post_is_cleaned_matched_and_kept_whole() {
    let mut day = Day::new(
        rules(MatchMode::Substring),
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
    );
    let full = format!("{}lalu beli sukuk", "catatan pasar hari ini ".repeat(13));
    let head: String = full.chars().take(280).collect();
    day.push_line(&line(
        "20",
        &head,
        "2026-11-01T03:00:00Z",
        "in",
        json!({"note_tweet": {"text": full, "entities": {}}}),
    ));
    let (rows, _) = day.finish();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].keywords, ["sukuk"], "the keyword after character 280 counts");
    assert_eq!(rows[0].text, full, "the warehouse and search get the whole post");
    assert!(rows[0].text_clean.ends_with("lalu beli sukuk"));
}

#[test]
fn language_codes_in_and_id_are_the_same() {
    let rules = rules(MatchMode::Substring);
    assert!(rules.keeps_language(Some("in")));
    assert!(rules.keeps_language(Some("id")));
    assert!(rules.keeps_language(Some("IN")));
    assert!(!rules.keeps_language(Some("en")));
    assert!(!rules.keeps_language(None));
}

#[test]
fn retweets_are_recognised_by_reference_or_prefix() {
    let tweet = |text: &str, kind: Option<&str>| -> Tweet {
        let mut value = json!({"id": "1", "text": text, "created_at": "2026-11-01T00:00:00Z"});
        if let Some(kind) = kind {
            value["referenced_tweets"] = json!([{"type": kind, "id": "2"}]);
        }
        serde_json::from_value(value).expect("tweet")
    };
    assert!(is_retweet(&tweet("RT @budi: beli saham", None)));
    assert!(is_retweet(&tweet("beli saham", Some("retweeted"))));
    assert!(!is_retweet(&tweet("beli saham", Some("quoted"))));
    assert!(!is_retweet(&tweet("beli saham", Some("replied_to"))));
    assert!(!is_retweet(&tweet("ART @budi", None)));
}

#[test]
fn a_day_filters_counts_and_deduplicates() {
    let mut day = Day::new(
        rules(MatchMode::Substring),
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
    );
    let lines = [
        // 00:30 in Jakarta on the 1st, still the 31st in UTC.
        line("10", "Beli saham\nsekarang", "2026-10-31T17:30:00Z", "in", json!({})),
        line("11", "reksa dana & sukuk", "2026-11-01T03:00:00Z", "id", json!({})),
        line("11", "reksa dana & sukuk", "2026-11-01T03:00:00Z", "id", json!({})),
        line("12", "saham", "2026-11-01T03:00:00Z", "en", json!({})),
        line("13", "RT @x: saham", "2026-11-01T03:00:00Z", "in", json!({})),
        line(
            "14",
            "saham",
            "2026-11-01T03:00:00Z",
            "in",
            json!({"referenced_tweets": [{"type": "retweeted", "id": "1"}]}),
        ),
        // Midnight on the 2nd in Jakarta.
        line("15", "saham", "2026-11-01T17:00:00Z", "in", json!({})),
        line(
            "16",
            "cuma link https://t.co/saham",
            "2026-11-01T16:59:59Z",
            "in",
            json!({}),
        ),
        b"not json".to_vec(),
        br#"{"tweet":{"id":"17"}}"#.to_vec(),
        b"   ".to_vec(),
    ];
    for line in &lines {
        day.push_line(line);
    }
    assert_eq!(day.rejections().len(), 2);
    let (rows, counts) = day.finish();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["10", "11", "16"]);
    assert_eq!(rows[0].local_date.to_string(), "2026-11-01");
    assert_eq!(rows[0].local_hour, 0);
    assert_eq!(rows[0].text_clean, "beli saham sekarang");
    assert_eq!(rows[0].lang, "id");
    assert_eq!(rows[1].keywords, ["reksadana", "sukuk"]);
    assert_eq!(rows[2].local_hour, 23);
    assert!(rows[2].keywords.is_empty());
    assert_eq!(
        counts,
        Counts {
            tweets_in: 8,
            rejected: 2,
            other_day: 1,
            other_language: 1,
            retweets: 2,
            duplicates: 1,
            kept: 3,
            unmatched: 1,
            per_keyword: [("reksadana".into(), 1), ("saham".into(), 1), ("sukuk".into(), 1)].into(),
        }
    );
}

#[test]
fn the_kept_copy_of_a_duplicate_does_not_depend_on_line_order() {
    let date = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let copy = |username: &str| {
        format!(
            r#"{{"tweet":{{"id":"5","text":"saham","created_at":"2026-11-01T01:00:00Z","lang":"in"}},"author_username":"{username}"}}"#
        )
    };
    for order in [["zed", "ani"], ["ani", "zed"]] {
        let mut day = Day::new(rules(MatchMode::Substring), date);
        for username in order {
            day.push_line(copy(username).as_bytes());
        }
        let (rows, counts) = day.finish();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].username.as_deref(), Some("ani"));
        assert_eq!(counts.duplicates, 1);
    }
}

#[test]
fn retweets_are_kept_when_the_spec_says_so() {
    let mut spec = spec(MatchMode::Substring);
    spec.drop_retweets = false;
    let mut day = Day::new(
        Rules::new(&spec, chrono_tz::Asia::Jakarta),
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
    );
    day.push_line(&line("13", "RT @x: saham", "2026-11-01T03:00:00Z", "in", json!({})));
    let (rows, counts) = day.finish();
    assert_eq!(rows.len(), 1);
    assert_eq!(counts.retweets, 0);
}

#[test]
fn days_fed_in_parts_and_merged_equal_one_day_fed_everything() {
    let date = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let copy = |id: &str, username: &str, created: &str, lang: &str| {
        format!(
            r#"{{"tweet":{{"id":"{id}","text":"saham {id} #sukuk","created_at":"{created}","lang":"{lang}"}},"author_username":"{username}"}}"#
        )
        .into_bytes()
    };
    let lines: Vec<Vec<u8>> = vec![
        copy("1", "zed", "2026-11-01T01:00:00Z", "in"),
        copy("2", "ani", "2026-11-01T02:00:00Z", "in"),
        copy("1", "ani", "2026-11-01T01:00:00Z", "in"),
        copy("3", "budi", "2026-11-02T01:00:00Z", "in"),
        copy("4", "citra", "2026-11-01T03:00:00Z", "en"),
        b"{not json".to_vec(),
        copy("2", "ani", "2026-11-01T02:00:00Z", "in"),
        copy("5", "dewi", "2026-11-01T04:00:00Z", "in"),
    ];
    let mut whole = Day::new(rules(MatchMode::Substring), date);
    for line in &lines {
        whole.push_line(line);
    }
    let expected = whole.finish();
    // Every split into three parts, merged in either order, gives the same rows and counts.
    for (a, b) in [(1, 4), (3, 6), (0, 8), (2, 2)] {
        let mut parts = [&lines[..a], &lines[a..b], &lines[b..]].map(|part| {
            let mut day = Day::new(rules(MatchMode::Substring), date);
            for line in part {
                day.push_line(line);
            }
            day
        });
        parts.reverse();
        let [first, second, third] = parts;
        let mut merged = first;
        merged.merge(second);
        merged.merge(third);
        assert_eq!(merged.rejections().len(), 1);
        assert_eq!(merged.finish(), expected, "split at {a} and {b}");
    }
    assert_eq!(expected.1.duplicates, 2);
    assert_eq!(
        expected
            .0
            .iter()
            .find(|r| r.id == "1")
            .and_then(|r| r.username.as_deref()),
        Some("ani")
    );
}
