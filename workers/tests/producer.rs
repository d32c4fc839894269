//! `cilvest producer` against the test environment's real Kafka and the fake X API (`support::fake_x`): every
//! tweet the fake serves reaches the raw topic exactly once through pagination, restarts, rate limits, server
//! faults and a broker restart; a rejected token backs off and never shows up in the logs.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cilvest_crds::{WorkerConfig, x_query};
use cilvest_workers::{
    jobs::producer::{Args, Producer},
    telemetry::Telemetry,
    tweet,
    x::client::TWEET_FIELDS,
};
use clap::Parser;
use serde_json::json;
use support::{
    fake_x::{FakeX, Fault},
    kafka_bootstrap, path_str, run_once, unique, wait_for_records, write_worker_config,
};

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
async fn a_producer_killed_mid_poll_or_mid_publish_loses_and_duplicates_nothing() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(300);
    // Small chunks make publishing take a while, so the second crash lands in the middle of it.
    let args = |extra: &[&str]| {
        let mut all = vec!["--chunk-size", "5", "--x-api-timeout", "20s"];
        all.extend_from_slice(extra);
        s.args(&all)
    };

    // Crash while the second page of a poll is outstanding: nothing of that poll may be on the topic.
    s.fake.inject([Fault::Pass, Fault::Delay(Duration::from_secs(10))]);
    let (first, _) = spawn(args(&[]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.fake.request_count() < 2 {
        assert!(Instant::now() < deadline, "the producer did not ask for page 2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crash(first).await;
    assert!(support::topic_records(&s.bootstrap, &s.topic).await.is_empty());

    // Crash while publishing.
    let (second, telemetry) = spawn(args(&[]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let published_at_crash = loop {
        let published = metric(&telemetry.encode(), "cilvest_producer_records_published_total").unwrap_or(0.0);
        if published >= 100.0 {
            break published;
        }
        assert!(Instant::now() < deadline, "the second producer did not publish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    crash(second).await;
    assert!(
        published_at_crash < 300.0,
        "the crash came mid-publish ({published_at_crash})"
    );
    let partial = support::topic_records(&s.bootstrap, &s.topic).await.len();
    assert!((100..300).contains(&partial), "{partial} records after the crash");

    // More tweets arrive while no producer runs; the third resumes from the topic.
    s.fake.add_tweets(50);
    let (third, _) = spawn(args(&[]));
    let expected = s.expected();
    wait_for_records(&s.bootstrap, &s.topic, expected.len(), Duration::from_secs(60)).await;
    // A few more polls, in which nothing may be written again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    crash(third).await;
    let records = support::topic_records(&s.bootstrap, &s.topic).await;
    assert_exactly_once(&records, &expected, &s.fake);
}

#[tokio::test]
async fn a_429_pauses_until_the_reset_time() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(250);
    s.fake.inject([
        Fault::Pass,
        Fault::RateLimited {
            reset_in: Duration::from_secs(2),
        },
    ]);
    let telemetry = run_once(s.args(&["--once"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 250, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &s.expected(), &s.fake);

    let requests = s.fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 429, 200, 200],
        "one 429, no request inside the exhausted window"
    );
    let reset = requests[1].reset.expect("the 429 carries x-rate-limit-reset");
    assert!(
        requests[2].at.timestamp() >= reset,
        "retried at {} before the reset {reset}",
        requests[2].at
    );
    assert_eq!(
        requests[2].param("next_token"),
        requests[1].param("next_token"),
        "the same page is asked again"
    );
    let text = telemetry.encode();
    assert_eq!(
        metric(&text, "cilvest_producer_x_rate_limit_waits_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"cilvest_producer_x_requests_total{outcome="rate_limited"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_producer_keeps_under_x_rate_limit_remaining() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(450);
    // Five pages at two requests per 2-second window: two waits for a reset, and never a 429.
    s.fake.set_rate_limit(2, Duration::from_secs(2));
    let telemetry = run_once(s.args(&["--once"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 450, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &s.expected(), &s.fake);
    assert_eq!(s.fake.status_count(429), 0, "{:?}", s.fake.requests());
    assert_eq!(s.fake.request_count(), 5);
    let waits = metric(&telemetry.encode(), "cilvest_producer_x_rate_limit_waits_total").unwrap_or(0.0);
    assert!(waits >= 2.0, "{waits} waits");
}

#[tokio::test]
async fn server_errors_timeouts_and_malformed_bodies_are_retried() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(250);
    s.fake.inject([
        Fault::Pass,
        Fault::Unavailable,
        Fault::Delay(Duration::from_secs(3)),
        Fault::Malformed,
    ]);
    let telemetry = run_once(s.args(&["--once", "--x-api-timeout", "1s"])).await;
    let records = wait_for_records(&s.bootstrap, &s.topic, 250, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &s.expected(), &s.fake);

    let requests = s.fake.requests();
    assert_eq!(requests.len(), 6, "page 1, three failures of page 2, pages 2 and 3");
    let page_two = requests[1].param("next_token").expect("page 2 token");
    assert!(requests[1..5].iter().all(|r| r.param("next_token") == Some(page_two)));
    let text = telemetry.encode();
    for outcome in ["server_error", "timeout", "malformed"] {
        let sample = format!(r#"cilvest_producer_x_requests_total{{outcome="{outcome}"}}"#);
        assert_eq!(metric(&text, &sample), Some(1.0), "{outcome}: {text}");
    }
    assert_eq!(
        metric(&text, r#"cilvest_producer_x_requests_total{outcome="ok"}"#),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_broker_restart_loses_and_duplicates_nothing() {
    let _kafka = KAFKA.write().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(100);
    let (producer, telemetry) = spawn(s.args(&[]));
    wait_for_records(&s.bootstrap, &s.topic, 100, Duration::from_secs(30)).await;

    let restart = tokio::task::spawn_blocking(support::restart_kafka);
    // Tweets posted while the broker goes down and comes back.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.fake.add_tweets(25);
    }
    restart.await.expect("restart task");
    s.fake.add_tweets(100);
    let expected = s.expected();
    assert_eq!(expected.len(), 300);
    wait_for_records(&s.bootstrap, &s.topic, 300, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    crash(producer).await;
    let records = support::topic_records(&s.bootstrap, &s.topic).await;
    assert_exactly_once(&records, &expected, &s.fake);
    let text = telemetry.encode();
    assert_eq!(
        metric(&text, "cilvest_producer_x_posts_read_total"),
        Some(300.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_rejected_token_backs_off_is_logged_once_and_never_printed() {
    let _kafka = KAFKA.read().await;
    let s = setup(Some("1h")).await;
    s.fake.add_tweets(20);
    // The producer holds the real token; the fake wants another until the "Secret is fixed".
    s.fake.set_token("a-token-the-producer-does-not-have");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log_path = s.config.with_file_name("producer.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cilvest"))
        .args(["--log-format", "text", "producer", "--config", path_str(&s.config)])
        .args([
            "--x-api-url",
            &s.fake.url(),
            "--poll-interval",
            "300ms",
            "--retry-configuration",
            "1s",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("CILVEST_X_BEARER_TOKEN", &s.token)
        .env(
            "RUST_LOG",
            "debug,hyper=trace,hyper_util=trace,reqwest=trace,rdkafka=info",
        )
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start cilvest producer");

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let rejected = s.fake.request_count();
    assert!(
        (2..=6).contains(&rejected),
        "{rejected} requests in 3.5 s with a 1 s back-off: not a hot loop"
    );
    assert_eq!(s.fake.status_count(401), rejected);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(&metrics, "cilvest_producer_x_configuration_error"),
        Some(1.0),
        "{metrics}"
    );
    for name in support::alerts::alerted_series("cilvest_producer_") {
        assert!(
            support::alerts::declares(&metrics, &name),
            "the chart alerts on {name}, which the producer does not serve"
        );
    }
    let unauthorized = metric(&metrics, r#"cilvest_producer_x_requests_total{outcome="unauthorized"}"#);
    assert!(unauthorized.is_some_and(|n| n >= 2.0), "{metrics}");
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        503
    );
    assert_eq!(
        http.get(format!("{base}/livez")).send().await.expect("livez").status(),
        200
    );

    s.fake.set_token(&s.token);
    let records = wait_for_records(&s.bootstrap, &s.topic, 20, Duration::from_secs(30)).await;
    assert_exactly_once(&records, &s.expected(), &s.fake);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(metric(&metrics, "cilvest_producer_x_configuration_error"), Some(0.0));

    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the producer ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "a SIGTERM is a clean exit: {status}");

    let logs = std::fs::read_to_string(&log_path).expect("logs");
    assert!(logs.contains("producer stopped"), "{logs}");
    assert!(!logs.contains(&s.token), "the bearer token appears in the logs");
    let reported = logs
        .lines()
        .filter(|l| l.contains("X rejects the producer's requests"))
        .count();
    assert_eq!(reported, 1, "the rejection is reported once:\n{logs}");
    assert!(logs.contains("X accepts the search request again"));
}

#[tokio::test]
async fn a_one_shot_run_with_a_rejected_token_fails_without_printing_it() {
    let _kafka = KAFKA.read().await;
    // No backfill: the first poll starts from the producer's start.
    let s = setup(None).await;
    s.fake.set_token("a-token-the-producer-does-not-have");
    let producer = Producer::new(s.args(&["--once"]), Telemetry::new("cilvest_producer")).expect("producer");
    let error = tokio::time::timeout(Duration::from_secs(30), producer.run(std::future::pending()))
        .await
        .expect("a one-shot run ends")
        .expect_err("a 401 ends a one-shot run")
        .to_string();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(!error.contains(&s.token), "{error}");
    assert_eq!(s.fake.request_count(), 1);
    let request = &s.fake.requests()[0];
    let start_time = request.param("start_time").expect("start_time");
    let start_time = chrono::DateTime::parse_from_rfc3339(start_time).expect("RFC 3339");
    let age = chrono::Utc::now() - start_time.with_timezone(&chrono::Utc);
    assert!(
        age >= chrono::TimeDelta::seconds(10) && age < chrono::TimeDelta::seconds(60),
        "{age}"
    );
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
