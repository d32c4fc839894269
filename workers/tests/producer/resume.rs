//! Every tweet once across runs: pagination and the next run resuming from the topic, and a replayed JSONL file
//! published at its rate and resumed.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use cilvest_workers::{jobs::producer::Args, tweet, x::client::TWEET_FIELDS};
use clap::Parser;
use serde_json::json;

use super::{CILVEST_QUERY, KAFKA, assert_exactly_once, metric, setup};
use crate::support;
use crate::support::{kafka_bootstrap, path_str, run_once, unique, wait_for_records, write_worker_config};

#[tokio::test]
async fn pagination_publishes_every_tweet_once_and_the_next_run_resumes_from_the_topic() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    // Posted before the backfill window: matching, but not asked for.
    let too_old = s
        .fake
        .add_tweets_at(5, chrono::Utc::now() - chrono::TimeDelta::hours(2));
    s.fake.add_tweets(250);
    s.fake.add_noise(30);
    let mut expected = s.expected();
    for id in &too_old {
        expected.remove(id);
    }
    assert_eq!(expected.len(), 250);

    let telemetry = run_once(s.args(&["--once"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 250, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &expected, &s.fake);

    let requests = s.fake.requests();
    assert_eq!(requests.len(), 3, "250 tweets are three pages of 100");
    let first = &requests[0];
    assert_eq!(first.param("query"), Some(CILVEST_QUERY));
    assert_eq!(first.param("max_results"), Some("100"));
    assert_eq!(first.param("tweet.fields"), Some(TWEET_FIELDS));
    assert_eq!(first.param("expansions"), Some("author_id"));
    assert_eq!(first.param("user.fields"), Some("username"));
    assert_eq!(
        first.param("since_id"),
        None,
        "an empty topic starts from the backfill window"
    );
    assert!(first.param("start_time").is_some());
    assert!(requests[1].param("next_token").is_some() && requests[2].param("next_token").is_some());
    let text = telemetry.encode();
    assert_eq!(
        metric(&text, "cilvest_producer_x_posts_read_total"),
        Some(250.0),
        "{text}"
    );
    assert_eq!(s.fake.posts_served(), 250);
    assert_eq!(metric(&text, "cilvest_producer_records_published_total"), Some(250.0));
    assert!(telemetry.is_ready(), "Kafka and X answered");

    // A new process knows nothing but the topic.
    let newest = *expected.last().expect("tweets");
    let later = s.fake.add_tweets(120);
    expected.extend(later);
    run_once(s.args(&["--once"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 370, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &expected, &s.fake);
    let second_run = &s.fake.requests()[3];
    assert_eq!(second_run.param("since_id"), Some(newest.to_string().as_str()));
    assert_eq!(second_run.param("start_time"), None);
    assert_eq!(s.fake.posts_served(), 370, "no tweet is read twice");
}

#[tokio::test]
async fn replay_publishes_a_jsonl_file_at_its_rate_and_resumes() {
    let _kafka = KAFKA.read().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("replay");
    support::create_topic(&bootstrap, &topic, 3).await;
    let config = write_worker_config(&bootstrap, &topic, "id", None);
    let file = config.with_file_name("tweets.jsonl");
    let tweet = |i: u64| {
        json!({"id": (1_850_000_000_000_000_000 + i * 4096).to_string(), "text": format!("beli saham {i}"),
               "created_at": "2026-11-01T03:04:05.000Z", "lang": "in", "author_id": (i % 4).to_string(),
               "public_metrics": {"like_count": i}})
    };
    let mut lines = Vec::new();
    // A whole search response page, then envelopes, then bare tweets, in no particular order, with a repeat.
    let page: Vec<_> = (0..20).map(tweet).collect();
    let users: Vec<_> = (0..4)
        .map(|u| json!({"id": u.to_string(), "username": format!("user{u}")}))
        .collect();
    lines.push(json!({"data": page, "includes": {"users": users}, "meta": {"result_count": 20}}).to_string());
    for i in (20..40).rev() {
        lines.push(json!({"tweet": tweet(i), "author_username": format!("user{}", i % 4)}).to_string());
    }
    for i in 40..60 {
        let mut bare = tweet(i);
        bare["author_username"] = json!(format!("user{}", i % 4));
        lines.push(bare.to_string());
    }
    lines.push(lines[25].clone());
    std::fs::write(&file, lines.join("\n") + "\n").expect("replay file");
    let args = |file: &Path| {
        Args::try_parse_from([
            "producer",
            "--config",
            path_str(&config),
            "--source",
            "replay",
            "--replay-file",
            path_str(file),
            "--replay-rate",
            "40/s",
            "--once",
        ])
        .expect("flags")
    };

    let started = Instant::now();
    run_once(args(&file)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "60 tweets at 40/s take a second"
    );
    let records = wait_for_records(&bootstrap, &topic, 60, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 60);
    let mut ids = BTreeSet::new();
    for record in &records {
        let parsed = tweet::parse(&record.value).expect("envelope");
        let author = parsed.tweet.author_id.clone().expect("author");
        assert_eq!(parsed.author_username, Some(format!("user{author}")));
        assert!(ids.insert(parsed.tweet.id), "duplicate");
    }

    // Run again: everything is on the topic already. Then ten newer tweets: only those are added.
    run_once(args(&file)).await;
    assert_eq!(support::topic_records(&bootstrap, &topic).await.len(), 60);
    let more: Vec<String> = (60..70)
        .map(|i| json!({"tweet": tweet(i), "author_username": format!("user{}", i % 4)}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n" + &more.join("\n")).expect("replay file");
    run_once(args(&file)).await;
    let records = wait_for_records(&bootstrap, &topic, 70, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 70);
}
