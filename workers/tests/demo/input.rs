//! `--input` with a hand-written file of v2 tweets: the counts the demo reports, worked out by hand.

use std::collections::BTreeMap;

use serde_json::json;

use super::{demo, demo_json, num, temp_dir, text};

/// Tweets in Asia/Jakarta (UTC+7), annotated with what the pipeline must make of them.
fn input_lines() -> Vec<String> {
    let bare = |id: &str, text: &str, at: &str, lang: &str, user: Option<&str>| {
        let mut tweet = json!({"id": id, "text": text, "created_at": at, "lang": lang, "author_id": "1"});
        if let Some(user) = user {
            tweet["author_username"] = json!(user);
        }
        tweet.to_string()
    };
    let envelope = json!({
        "tweet": {"id": "1001", "text": "Beli #saham BBCA hari ini 🚀", "created_at": "2026-11-01T02:00:00.000Z",
                  "lang": "in"},
        "author_username": "budi", "fetched_at": "2026-11-01T02:01:00Z",
    })
    .to_string();
    vec![
        // 11-01 09:00, saham.
        envelope.clone(),
        // 11-01 10:00, reksadana ("reksa dana" is a term), a bare tweet.
        bare(
            "1002",
            "reksa dana pasar uang\ncocok buat pemula",
            "2026-11-01T03:30:00Z",
            "in",
            Some("sari"),
        ),
        // 20:00 UTC is 03:00 of 11-02 in Jakarta: sukuk and saham (substring: "sahamnya").
        bare(
            "1003",
            "Sukuk ritel dan sahamnya",
            "2026-11-01T20:00:00Z",
            "id",
            Some("budi"),
        ),
        // The producer's overlap: the same envelope again (a duplicate).
        envelope,
        // A retweet (dropped), and English (dropped).
        json!({"id": "1004", "text": "RT @budi: Beli #saham", "created_at": "2026-11-01T04:00:00Z", "lang": "in",
               "referenced_tweets": [{"type": "retweeted", "id": "1001"}], "author_username": "tono"})
        .to_string(),
        bare("1005", "saham means stock", "2026-11-01T04:00:00Z", "en", Some("tono")),
        // Not a tweet at all: the lake writer sets it aside.
        "this is not json".to_owned(),
        // 11-02 12:00 and 13:00, saham; the second has no username.
        bare("1006", "saham lagi merah", "2026-11-02T05:00:00Z", "in", Some("tono")),
        bare("1007", "#SAHAM", "2026-11-02T06:10:00Z", "in", None),
        // X matched the URL only: kept, no keyword.
        bare(
            "1008",
            "cek https://x.co/saham",
            "2026-11-02T07:00:00Z",
            "in",
            Some("sari"),
        ),
    ]
}

#[test]
fn input_file_counts_match_a_hand_count() {
    let dir = temp_dir("cilvest-demo-input");
    let input = dir.join("tweets.jsonl");
    std::fs::write(&input, input_lines().join("\n") + "\n").expect("write input");
    let lake = dir.join("lake");
    let report = demo_json(&[
        "--input",
        input.to_str().expect("utf-8"),
        "--lake",
        lake.to_str().expect("utf-8"),
    ]);

    assert_eq!(report["records"], 10);
    assert_eq!(report["rejectedRecords"], 1);
    // The report says first where its posts came from.
    assert_eq!(report["data"], format!("the posts in {}", input.display()));
    let table = demo(&["--input", input.to_str().expect("utf-8")]);
    assert_eq!(
        table.lines().next(),
        Some(format!("Data: the posts in {}", input.display()).as_str())
    );
    let t = &report["transform"];
    assert_eq!(
        (
            &t["tweetsIn"],
            &t["duplicates"],
            &t["retweets"],
            &t["otherLanguage"],
            &t["kept"],
            &t["unmatched"]
        ),
        (&json!(9), &json!(1), &json!(1), &json!(1), &json!(6), &json!(1)),
        "{t:#}"
    );
    assert_eq!(report["days"], json!(["2026-11-01", "2026-11-02"]));
    let marts = &report["marts"];
    assert_eq!(
        marts["total"],
        json!({"tweets": 6, "authors": 3, "first_day": "2026-11-01", "last_day": "2026-11-02"})
    );
    let per_keyword: BTreeMap<String, (u64, u64)> = marts["perKeyword"]
        .as_array()
        .expect("perKeyword")
        .iter()
        .map(|k| {
            (
                k["keyword"].as_str().expect("keyword").to_owned(),
                (num(&k["tweets"]), num(&k["authors"])),
            )
        })
        .collect();
    // saham: 1001 budi, 1003 budi, 1006 tono, 1007 nobody; reksadana: 1002 sari; sukuk: 1003 budi.
    assert_eq!(
        per_keyword,
        BTreeMap::from([
            ("saham".to_owned(), (4, 2)),
            ("reksadana".to_owned(), (1, 1)),
            ("sukuk".to_owned(), (1, 1))
        ])
    );
    let daily: BTreeMap<(String, String), u64> = marts["keywordDaily"]
        .as_array()
        .expect("keywordDaily")
        .iter()
        .map(|d| ((text(&d["keyword"]), text(&d["local_date"])), num(&d["tweets"])))
        .collect();
    let day = |k: &str, d: &str| (k.to_owned(), d.to_owned());
    assert_eq!(
        daily,
        BTreeMap::from([
            (day("saham", "2026-11-01"), 1),
            (day("reksadana", "2026-11-01"), 1),
            (day("saham", "2026-11-02"), 3),
            (day("sukuk", "2026-11-02"), 1),
        ])
    );
    // Hours are local: 02:00Z is 09:00, 20:00Z is 03:00, 05:00Z is 12:00, 06:10Z is 13:00.
    let hourly: BTreeMap<String, Vec<u64>> = report["hourly"]
        .as_array()
        .expect("hourly")
        .iter()
        .map(|pair| {
            (
                text(&pair[0]),
                pair[1].as_array().expect("24").iter().map(num).collect(),
            )
        })
        .collect();
    let hours = |set: &[usize]| (0..24).map(|h| u64::from(set.contains(&h))).collect::<Vec<_>>();
    assert_eq!(hourly["saham"], hours(&[3, 9, 12, 13]));
    assert_eq!(hourly["reksadana"], hours(&[10]));
    assert_eq!(hourly["sukuk"], hours(&[3]));
    // budi 1001, 1003; sari 1002, 1008; tono 1006: a tie for first place, then rank 3.
    let top: Vec<(String, u64, u64)> = marts["topUsers"]
        .as_array()
        .expect("topUsers")
        .iter()
        .map(|u| (text(&u["username"]), num(&u["tweets"]), num(&u["rank"])))
        .collect();
    assert_eq!(
        top,
        vec![
            ("budi".to_owned(), 2, 1),
            ("sari".to_owned(), 2, 1),
            ("tono".to_owned(), 1, 3)
        ]
    );
    // The lake has the consumer's layout, and the curated day the daily job writes.
    let raw_day = std::fs::read_dir(lake.join("raw/dt=2026-11-02"))
        .expect("raw day")
        .count();
    assert!(raw_day >= 1);
    assert!(lake.join("curated/dt=2026-11-01/part-00000.parquet").exists());
    assert!(std::fs::read_dir(lake.join("rejected")).expect("rejected tree").count() == 1);
    let _ = std::fs::remove_dir_all(&dir);
}
