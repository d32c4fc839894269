//! The `cilvest daily` binary on Dataproc: killed mid-job and rerun, stopped with SIGTERM, on Serverless with a failed
//! batch, and `cilvest dataproc-cleanup`.

use std::{
    path::{Path as FsPath, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use cilvest_crds::CilvestPipelineSpec;
use cilvest_workers::{
    google::dataproc,
    jobs::daily::{curated, raw},
    transform::Rules,
};
use object_store::{ObjectStore, local::LocalFileSystem};
use serde_json::{Value, json};

use super::{DATE, PROJECT, REGION, TOKEN, assert_no_cluster, date};
use crate::support::{
    fake_dataproc::{FakeDataproc, Faults},
    unique,
};

/// A lake holding the fixture day, and the native engine's output for it, which the fake's "cluster" writes.
struct BinarySetup {
    root: PathBuf,
    lake: PathBuf,
    config: PathBuf,
    kept: usize,
    parquet: Arc<Vec<u8>>,
    counts: Arc<String>,
}

fn spec_json(engine: &str) -> Value {
    json!({
        "keywords": [
            {"name": "saham", "terms": ["saham", "#saham"]},
            {"name": "reksadana", "terms": ["reksadana", "reksa dana"]},
            {"name": "sukuk", "terms": ["sukuk"]},
            {"name": "obligasi", "terms": ["obligasi", "SBN"]},
        ],
        "language": "in",
        "schedule": {"timeZone": "Asia/Jakarta"},
        "transform": {
            "engine": engine,
            "dataproc": {"project": PROJECT, "region": REGION, "maxLifetime": "2h"},
            "dataprocServerless": {"project": PROJECT, "region": REGION, "maxLifetime": "2h"},
        },
        "targets": {
            "lake": {"uri": "gs://cilvest-lake/tweets"},
            "bigquery": {"project": PROJECT, "dataset": "cilvest"},
        },
    })
}

async fn binary_setup(engine: &str) -> BinarySetup {
    let root = std::env::temp_dir().join(unique("cilvest-dataproc"));
    let lake = root.join("lake");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daily");
    let raw_dir = lake.join(format!("raw/dt={DATE}"));
    std::fs::create_dir_all(&raw_dir).expect("raw dir");
    for name in ["2026-11-01.a.ndjson", "2026-11-01.b.ndjson"] {
        std::fs::copy(fixtures.join(name), raw_dir.join(name)).expect("copy fixture");
    }
    let config = root.join("pipeline.json");
    let worker_config = json!({
        "pipeline": "demo",
        "namespace": "team-a",
        "kafkaBootstrap": "127.0.0.1:19092",
        "rawTopic": "cilvest.demo.raw",
        "consumerGroup": "cilvest.demo.lake",
        "spec": spec_json(engine),
    });
    std::fs::write(&config, worker_config.to_string()).expect("write config");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&lake).expect("lake"));
    let spec: CilvestPipelineSpec = serde_json::from_value(spec_json(engine)).expect("spec");
    let rules = Rules::new(&spec, chrono_tz::Asia::Jakarta);
    let (day, _) = raw::transform_day(&store, &rules, date()).await.expect("read day");
    let (rows, counts) = day.finish();
    // Playing the cluster: when the job succeeds, its output appears where the job's config said.
    let parquet = curated::encode(&rows).expect("encode");
    let counts = serde_json::to_string(&counts).expect("counts");
    BinarySetup {
        root,
        lake,
        config,
        kept: rows.len(),
        parquet: Arc::new(parquet),
        counts: Arc::new(counts),
    }
}

/// The fake's "cluster": when the job succeeds, write the precomputed Parquet and counts under the job's `out`,
/// mapped from the pipeline's `gs://` lake to the local one.
fn write_job_output(lake: &FsPath, parquet: &[u8], counts: &str, pyspark: &Value) {
    let config: Value = serde_json::from_str(pyspark["args"][0].as_str().expect("config arg")).expect("config json");
    let run = &config["runs"][0];
    assert_eq!(run["date"], DATE);
    assert_eq!(run["raw"], format!("gs://cilvest-lake/tweets/raw/dt={DATE}"));
    assert_eq!(config["timeZone"], "Asia/Jakarta");
    let out = run["out"].as_str().expect("out");
    let relative = out.strip_prefix("gs://cilvest-lake/tweets/").expect("out in the lake");
    let dir = lake.join(relative);
    std::fs::create_dir_all(dir.join("curated")).expect("curated dir");
    std::fs::create_dir_all(dir.join("counts")).expect("counts dir");
    std::fs::write(dir.join("curated/part-00000-abc.snappy.parquet"), parquet).expect("parquet");
    std::fs::write(dir.join("curated/_SUCCESS"), b"").expect("success marker");
    std::fs::write(dir.join("counts/part-00000"), counts).expect("counts");
}

fn daily_command(setup: &BinarySetup, fake: &FakeDataproc) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cilvest"));
    command
        .args([
            "--log-format",
            "text",
            "daily",
            "--date",
            DATE,
            "--skip-warehouse",
            "--skip-search",
        ])
        .arg("--config")
        .arg(&setup.config)
        .arg("--lake")
        .arg(format!("file://{}", setup.lake.display()))
        .arg("--termination-log")
        .arg(setup.root.join("termination-log"))
        .args(["--dataproc-endpoint", &fake.url(), "--dataproc-poll-interval", "50ms"])
        .env("CILVEST_GCP_ACCESS_TOKEN", TOKEN)
        .env_remove("CILVEST_LAKE")
        .env_remove("CILVEST_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Files (not folders) below `dir`: the local lake leaves empty folders behind where GCS has none.
fn files_under(dir: &FsPath) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| e.expect("entry").path())
            .map(|path| if path.is_dir() { files_under(&path) } else { 1 })
            .sum()
    })
}

fn termination_message(setup: &BinarySetup) -> Value {
    serde_json::from_slice(&std::fs::read(setup.root.join("termination-log")).expect("termination log"))
        .expect("termination message json")
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_killed_mid_job_and_rerun_deletes_the_leftover_then_succeeds() {
    let setup = binary_setup("dataproc").await;
    let fake = Arc::new(
        FakeDataproc::start(
            TOKEN,
            Faults {
                job_hangs: true,
                ..Faults::default()
            },
        )
        .await,
    );
    let (lake, parquet, counts) = (
        setup.lake.clone(),
        Arc::clone(&setup.parquet),
        Arc::clone(&setup.counts),
    );
    fake.on_done(Arc::new(move |pyspark: &Value| {
        write_job_output(&lake, &parquet, &counts, pyspark)
    }));

    let mut first = daily_command(&setup, &fake).spawn().expect("start cilvest daily");
    wait_for("the job to run", || fake.jobs().iter().any(|j| j.state == "RUNNING")).await;
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let leftover: Vec<String> = fake.clusters().into_iter().map(|c| c.name).collect();
    assert_eq!(leftover.len(), 1, "a SIGKILL leaves the cluster: {leftover:?}");
    let leftover = leftover[0].clone();

    fake.set_faults(Faults::default());
    let output = tokio::task::spawn_blocking({
        let mut command = daily_command(&setup, &fake);
        move || command.output()
    })
    .await
    .expect("join")
    .expect("rerun");
    assert!(
        output.status.success(),
        "rerun failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_cluster(&fake);
    let requests = fake.requests();
    let deleted = requests
        .iter()
        .position(|r| r.method == "DELETE" && r.path.ends_with(&format!("/{leftover}")))
        .expect("the rerun deleted the leftover");
    let last_create = requests
        .iter()
        .rposition(|r| r.method == "POST" && r.path.ends_with("/clusters"))
        .expect("create");
    assert!(
        deleted < last_create,
        "the leftover is deleted before the new cluster is created"
    );

    // The rest of the day ran on the job's rows: curated Parquet in the usual place, and the report.
    let part = setup.lake.join(format!("curated/dt={DATE}/part-00000.parquet"));
    let rows = curated::decode(std::fs::read(&part).expect("curated part").into()).expect("decode");
    assert_eq!(rows.len(), setup.kept);
    assert!(setup.kept > 5);
    let message = termination_message(&setup);
    assert_eq!(message["result"], "Succeeded", "{message}");
    let script = setup.lake.join(dataproc::script_path());
    assert_eq!(
        std::fs::read_to_string(script).expect("uploaded script"),
        dataproc::TRANSFORM_PY
    );
    assert_eq!(
        files_under(&setup.lake.join("jobs/out")),
        0,
        "the job's scratch output is removed"
    );
    let _ = std::fs::remove_dir_all(&setup.root);
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_stopped_with_sigterm_deletes_its_cluster_before_exiting() {
    let setup = binary_setup("dataproc").await;
    let fake = FakeDataproc::start(
        TOKEN,
        Faults {
            job_hangs: true,
            ..Faults::default()
        },
    )
    .await;
    let mut child = daily_command(&setup, &fake).spawn().expect("start cilvest daily");
    wait_for("the job to run", || fake.jobs().iter().any(|j| j.state == "RUNNING")).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(!status.success(), "a terminated run fails");
    assert_no_cluster(&fake);
    let message = termination_message(&setup);
    assert_eq!(message["result"], "Failed", "{message}");
    assert!(
        message["message"].as_str().unwrap_or("").contains("terminated"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&setup.root);
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_on_dataproc_serverless_reports_a_failed_batch() {
    let setup = binary_setup("dataprocServerless").await;
    let fake = FakeDataproc::start(
        TOKEN,
        Faults {
            batch_fails: true,
            ..Faults::default()
        },
    )
    .await;
    let output = tokio::task::spawn_blocking({
        let mut command = daily_command(&setup, &fake);
        move || command.output()
    })
    .await
    .expect("join")
    .expect("run");
    assert!(!output.status.success());
    let message = termination_message(&setup);
    assert_eq!(message["result"], "Failed", "{message}");
    assert!(message["message"].as_str().unwrap_or("").contains("batch"), "{message}");
    assert!(fake.clusters().is_empty());
    assert!(
        !setup
            .lake
            .join(format!("curated/dt={DATE}/part-00000.parquet"))
            .exists(),
        "no curated data from a failed batch"
    );
    let _ = std::fs::remove_dir_all(&setup.root);
}

#[tokio::test]
async fn the_cleanup_command_deletes_only_this_pipelines_clusters() {
    let fake = FakeDataproc::start(TOKEN, Faults::default()).await;
    let labels =
        |namespace: &str, pipeline: &str| json!({"cilvest-namespace": namespace, "cilvest-pipeline": pipeline});
    fake.add_running_cluster(PROJECT, REGION, "cilvest-demo-a", labels("team-a", "demo"));
    fake.add_running_cluster(PROJECT, REGION, "cilvest-demo-b", labels("team-a", "demo"));
    fake.add_running_cluster(PROJECT, REGION, "cilvest-demo-other-ns", labels("team-b", "demo"));
    let output = tokio::task::spawn_blocking({
        let url = fake.url();
        move || {
            Command::new(env!("CARGO_BIN_EXE_cilvest"))
                .args([
                    "--log-format",
                    "text",
                    "dataproc-cleanup",
                    "--project",
                    PROJECT,
                    "--region",
                    REGION,
                ])
                .args([
                    "--namespace",
                    "team-a",
                    "--pipeline",
                    "demo",
                    "--dataproc-endpoint",
                    &url,
                ])
                .env("CILVEST_GCP_ACCESS_TOKEN", TOKEN)
                .output()
                .expect("run cilvest dataproc-cleanup")
        }
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cleanup failed: {stderr}");
    assert!(!stderr.contains(TOKEN), "the token leaked: {stderr}");
    let left: Vec<String> = fake.clusters().into_iter().map(|c| c.name).collect();
    assert_eq!(left, ["cilvest-demo-other-ns"]);
}
