//! `cilvest producer` against the test environment's real Kafka and the fake X API (`support::fake_x`): every
//! tweet the fake serves reaches the raw topic exactly once through pagination, restarts, rate limits, server
//! faults and a broker restart; a rejected token backs off and never shows up in the logs.

mod contract;
mod faults;
mod resume;
#[path = "../support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use cilvest_workers::{
    jobs::producer::{Args, Producer},
    telemetry::Telemetry,
    tweet,
};
use clap::Parser;

use support::{fake_x::FakeX, kafka_bootstrap, path_str, unique, write_worker_config};

/// Kafka tests share the broker; the broker-restart test takes it alone.
static KAFKA: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const CILVEST_QUERY: &str =
    r##"(saham OR #saham OR reksadana OR "reksa dana" OR #reksadana OR sukuk OR #sukuk) lang:id -is:retweet"##;

/// A topic, a worker configuration, a token file and a fake X API that accepts the token.
struct Setup {
    bootstrap: String,
    topic: String,
    config: PathBuf,
    token: String,
    token_file: PathBuf,
    fake: FakeX,
}

async fn setup(backfill: Option<&str>) -> Setup {
    let bootstrap = kafka_bootstrap();
    let topic = unique("producer");
    support::create_topic(&bootstrap, &topic, 3).await;
    let config = write_worker_config(&bootstrap, &topic, "id", backfill);
    // Looks like a real app-only token, and is unique so that a leak cannot be mistaken for another test's text.
    let token = format!("AAAAAAAAAAAAAAAAAAAAA{}", unique("secret").replace('-', "x"));
    let token_file = config.with_file_name("bearer-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let fake = FakeX::start(&token).await;
    Setup {
        bootstrap,
        topic,
        config,
        token,
        token_file,
        fake,
    }
}

impl Setup {
    /// Producer flags for this setup, tuned so that waits take milliseconds; `extra` adds flags or overrides them.
    fn args(&self, extra: &[&str]) -> Args {
        let url = self.fake.url();
        let defaults = [
            ("--config", path_str(&self.config)),
            ("--x-api-url", url.as_str()),
            ("--bearer-token-file", path_str(&self.token_file)),
            ("--poll-interval", "300ms"),
            ("--retry-initial", "100ms"),
            ("--retry-max", "1s"),
            ("--retry-configuration", "1s"),
            ("--x-api-timeout", "2s"),
        ];
        let mut argv = vec!["producer"];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                argv.extend([flag, value]);
            }
        }
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("producer flags")
    }

    /// Every tweet id the fake holds that the Cilvest query matches.
    fn expected(&self) -> BTreeSet<u64> {
        self.fake.matching_ids(CILVEST_QUERY)
    }
}

/// Start a producer in the background; abort the handle to simulate a crash.
fn spawn(args: Args) -> (tokio::task::JoinHandle<()>, Telemetry) {
    support::init_test_logs();
    let telemetry = Telemetry::new("cilvest_producer");
    let producer = Producer::new(args, telemetry.clone()).expect("producer");
    let handle = tokio::spawn(async move {
        producer.run(std::future::pending()).await.expect("producer run");
    });
    (handle, telemetry)
}

async fn crash(handle: tokio::task::JoinHandle<()>) {
    handle.abort();
    let _ = handle.await;
}

/// A sample's value from OpenMetrics text, by its full name with labels.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// The topic holds each of `expected` exactly once, as an envelope with its author's username.
fn assert_exactly_once(records: &[support::TopicRecord], expected: &BTreeSet<u64>, fake: &FakeX) {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for record in records {
        let key = record.key.as_deref().expect("every record has a key");
        let id: u64 = key.parse().expect("the key is the tweet id");
        *counts.entry(id).or_default() += 1;
        let parsed = tweet::parse(&record.value).expect("the value is a tweet envelope");
        assert_eq!(parsed.tweet.id, key, "the key is the envelope's tweet id");
        let author = parsed.tweet.author_id.as_deref().expect("author_id was requested");
        assert_eq!(
            parsed.author_username,
            fake.username(author),
            "username from includes.users"
        );
        assert_eq!(
            parsed.tweet.lang.as_deref(),
            Some("in"),
            "X answers `in` for Indonesian"
        );
        let envelope: serde_json::Value = serde_json::from_slice(&record.value).expect("json");
        assert!(envelope["fetched_at"].is_string(), "{envelope}");
        assert!(envelope["tweet"]["public_metrics"].is_object(), "{envelope}");
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "tweets written more than once: {duplicates:?}");
    let on_topic: BTreeSet<u64> = counts.into_keys().collect();
    let missing: Vec<_> = expected.difference(&on_topic).collect();
    let unexpected: Vec<_> = on_topic.difference(expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} missing {missing:?}, {} unexpected {unexpected:?}",
        missing.len(),
        unexpected.len()
    );
}
