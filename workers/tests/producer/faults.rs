//! Faults around the producer: kills mid-poll and mid-publish, 429s and the rate-limit headers, server errors, a broker
//! restart, and a rejected token that is never printed.

use std::time::{Duration, Instant};

use cilvest_workers::{jobs::producer::Producer, telemetry::Telemetry};

use super::{KAFKA, assert_exactly_once, crash, metric, setup, spawn};
use crate::support;
use crate::support::{fake_x::Fault, path_str, run_once, wait_for_records};

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
