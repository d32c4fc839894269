//! The X side of the producer: the query built for the Cilvest keywords, the 512-character limit, the fake keeping the
//! recent search contract, and a long post reaching the topic whole.

use std::time::Duration;

use cilvest_crds::{WorkerConfig, x_query};
use cilvest_workers::{
    jobs::producer::{Args, Producer},
    telemetry::Telemetry,
};
use clap::Parser;
use serde_json::json;

use super::{CILVEST_QUERY, KAFKA, setup};
use crate::support::{
    fake_x::{FakeX, Fault},
    path_str, run_once, wait_for_records, write_worker_config,
};

#[test]
fn query_builder_output_for_the_cilvest_keywords() {
    let config = write_worker_config("127.0.0.1:1", "unused", "id", None);
    let worker: WorkerConfig = serde_json::from_slice(&std::fs::read(&config).expect("config")).expect("config json");
    assert_eq!(x_query(&worker.spec).expect("fits"), CILVEST_QUERY);

    // `in` (what X answers with) and `id` (what its query operator takes) are one language.
    let legacy = write_worker_config("127.0.0.1:1", "unused", "in", None);
    let worker: WorkerConfig = serde_json::from_slice(&std::fs::read(&legacy).expect("config")).expect("config json");
    assert_eq!(x_query(&worker.spec).expect("fits"), CILVEST_QUERY);
}

#[tokio::test]
async fn a_query_over_512_characters_is_refused_naming_the_limit() {
    let config = write_worker_config("127.0.0.1:1", "unused", "id", None);
    let mut worker: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).expect("config")).expect("json");
    let terms: Vec<String> = (0..20)
        .map(|i| format!("istilah-panjang-nomor-{i:02}-xxxxxx"))
        .collect();
    worker["spec"]["keywords"] = json!([{"name": "panjang", "terms": terms}]);
    std::fs::write(&config, worker.to_string()).expect("write config");
    let args = Args::try_parse_from(["producer", "--config", path_str(&config)]).expect("flags");
    let error = Producer::new(args, Telemetry::new("cilvest_producer"))
        .err()
        .expect("a query over the limit is an error")
        .to_string();
    assert!(error.contains("512"), "{error}");
}

#[tokio::test]
async fn fake_x_keeps_the_recent_search_contract() {
    let fake = FakeX::start("right-token").await;
    fake.add_tweets(25);
    fake.add_noise(9);
    let http = reqwest::Client::new();
    let url = format!("{}/2/tweets/search/recent", fake.url());
    let get = |token: &'static str, params: Vec<(&'static str, String)>| {
        http.get(&url).bearer_auth(token).query(&params).send()
    };
    let q = |query: &str| ("query", query.to_owned());

    let unauthorized = get("wrong", vec![q(CILVEST_QUERY)]).await.expect("request");
    assert_eq!(unauthorized.status(), 401);
    let body: serde_json::Value = unauthorized.json().await.expect("problem json");
    assert_eq!(body["title"], "Unauthorized");

    for bad in [
        CILVEST_QUERY.replace("lang:id", "lang:in"),
        format!("({}) lang:id", "saham OR ".repeat(60) + "sukuk"),
    ] {
        let response = get("right-token", vec![q(&bad)]).await.expect("request");
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.expect("problem json");
        assert_eq!(body["title"], "Invalid Request", "{body}");
    }
    let too_few = get("right-token", vec![q(CILVEST_QUERY), ("max_results", "5".into())])
        .await
        .expect("request");
    assert_eq!(too_few.status(), 400);

    // Pages of 10, newest first, linked by next_token; authors in includes.users; requested fields only.
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![
            q(CILVEST_QUERY),
            ("max_results", "10".into()),
            ("expansions", "author_id".into()),
        ];
        params.push(("tweet.fields", "created_at,lang,author_id".into()));
        if let Some(t) = &token {
            params.push(("next_token", t.clone()));
        }
        let response = get("right-token", params).await.expect("request");
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-rate-limit-reset"));
        let page: serde_json::Value = response.json().await.expect("page");
        for tweet in page["data"].as_array().expect("data") {
            assert_eq!(tweet["lang"], "in");
            assert!(tweet.get("public_metrics").is_none(), "not requested");
            let author = tweet["author_id"].as_str().expect("author");
            let users = page["includes"]["users"].as_array().expect("includes.users");
            assert!(users.iter().any(|u| u["id"] == author));
            ids.push(tweet["id"].as_str().expect("id").parse::<u64>().expect("numeric id"));
        }
        match page["meta"]["next_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 25, "noise is not matched");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first across pages");

    // since_id: only newer tweets.
    let newest = ids[0];
    let added = fake.add_tweets(3);
    let response = get("right-token", vec![q(CILVEST_QUERY), ("since_id", newest.to_string())])
        .await
        .expect("request");
    let page: serde_json::Value = response.json().await.expect("page");
    let newer: Vec<u64> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["id"].as_str().expect("id").parse().expect("id"))
        .collect();
    assert_eq!(newer, added.into_iter().rev().collect::<Vec<_>>());
    assert_eq!(page["meta"]["result_count"], 3);

    // An injected 429 holds until its reset.
    fake.inject([Fault::RateLimited {
        reset_in: Duration::from_secs(30),
    }]);
    for _ in 0..2 {
        let response = get("right-token", vec![q(CILVEST_QUERY)]).await.expect("request");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["x-rate-limit-remaining"], "0");
    }
}

#[tokio::test]
async fn a_long_post_reaches_the_topic_whole_and_counts_for_the_keyword_after_its_280th_character() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    let long = s.fake.add_long_post_at(chrono::Utc::now(), "reksadana");
    s.fake.add_tweets(3);
    run_once(s.args(&["--once"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 4, Duration::from_secs(30)).await;
    let record = records
        .iter()
        .find(|r| r.key.as_deref() == Some(long.to_string().as_str()))
        .expect("the long post on the topic");
    let envelope: serde_json::Value = serde_json::from_slice(&record.value).expect("envelope json");
    let head = envelope["tweet"]["text"].as_str().expect("text");
    let full = envelope["tweet"]["note_tweet"]["text"]
        .as_str()
        .expect("note_tweet.text");
    assert_eq!(head.chars().count(), 280, "X's text is the first 280 characters");
    assert!(
        !head.contains("reksadana") && full.ends_with("#reksadana juga"),
        "{full}"
    );
    assert_eq!(
        envelope["tweet"]["note_tweet"]["entities"]["hashtags"][0]["tag"], "reksadana",
        "the envelope keeps the tweet as X sent it"
    );

    // The daily transform reads the whole post: cleaned, matched and stored in full.
    let parsed = cilvest_workers::tweet::parse(&record.value).expect("a tweet");
    assert_eq!(parsed.tweet.text, full);
}
