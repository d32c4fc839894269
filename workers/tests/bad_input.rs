//! Bad input at the workers' doors, through the `cilvest` binary as Kubernetes runs it: a missing or malformed
//! ConfigMap file, a missing Secret, malformed tweets, and a Kafka record over the consumer's size limit. Each must
//! end in a clear message naming what is wrong (or in `rejected/`), never in a panic.

mod support;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use cilvest_crds::{CilvestPipeline, WorkerConfig};
use cilvest_workers::lake::record::MAX_RECORD_BYTES;
use flate2::read::GzDecoder;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use support::{kafka_bootstrap, unique};

const EXAMPLE: &str = include_str!("../../examples/cilvest.yaml");

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The worker configuration the operator renders for the full example, as JSON.
fn example_config() -> Value {
    let pipeline: CilvestPipeline = serde_saphyr::from_str(EXAMPLE).expect("example parses");
    serde_json::to_value(WorkerConfig::for_pipeline(&pipeline)).expect("config json")
}

fn write_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).expect("json")).expect("write config");
    path
}

/// `cilvest <args>` with none of the variables a pod would set, so only the arguments count.
fn cilvest(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cilvest"));
    for (var, _) in std::env::vars() {
        if var.starts_with("CILVEST_") {
            command.env_remove(var);
        }
    }
    command
        .args(["--log-format", "text"])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run cilvest")
}

/// The worker failed with exit status 1 and `expected` in its log, without panicking.
fn assert_fails_with(output: &Output, expected: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panic in stderr:\n{stderr}");
    stderr
}

/// The three workers that read `pipeline.json`, each with the flags that make it stop after one pass.
fn workers_reading(config: &Path, dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let config = config.display().to_string();
    let termination_log = dir.join("termination-log").display().to_string();
    vec![
        (
            "producer",
            vec!["producer".into(), "--config".into(), config.clone(), "--once".into()],
        ),
        ("consumer", vec!["consumer".into(), "--config".into(), config.clone()]),
        (
            "daily",
            vec![
                "daily".into(),
                "--config".into(),
                config,
                "--date".into(),
                "2026-11-01".into(),
                "--termination-log".into(),
                termination_log,
            ],
        ),
    ]
}

#[test]
fn a_missing_configmap_file_is_named_by_every_worker() {
    let dir = temp_dir("bad-input-missing-config");
    let missing = dir.join("not-mounted").join("pipeline.json");
    for (worker, args) in workers_reading(&missing, &dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = assert_fails_with(
            &cilvest(&args, &[]),
            &format!(
                "failed to read the worker configuration {}: No such file or directory (os error 2)",
                missing.display()
            ),
        );
        assert_eq!(
            stderr.matches("No such file").count(),
            1,
            "{worker}: cause repeated:\n{stderr}"
        );
    }
    // The daily job also says so in its termination message, which the operator copies into the status.
    let message = std::fs::read_to_string(dir.join("termination-log")).expect("termination message");
    assert!(message.contains("failed to read the worker configuration"), "{message}");
}

#[test]
fn a_wrong_type_in_the_configmap_names_the_file_and_the_field() {
    let dir = temp_dir("bad-input-wrong-type");
    let mut config = example_config();
    config["spec"]["topics"]["raw"]["partitions"] = json!("three");
    let path = write_config(&dir, &config);
    for (_, args) in workers_reading(&path, &dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails_with(
            &cilvest(&args, &[]),
            &format!(
                "failed to parse the worker configuration {}: field spec.topics.raw.partitions: invalid type: \
                 string \"three\"",
                path.display()
            ),
        );
    }
}

#[test]
fn unknown_fields_and_bad_json_in_the_configmap_are_named() {
    let dir = temp_dir("bad-input-unknown-field");
    let mut config = example_config();
    config["spec"]["topics"]["raw"]["partiton"] = json!(6);
    let path = write_config(&dir, &config);
    for (_, args) in workers_reading(&path, &dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails_with(
            &cilvest(&args, &[]),
            &format!(
                "failed to parse the worker configuration {}: unknown field spec.topics.raw.partiton",
                path.display()
            ),
        );
    }
    std::fs::write(&path, "{\"pipeline\": \"cilvest\",").expect("truncated config");
    for (_, args) in workers_reading(&path, &dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails_with(
            &cilvest(&args, &[]),
            &format!(
                "failed to parse the worker configuration {}: not valid JSON",
                path.display()
            ),
        );
    }
}

#[test]
fn the_producer_without_its_secret_says_what_is_missing() {
    let dir = temp_dir("bad-input-no-token");
    let path = write_config(&dir, &example_config());
    let config = path.display().to_string();
    let once = ["producer", "--config", config.as_str(), "--once"];
    // Neither the environment variable nor a mounted file.
    assert_fails_with(
        &cilvest(&once, &[]),
        "no X bearer token: set CILVEST_X_BEARER_TOKEN or pass --bearer-token-file",
    );
    // The Secret's file is not mounted.
    let token_file = dir.join("secret").join("bearer-token");
    let token_arg = token_file.display().to_string();
    let mut with_file = once.to_vec();
    with_file.extend(["--bearer-token-file", token_arg.as_str()]);
    assert_fails_with(
        &cilvest(&with_file, &[]),
        &format!("failed to read the X bearer token from {}", token_file.display()),
    );
    // The Secret's key is there but empty.
    std::fs::create_dir_all(token_file.parent().expect("parent")).expect("secret dir");
    std::fs::write(&token_file, "\n").expect("empty token");
    assert_fails_with(
        &cilvest(&with_file, &[]),
        "the X bearer token is empty or contains characters not allowed in an HTTP header",
    );
    // The Secret's key is empty in the environment too.
    assert_fails_with(
        &cilvest(&once, &[("CILVEST_X_BEARER_TOKEN", "")]),
        "the X bearer token is empty",
    );
}

/// Malformed tweets given to the demo (the same parser as the consumer and the daily job): every one is set aside
/// and counted, the good tweets are still reported, and nothing panics.
#[test]
fn malformed_tweets_are_rejected_and_counted_not_fatal() {
    let dir = temp_dir("bad-input-tweets");
    let good = |id: &str| json!({"id": id, "text": "beli saham", "created_at": "2026-11-01T02:00:00Z", "lang": "in"});
    let huge_text = "saham ".repeat(200_000);
    let mut lines: Vec<Vec<u8>> = vec![
        good("1").to_string().into_bytes(),
        b"{\"id\": \"2\", \"text\": ".to_vec(),
        json!({"id": 3, "text": "angka", "created_at": "2026-11-01T02:00:00Z"})
            .to_string()
            .into_bytes(),
        json!({"id": "4", "text": ["not", "text"], "created_at": "2026-11-01T02:00:00Z"})
            .to_string()
            .into_bytes(),
        json!({"text": "no id", "created_at": "2026-11-01T02:00:00Z"})
            .to_string()
            .into_bytes(),
        json!({"id": "5", "text": "no date"}).to_string().into_bytes(),
        json!({"id": "6", "text": "bad date", "created_at": "yesterday"})
            .to_string()
            .into_bytes(),
        json!({"id": "-7", "text": "negative id", "created_at": "2026-11-01T02:00:00Z"})
            .to_string()
            .into_bytes(),
        json!({"id": "123456789012345678901", "text": "21 digits", "created_at": "2026-11-01T02:00:00Z"})
            .to_string()
            .into_bytes(),
        json!({"tweet": null, "author_username": "budi"})
            .to_string()
            .into_bytes(),
        json!([good("8")]).to_string().into_bytes(),
        vec![0xff, 0xfe, b'{', b'}'],
        "[".repeat(100_000).into_bytes(),
        json!({"id": "9", "text": huge_text, "created_at": "2026-11-01T02:00:00Z", "lang": "in"})
            .to_string()
            .into_bytes(),
        good("10").to_string().into_bytes(),
    ];
    // Every line but the two good tweets is rejected, the one with a 1.2 MB text too: the demo's lake gets what the
    // consumer would write (one classification of lake records, `lake::record`, with its 1 MiB cap).
    let rejected = lines.len() as u64 - 2;
    let input = dir.join("tweets.jsonl");
    for line in &mut lines {
        line.push(b'\n');
    }
    std::fs::write(&input, lines.concat()).expect("input");
    let input_arg = input.display().to_string();
    let output = cilvest(&["demo", "--input", &input_arg, "--format", "json"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("json report");
    assert_eq!(report["rejectedRecords"], rejected, "{report}");
    assert_eq!(report["transform"]["kept"], 2, "{report}");
    assert_eq!(report["transform"]["perKeyword"]["saham"], 2, "{report}");
}

/// A record over the consumer's size limit lands whole in `rejected/` with the reason, and the tweets around it
/// in `raw/`: nothing is lost and the consumer goes on.
#[tokio::test]
async fn an_oversized_kafka_record_is_quarantined_in_rejected() {
    let bootstrap = kafka_bootstrap();
    let topic = unique("bad-input-oversized");
    let limit = (4 * MAX_RECORD_BYTES).to_string();
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("kafka admin client");
    // The broker's default limit is the consumer's; this topic allows more, as a misconfigured one might.
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &limit)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    assert!(created.iter().all(Result::is_ok), "create topic {topic}: {created:?}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", &limit)
        .create()
        .expect("kafka producer");
    let tweet = |id: u64| {
        json!({"tweet": {"id": id.to_string(), "text": "beli saham", "created_at": "2026-11-01T02:00:00Z"}}).to_string()
    };
    let oversized = json!({"tweet": {"id": "2", "text": "saham ".repeat(MAX_RECORD_BYTES / 5),
        "created_at": "2026-11-01T02:00:00Z"}})
    .to_string();
    for (key, payload) in [("1", tweet(1)), ("2", oversized.clone()), ("3", tweet(3))] {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }

    let dir = temp_dir("bad-input-oversized");
    let lake = dir.join("lake");
    let mut consumer = tokio::process::Command::new(env!("CARGO_BIN_EXE_cilvest"))
        .args([
            "--log-format",
            "text",
            "consumer",
            "--kafka-bootstrap",
            &bootstrap,
            "--topic",
            &topic,
        ])
        .args(["--group", &unique("bad-input-oversized-group")])
        .args(["--lake", &format!("file://{}", lake.display())])
        .args(["--flush-interval", "500ms", "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("consumer.log")).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("start cilvest consumer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (raw, rejected) = loop {
        let raw = read_tree(&lake.join("raw"));
        let rejected = read_tree(&lake.join("rejected"));
        if raw.len() == 2 && rejected.len() == 1 {
            break (raw, rejected);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 60 s raw/ has {} and rejected/ {} lines; consumer log:\n{}",
            raw.len(),
            rejected.len(),
            std::fs::read_to_string(dir.join("consumer.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    consumer.start_kill().expect("stop consumer");
    let _ = consumer.wait().await;
    let ids: Vec<&str> = raw.iter().filter_map(|line| line["tweet"]["id"].as_str()).collect();
    assert_eq!(ids, ["1", "3"]);
    assert_eq!(rejected[0]["record"], oversized.as_str(), "the record is kept whole");
    assert_eq!(
        rejected[0]["reason"],
        format!(
            "record of {} bytes is over the {MAX_RECORD_BYTES}-byte limit of a tweet envelope",
            oversized.len()
        )
    );
    let log = std::fs::read_to_string(dir.join("consumer.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// Every NDJSON line of every gzip object under `dir`, in path order.
fn read_tree(dir: &Path) -> Vec<Value> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let mut text = String::new();
        let Ok(bytes) = std::fs::read(&file) else { continue };
        // An object being written is skipped until it is complete.
        if GzDecoder::new(bytes.as_slice()).read_to_string(&mut text).is_err() {
            continue;
        }
        lines.extend(text.lines().filter_map(|line| serde_json::from_str(line).ok()));
    }
    lines
}
