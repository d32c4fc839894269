//! The consumer on Pub/Sub, SIGKILLed again and again (some kills aimed between a write and its acknowledgement through
//! `AckGate`): every tweet reaches the lake and the daily transform keeps each once.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use cilvest_crds::CilvestPipelineSpec;
use cilvest_workers::{
    bus::pubsub::{Outgoing, TWEET_ID_ATTRIBUTE},
    jobs::daily::raw,
    transform::Rules,
    tweet,
};
use flate2::read::GzDecoder;
use futures::TryStreamExt;
use object_store::ObjectStore;
use serde_json::json;
use tokio::process::{Child, Command};

use super::{ACK_DEADLINE, SERIAL, client, names, spec_json, write_config};
use crate::support;
use crate::support::{service_env, unique};

/// Tweet ids are `FIRST_ID + n`.
const FIRST_ID: u64 = 1_860_000_000_000_000_000;

/// Spread over three Jakarta days, so that every batch spans several `dt=` days.
fn created_at(n: u64) -> DateTime<Utc> {
    let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00+07:00")
        .expect("start")
        .to_utc();
    start + TimeDelta::seconds(i64::try_from(n * 7919 % 259_200).expect("small"))
}

fn envelope(n: u64) -> Vec<u8> {
    json!({
        "tweet": {
            "id": (FIRST_ID + n).to_string(),
            "text": format!("beli saham bbca hari ini #{n}"),
            "created_at": created_at(n).to_rfc3339_opts(SecondsFormat::Millis, true),
            "lang": "in",
        },
        "author_username": format!("investor{}", n % 977),
    })
    .to_string()
    .into_bytes()
}

struct ConsumerProcess {
    child: Child,
    log: PathBuf,
}

impl ConsumerProcess {
    fn spawn(config: &Path, lake: &str, emulator: SocketAddr, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("consumer log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_cilvest"))
            .arg("consumer")
            .args(["--config", config.to_str().expect("utf-8"), "--lake", lake])
            .args(["--flush-records", "300", "--flush-interval", "400ms"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("CILVEST_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("PUBSUB_EMULATOR_HOST", emulator.to_string())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start cilvest consumer");
        Self { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn kill9(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the consumer exited on its own with {status}:\n{}", self.log_tail());
        }
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait after SIGKILL");
    }

    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within 30 s of SIGTERM:\n{}", self.log_tail()))
            .expect("wait")
    }
}

/// A proxy in front of the emulator that can hold the consumer's `:acknowledge` calls back (never answering them)
/// while [`AckGate::hold`] is set: a consumer killed while one is held has written the messages' objects and not
/// acknowledged them, which is the case redelivery is about. Every other call is passed through unchanged.
#[derive(Clone)]
struct AckGate {
    upstream: String,
    http: reqwest::Client,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

impl AckGate {
    async fn start(upstream: &str) -> (Self, SocketAddr) {
        let gate = Self {
            upstream: format!("http://{upstream}"),
            http: reqwest::Client::new(),
            hold: Arc::default(),
            held: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let app = axum::Router::new().fallback(forward).with_state(gate.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (gate, address)
    }

    /// Hold acknowledgements from now on, until [`AckGate::release`].
    fn hold(&self) {
        self.held.store(0, Ordering::SeqCst);
        self.hold.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }

    /// Wait until an acknowledgement has been held (`true`), or `within` has passed (`false`).
    async fn wait_held(&self, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        while self.held.load(Ordering::SeqCst) == 0 {
            if Instant::now() > give_up {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

async fn forward(State(gate): State<AckGate>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().ends_with(":acknowledge") && gate.hold.load(Ordering::SeqCst) {
        gate.held.fetch_add(1, Ordering::SeqCst);
        // Never answered: the consumer is killed while it waits.
        std::future::pending::<()>().await;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = gate.http.request(method, format!("{}{path}", gate.upstream)).body(body);
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        request = request.header(CONTENT_TYPE, content_type);
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(CONTENT_TYPE).cloned();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            if let Some(content_type) = content_type {
                response.headers_mut().insert(CONTENT_TYPE, content_type);
            }
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

fn count_objects(dir: &Path) -> usize {
    support::lake_files(dir).len()
}

/// Every raw line in a local lake: tweet id -> copies; and the number of lines under `rejected/`.
fn lake_contents(dir: &Path) -> (BTreeMap<u64, usize>, usize) {
    let mut ids = BTreeMap::new();
    let mut rejected = 0;
    for path in support::lake_files(dir) {
        let mut text = String::new();
        let body = std::fs::read(&path).unwrap_or_default();
        // A file being replaced reads as empty; the final check runs after the consumer stopped.
        if GzDecoder::new(&body[..]).read_to_string(&mut text).is_err() {
            continue;
        }
        for line in text.lines() {
            if path.to_string_lossy().contains("/rejected/") {
                rejected += 1;
            } else if let Ok(parsed) = tweet::parse(line.as_bytes()) {
                *ids.entry(parsed.tweet.id.parse().expect("numeric id")).or_default() += 1;
            }
        }
    }
    (ids, rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_gets_every_tweet_into_the_lake_through_sigkills_and_the_daily_transform_keeps_each_once() {
    const N: u64 = 6_000;
    const KILLS: usize = 6;
    let _serial = SERIAL.lock().await;
    let client = client();
    let names = names("consumer");
    client
        .ensure(&names, ACK_DEADLINE)
        .await
        .expect("topic and subscription");
    let dir = std::env::temp_dir().join(unique("pubsub-consumer"));
    let lake_dir = dir.join("lake");
    std::fs::create_dir_all(&lake_dir).expect("lake dir");
    let lake_uri = format!("file://{}", lake_dir.display());
    let config = write_config("cilvest", &names, "gs://unused-bucket/lake");
    eprintln!("logs in {}", dir.display());

    // Tweets (and three messages that are not tweets) arrive while the consumer is being killed.
    let publishing = {
        let (client, names) = (client.clone(), names.clone());
        tokio::spawn(async move {
            // Pub/Sub refuses a message with neither data nor attributes; the empty one carries an attribute.
            let bad: [&[u8]; 3] = [b"not json", b"{\"tweet\": {\"id\": \"x\"}}", b""];
            let outgoing: Vec<Outgoing<'_>> = bad
                .iter()
                .map(|data| Outgoing {
                    data,
                    attributes: BTreeMap::from([("case", "malformed".to_owned())]),
                })
                .collect();
            client.publish(&names, &outgoing).await.expect("publish bad messages");
            for chunk in 0..30 {
                let bodies: Vec<(u64, Vec<u8>)> = (chunk * N / 30..(chunk + 1) * N / 30)
                    .map(|n| (n, envelope(n)))
                    .collect();
                let outgoing: Vec<Outgoing<'_>> = bodies
                    .iter()
                    .map(|(n, data)| Outgoing {
                        data,
                        attributes: BTreeMap::from([(TWEET_ID_ATTRIBUTE, (FIRST_ID + n).to_string())]),
                    })
                    .collect();
                let ids = client.publish(&names, &outgoing).await.expect("publish");
                assert_eq!(ids.len(), outgoing.len());
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };

    let (gate, emulator) = AckGate::start(&service_env("PUBSUB_EMULATOR_HOST", "pubsub")).await;
    let mut kills = 0;
    let mut aimed = 0;
    let mut run = 0;
    let mut seed = Utc::now().timestamp_micros().unsigned_abs();
    let mut last_kill = Instant::now();
    while !publishing.is_finished() || kills < KILLS {
        run += 1;
        let mut consumer = ConsumerProcess::spawn(&config, &lake_uri, emulator, dir.join(format!("run-{run}.log")));
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let life = Duration::from_millis(800 + (seed >> 33) % 1_500);
        // Every other kill is aimed between a write and its acknowledgement: the gate holds the acknowledgements
        // back and the kill follows the first one held, so those messages come again after their deadline and land
        // a second time. Once publishing is over, only if no kill was aimed yet (there may be nothing left to pull).
        // The other kills land wherever a random life ends.
        if run % 2 == 0 && (aimed == 0 || !publishing.is_finished()) {
            gate.hold();
            let held = gate.wait_held(Duration::from_secs(30)).await;
            assert!(
                held,
                "the consumer acknowledged nothing within 30 s of starting:\n{}",
                consumer.log_tail()
            );
            aimed += 1;
        } else {
            tokio::time::sleep(life).await;
        }
        consumer.kill9().await;
        gate.release();
        last_kill = Instant::now();
        kills += 1;
        let (ids, _) = lake_contents(&lake_dir);
        eprintln!("SIGKILL {run}: {} distinct tweets in the lake", ids.len());
    }
    publishing.await.expect("publisher task");

    // The last consumer picks up what the killed ones held once their ack deadlines pass.
    let last = ConsumerProcess::spawn(&config, &lake_uri, emulator, dir.join("final.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ids, rejected) = lake_contents(&lake_dir);
        if ids.len() as u64 == N && rejected >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} tweets and {rejected} rejected lines in the lake after 120 s:\n{}",
            ids.len(),
            last.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Messages a killed consumer wrote but never acknowledged come again once their deadline has passed, even when
    // every tweet is already in the lake: keep the last consumer running until those have come and been
    // acknowledged, that is two deadlines after the last kill and then until the lake stops growing.
    let deadline_s = u64::try_from(ACK_DEADLINE).expect("positive");
    tokio::time::sleep_until((last_kill + Duration::from_secs(2 * deadline_s + 5)).into()).await;
    let mut objects = count_objects(&lake_dir);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = count_objects(&lake_dir);
        if now == objects {
            break;
        }
        objects = now;
    }
    let status = last.terminate().await;
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    // No loss in the lake, and no duplicate after the daily transform.
    let (ids, rejected) = lake_contents(&lake_dir);
    let expected: BTreeSet<u64> = (0..N).map(|n| FIRST_ID + n).collect();
    assert_eq!(
        ids.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "every tweet is in the lake"
    );
    assert_eq!(rejected, 3, "each message that is not a tweet is under rejected/ once");
    let copies: usize = ids.values().sum();
    eprintln!(
        "{N} tweets as {copies} lines in the lake ({} redelivered duplicates) after {kills} SIGKILLs",
        copies - N as usize
    );
    assert!(
        copies > N as usize,
        "{aimed} kills were aimed between a write and its acknowledgement, yet no message came again"
    );
    let spec: CilvestPipelineSpec = serde_json::from_value(spec_json(&lake_uri)).expect("spec");
    let tz: chrono_tz::Tz = "Asia/Jakarta".parse().expect("zone");
    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("lake");
    let days: BTreeSet<NaiveDate> = (0..N).map(|n| created_at(n).with_timezone(&tz).date_naive()).collect();
    let mut curated = BTreeMap::new();
    for date in days {
        let (day, _) = raw::transform_day(&lake, &Rules::new(&spec, tz), date)
            .await
            .expect("read day");
        let (rows, counts) = day.finish();
        assert_eq!(counts.rejected, 0);
        for row in rows {
            *curated.entry(row.id.parse::<u64>().expect("id")).or_insert(0usize) += 1;
        }
    }
    assert_eq!(curated.keys().copied().collect::<BTreeSet<_>>(), expected);
    assert!(
        curated.values().all(|&n| n == 1),
        "each tweet exactly once after the transform"
    );

    // Everything was acknowledged: nothing comes again once the ack deadlines have passed.
    tokio::time::sleep(Duration::from_secs(u64::try_from(ACK_DEADLINE).expect("positive") + 2)).await;
    let left = client.pull_now(&names, 1000).await.expect("pull");
    assert!(left.is_empty(), "{} messages were never acknowledged", left.len());
    let objects: Vec<_> = lake.list(None).try_collect().await.expect("list lake");
    eprintln!("{} objects", objects.len());
    let _ = std::fs::remove_dir_all(&dir);
}
