//! Kafka with authentication, as on a Strimzi listener that requires it, against the real broker's SCRAM
//! (SASL_SSL, SCRAM-SHA-512) and MTLS (client certificate) listeners (`scripts/testenv.d/kafka.sh`).
//!
//! Each worker connects as its own user, holding exactly the ACLs of `cilvest_crds::kafka_access::grants`, which
//! is what the operator writes into its `KafkaUser`s; the test plays Strimzi's User Operator (SCRAM credentials
//! and ACLs through Kafka's own admin tools, client certificates signed by the test CA). The workers get their
//! identity the way the operator's Deployments give it: the `CILVEST_KAFKA_*` environment.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use cilvest_crds::{
    WorkerConfig,
    kafka_access::{self, CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV, PASSWORD_ENV, ResourceType, Role, USERNAME_ENV},
};
use support::{count_lines, create_topic, kafka_bootstrap, path_str, service_env, topic_records, unique};

const BIN: &str = env!("CARGO_BIN_EXE_cilvest");

struct Secure {
    scram: String,
    mtls: String,
    tls_dir: PathBuf,
    home: PathBuf,
}

fn secure() -> Secure {
    Secure {
        scram: service_env("CILVEST_KAFKA_SCRAM_BOOTSTRAP", "kafka"),
        mtls: service_env("CILVEST_KAFKA_MTLS_BOOTSTRAP", "kafka"),
        tls_dir: service_env("CILVEST_KAFKA_TLS_DIR", "kafka").into(),
        home: service_env("CILVEST_KAFKA_HOME", "kafka").into(),
    }
}

impl Secure {
    fn ca(&self) -> PathBuf {
        self.tls_dir.join("ca.crt")
    }

    /// Run one of Kafka's admin tools against the plaintext listener, whose anonymous principal is a super user.
    fn admin(&self, class: &str, args: &[&str]) {
        let output = Command::new(self.home.join("bin/kafka-run-class"))
            .arg(class)
            .args(["--bootstrap-server", &kafka_bootstrap()])
            .args(args)
            .output()
            .expect("run a Kafka admin tool");
        assert!(
            output.status.success(),
            "{class} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// What the User Operator does for a KafkaUser: its ACLs for `principal`, as `grants` lists them.
    fn grant(&self, principal: &str, role: Role, config: &WorkerConfig) {
        for grant in kafka_access::grants(role, config) {
            let mut args = vec![
                "--add",
                "--allow-principal",
                principal,
                "--resource-pattern-type",
                "literal",
            ];
            args.push(match grant.resource {
                ResourceType::Topic => "--topic",
                ResourceType::Group => "--group",
            });
            args.push(&grant.name);
            for operation in grant.operations {
                args.extend(["--operation", operation]);
            }
            self.admin("org.apache.kafka.tools.AclCommand", &args);
        }
    }

    /// A SCRAM-SHA-512 user with `password` (the Secret's `password` key).
    fn scram_user(&self, user: &str, password: &str) {
        let config = format!("SCRAM-SHA-512=[iterations=4096,password={password}]");
        self.admin(
            "org.apache.kafka.tools.ConfigCommand",
            &[
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                user,
                "--add-config",
                &config,
            ],
        );
    }

    /// A client certificate with subject `CN=<user>`, signed by the test CA (Strimzi's clients CA does the same).
    fn client_certificate(&self, user: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let (key, csr, crt) = (dir.join("user.key"), dir.join("user.csr"), dir.join("user.crt"));
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let subject = format!("/CN={user}");
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subject,
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&csr),
        ]);
        let (ca_crt, ca_key) = (self.tls_dir.join("ca.crt"), self.tls_dir.join("ca.key"));
        openssl(&[
            "x509",
            "-req",
            "-sha256",
            "-days",
            "2",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&ca_crt),
            "-CAkey",
            path_str(&ca_key),
            "-CAcreateserial",
            "-CAserial",
            path_str(&dir.join("ca.srl")),
            "-out",
            path_str(&crt),
        ]);
        (crt, key)
    }
}

/// A pipeline whose raw topic exists, with a replay file of `count` Indonesian tweets.
struct Pipeline {
    dir: PathBuf,
    config: PathBuf,
    replay: PathBuf,
    topic: String,
    name: String,
}

async fn pipeline(count: u64) -> Pipeline {
    let name = unique("auth");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("test dir");
    let topic = format!("cilvest.{name}.raw");
    let group = format!("cilvest.{name}.lake");
    assert_eq!(kafka_access::resume_group(&name), format!("cilvest.{name}.resume"));
    create_topic(&kafka_bootstrap(), &topic, 2).await;
    let config = json!({
        "pipeline": name, "namespace": "default", "kafkaBootstrap": "unused:9093", "rawTopic": topic,
        "consumerGroup": group,
        "spec": {
            "keywords": [{"name": "saham", "terms": ["saham"]}],
            "source": {"x": {"pollInterval": "60s"}},
            "kafka": {"strimziCluster": "cilvest", "listener": {"port": 9093, "tls": true, "authentication": "scram-sha-512"}},
            "topics": {"raw": {"name": topic, "partitions": 2}},
            "targets": {"lake": {"uri": "gs://cilvest-lake/tweets"}, "bigquery": {"project": "cilvest-test", "dataset": "cilvest"}}
        }
    });
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let lines: Vec<String> = (0..count)
        .map(|i| {
            json!({"id": (1_860_000_000_000_000_000 + i * 4096).to_string(), "text": format!("beli saham {i}"),
                   "created_at": "2026-11-02T03:04:05.000Z", "lang": "in", "author_id": "7", "author_username": "investor"})
            .to_string()
        })
        .collect();
    let replay = dir.join("tweets.jsonl");
    std::fs::write(&replay, lines.join("\n") + "\n").expect("replay file");
    Pipeline {
        dir,
        config: config_path,
        replay,
        topic,
        name,
    }
}

impl Pipeline {
    fn worker_config(&self) -> WorkerConfig {
        WorkerConfig::from_json(&std::fs::read(&self.config).expect("config")).expect("a worker configuration")
    }
}

/// The environment the operator's Deployment gives a worker.
type Identity = Vec<(&'static str, String)>;

fn scram_identity(secure: &Secure, user: &str, password: &str) -> Identity {
    vec![
        (CA_FILE_ENV, path_str(&secure.ca()).to_owned()),
        (USERNAME_ENV, user.to_owned()),
        (PASSWORD_ENV, password.to_owned()),
    ]
}

fn worker(args: &[&str], bootstrap: &str, identity: &Identity) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--kafka-bootstrap", bootstrap, "--metrics-addr", "127.0.0.1:0"])
        .env("CILVEST_LOG_FORMAT", "text")
        .env("RUST_LOG", "info,rdkafka=warn")
        .env_remove("CILVEST_KAFKA_BOOTSTRAP");
    for (name, value) in identity {
        command.env(name, value);
    }
    command
}

/// `cilvest producer --once` over the replay file, killed after `limit`.
fn produce(pipeline: &Pipeline, bootstrap: &str, identity: &Identity, limit: Duration) -> (bool, String) {
    let args = [
        "producer",
        "--config",
        path_str(&pipeline.config),
        "--source",
        "replay",
        "--replay-file",
        path_str(&pipeline.replay),
        "--once",
    ];
    let child = worker(&args, bootstrap, identity)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cilvest producer");
    let output = wait_with_limit(child, limit);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> Output {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait for the worker").is_some() {
            return child.wait_with_output().expect("worker output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().expect("worker output")
}

/// Run the consumer until `count` records are in its local lake (or `limit` passes); the lines it landed.
fn consume(pipeline: &Pipeline, bootstrap: &str, identity: &Identity, count: i64, limit: Duration) -> (i64, String) {
    let lake = pipeline.dir.join("lake");
    let log = pipeline.dir.join("consumer.log");
    let args = [
        "consumer",
        "--config",
        path_str(&pipeline.config),
        "--lake",
        &format!("file://{}", path_str(&lake)),
        "--flush-interval",
        "1s",
    ];
    let mut child = worker(&args, bootstrap, identity)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("consumer log"))
        .spawn()
        .expect("start cilvest consumer");
    let started = Instant::now();
    while started.elapsed() < limit && count_lines(&lake) < count {
        if child.try_wait().expect("wait for the consumer").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    (count_lines(&lake), std::fs::read_to_string(&log).unwrap_or_default())
}

/// The producer run failed, naming Kafka's refusal and `reason`.
fn assert_refused(ok: bool, log: &str, reason: &str) {
    assert!(!ok, "the producer succeeded:\n{log}");
    assert!(
        log.contains("kafka refused this worker") && log.contains(reason),
        "{log}"
    );
}

#[tokio::test]
async fn scram_over_tls_each_worker_as_its_own_user_with_only_its_acls() {
    let secure = secure();
    let pipeline = pipeline(40).await;
    let producer_user = kafka_access::user_name(&pipeline.name, Role::Producer);
    let consumer_user = kafka_access::user_name(&pipeline.name, Role::Consumer);
    let (producer_password, consumer_password) = (unique("pw-p"), unique("pw-c"));
    secure.scram_user(&producer_user, &producer_password);
    secure.scram_user(&consumer_user, &consumer_password);
    for (user, role) in [(&producer_user, Role::Producer), (&consumer_user, Role::Consumer)] {
        let principal = kafka_access::principal(user, cilvest_crds::KafkaAuthentication::ScramSha512);
        secure.grant(&principal, role, &pipeline.worker_config());
    }
    let as_producer = scram_identity(&secure, &producer_user, &producer_password);
    let as_consumer = scram_identity(&secure, &consumer_user, &consumer_password);

    // The producer publishes every tweet; a second run resumes from the topic's tail (which its Read ACL allows)
    // and publishes none again.
    for run in 0..2 {
        let (ok, log) = produce(&pipeline, &secure.scram, &as_producer, Duration::from_secs(90));
        assert!(ok, "producer run {run} failed:\n{log}");
        assert!(!log.contains(&producer_password), "the password reached the log");
        assert_eq!(
            topic_records(&kafka_bootstrap(), &pipeline.topic).await.len(),
            40,
            "after run {run}"
        );
    }

    // The consumer lands them in the lake through its own group.
    let (landed, log) = consume(&pipeline, &secure.scram, &as_consumer, 40, Duration::from_secs(90));
    assert_eq!(landed, 40, "consumer log:\n{log}");
    assert!(!log.contains(&consumer_password), "the password reached the log");

    // The consumer's user may not act as the producer: run as the consumer, the producer stops with Kafka's
    // refusal named (of the resume group, or of the topic's Write) and adds nothing.
    let (ok, log) = produce(&pipeline, &secure.scram, &as_consumer, Duration::from_secs(90));
    assert_refused(ok, &log, "authorization failed");
    assert_eq!(topic_records(&kafka_bootstrap(), &pipeline.topic).await.len(), 40);

    // Even allowed to find the topic's tail, a user without Write is refused on its first send (of a tweet newer
    // than the topic's).
    let newer = json!({"id": "1860000000001000000", "text": "jual saham", "created_at": "2026-11-02T04:00:00.000Z",
                       "lang": "in", "author_id": "7", "author_username": "investor"});
    let mut replay = std::fs::read_to_string(&pipeline.replay).expect("replay file");
    replay.push_str(&format!("{newer}\n"));
    std::fs::write(&pipeline.replay, replay).expect("replay file");
    let reader = format!("{consumer_user}-reader");
    secure.scram_user(&reader, &consumer_password);
    let principal = kafka_access::principal(&reader, cilvest_crds::KafkaAuthentication::ScramSha512);
    secure.grant(&principal, Role::Consumer, &pipeline.worker_config());
    secure.admin(
        "org.apache.kafka.tools.AclCommand",
        &[
            "--add",
            "--allow-principal",
            &principal,
            "--group",
            &kafka_access::resume_group(&pipeline.name),
            "--operation",
            "Describe",
        ],
    );
    let as_reader = scram_identity(&secure, &reader, &consumer_password);
    let (ok, log) = produce(&pipeline, &secure.scram, &as_reader, Duration::from_secs(90));
    // Without Write on any topic, Kafka refuses the idempotent producer its id (cluster authorization).
    assert_refused(ok, &log, "authorization failed");
    assert_eq!(topic_records(&kafka_bootstrap(), &pipeline.topic).await.len(), 40);

    // A wrong password is named as an authentication failure, not waited out silently.
    let wrong = scram_identity(&secure, &producer_user, "not-the-password");
    let (ok, log) = produce(&pipeline, &secure.scram, &wrong, Duration::from_secs(90));
    assert_refused(ok, &log, "SASL authentication error");
    assert!(!log.contains("not-the-password"), "the password reached the log");
}

#[tokio::test]
async fn mutual_tls_identifies_each_worker_by_its_certificate() {
    let secure = secure();
    let pipeline = pipeline(25).await;
    let mut identities = Vec::new();
    for role in Role::ALL {
        let user = kafka_access::user_name(&pipeline.name, role);
        let dir = pipeline.dir.join(role.component());
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let (crt, key) = secure.client_certificate(&user, &dir);
        let principal = kafka_access::principal(&user, cilvest_crds::KafkaAuthentication::Tls);
        secure.grant(&principal, role, &pipeline.worker_config());
        identities.push(vec![
            (CA_FILE_ENV, path_str(&secure.ca()).to_owned()),
            (CERT_FILE_ENV, path_str(&crt).to_owned()),
            (KEY_FILE_ENV, path_str(&key).to_owned()),
        ]);
    }
    let (ok, log) = produce(&pipeline, &secure.mtls, &identities[0], Duration::from_secs(90));
    assert!(ok, "producer failed:\n{log}");
    assert_eq!(topic_records(&kafka_bootstrap(), &pipeline.topic).await.len(), 25);
    let (landed, log) = consume(&pipeline, &secure.mtls, &identities[1], 25, Duration::from_secs(90));
    assert_eq!(landed, 25, "consumer log:\n{log}");

    // Without a client certificate the listener refuses the connection: the worker names the failure.
    let anonymous = vec![(CA_FILE_ENV, path_str(&secure.ca()).to_owned())];
    let (ok, log) = produce(&pipeline, &secure.mtls, &anonymous, Duration::from_secs(90));
    assert_refused(ok, &log, "bad certificate");
    assert_eq!(topic_records(&kafka_bootstrap(), &pipeline.topic).await.len(), 25);
}

#[test]
fn a_missing_password_or_certificate_file_is_named_before_connecting() {
    let dir = std::env::temp_dir().join(unique("auth-files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("pipeline.json");
    std::fs::write(
        &config,
        json!({"pipeline": "p", "namespace": "default", "kafkaBootstrap": "127.0.0.1:1", "rawTopic": "t",
               "consumerGroup": "g", "spec": {"keywords": [{"name": "saham", "terms": ["saham"]}],
               "targets": {"lake": {"uri": "gs://b/l"}, "bigquery": {"project": "cilvest-test", "dataset": "d"}}}})
        .to_string(),
    )
    .expect("config");
    let lake = format!("file://{}", path_str(&dir.join("lake")));
    let args = ["consumer", "--config", path_str(&config), "--lake", &lake];
    let no_password: Identity = vec![(USERNAME_ENV, "p-kafka-consumer".to_owned())];
    let output = worker(&args, "127.0.0.1:1", &no_password)
        .env_remove(PASSWORD_ENV)
        .output()
        .expect("consumer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(PASSWORD_ENV) && stderr.contains("p-kafka-consumer"),
        "{stderr}"
    );

    let no_ca: Identity = vec![(CA_FILE_ENV, "/var/run/cilvest/kafka-ca/ca.crt".to_owned())];
    let output = worker(&args, "127.0.0.1:1", &no_ca).output().expect("consumer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("kafka CA file /var/run/cilvest/kafka-ca/ca.crt"),
        "{stderr}"
    );
}
