//! The Dataproc engine's lifecycle against a contract-faithful fake of the Dataproc REST API
//! (`support::fake_dataproc`): every scenario, failed or not, ends with no cluster left and, where one is due, an
//! error that says what failed. The request bodies carry the lifecycle TTLs and the labels that let a later run
//! (and the cluster's own `autoDeleteTtl`) clean up after a crash. The last scenarios run the `cilvest daily`
//! binary: killed with SIGKILL mid-job and rerun, and stopped with SIGTERM.

mod support;

use std::{
    path::{Path as FsPath, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::NaiveDate;
use cilvest_crds::CilvestPipelineSpec;
use cilvest_workers::{
    google::auth::GoogleToken,
    google::dataproc::{self, Client, ClusterRequest, DataprocError, Polling, SparkJob},
    jobs::daily::{curated, raw},
    transform::Rules,
};
use object_store::{ObjectStore, local::LocalFileSystem};
use serde_json::{Value, json};
use support::{
    fake_dataproc::{FakeDataproc, Faults},
    unique,
};

const TOKEN: &str = "test-access-token";
const PROJECT: &str = "cilvest-test";
const REGION: &str = "asia-southeast2";
const DATE: &str = "2026-11-01";

fn date() -> NaiveDate {
    DATE.parse().expect("date")
}

/// `maxLifetime` of [`settings`], parsed.
const LIFETIME: Duration = Duration::from_secs(2 * 3600);

fn settings() -> cilvest_crds::Dataproc {
    serde_json::from_value(json!({
        "project": PROJECT,
        "region": REGION,
        "workers": 2,
        "workerMachineType": "n2-standard-4",
        "maxLifetime": "2h",
    }))
    .expect("dataproc settings")
}

fn client(fake: &FakeDataproc) -> Client {
    let mut client = Client::new(Some(&fake.url()), PROJECT, REGION, GoogleToken::fixed(TOKEN));
    client.polling = Polling {
        interval: Duration::from_millis(20),
        cluster_deadline: Duration::from_secs(5),
        job_deadline: Duration::from_millis(500),
    };
    client
}

fn request(run: &str) -> ClusterRequest {
    dataproc::cluster_request(&settings(), LIFETIME, "team-a", "demo", date(), run)
}

fn job() -> SparkJob {
    SparkJob {
        main_python_file_uri: "gs://cilvest-lake/tweets/jobs/transform-0123.py".into(),
        args: vec!["{}".into()],
    }
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

async fn scenario(faults: Faults) -> (FakeDataproc, Result<(), DataprocError>) {
    let fake = FakeDataproc::start(TOKEN, faults).await;
    let outcome = client(&fake).run_on_cluster(&request("r1"), &job(), never()).await;
    (fake, outcome)
}

fn assert_no_cluster(fake: &FakeDataproc) {
    assert!(fake.clusters().is_empty(), "clusters left: {:?}", fake.clusters());
}

fn deletes(fake: &FakeDataproc) -> Vec<(String, u16)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| (r.path, r.status))
        .collect()
}

#[tokio::test]
async fn a_successful_run_creates_a_self_deleting_labelled_cluster_and_deletes_it() {
    let (fake, outcome) = scenario(Faults::default()).await;
    outcome.expect("run");
    assert_no_cluster(&fake);
    let requests = fake.requests();
    let create = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/clusters"))
        .expect("clusters.create");
    let body = &create.body;
    assert_eq!(body["config"]["lifecycleConfig"]["autoDeleteTtl"], "7200s");
    assert_eq!(body["config"]["lifecycleConfig"]["idleDeleteTtl"], "600s");
    assert_eq!(
        body["labels"],
        json!({"cilvest-pipeline": "demo", "cilvest-namespace": "team-a", "cilvest-run-date": DATE, "managed-by": "cilvest"})
    );
    assert_eq!(body["config"]["workerConfig"]["numInstances"], 2);
    assert_eq!(body["config"]["workerConfig"]["machineTypeUri"], "n2-standard-4");
    assert!(create.query.contains_key("requestId"), "create is idempotent");
    let submit = requests
        .iter()
        .find(|r| r.path.ends_with("/jobs:submit"))
        .expect("jobs:submit");
    assert_eq!(submit.body["job"]["placement"]["clusterName"], body["clusterName"]);
    assert_eq!(
        submit.body["job"]["pysparkJob"]["mainPythonFileUri"],
        job().main_python_file_uri
    );
    assert_eq!(submit.body["job"]["labels"]["cilvest-pipeline"], "demo");
    // The leftover sweep asked for exactly this pipeline's clusters, in the API's filter syntax.
    let list = requests
        .iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/clusters"))
        .expect("list");
    assert_eq!(
        list.query["filter"],
        "labels.cilvest-namespace = team-a AND labels.cilvest-pipeline = demo"
    );
    assert_eq!(deletes(&fake).len(), 1);
}

#[tokio::test]
async fn the_cluster_runs_as_its_service_account_in_its_subnetwork_zone_and_disks() {
    let settings: cilvest_crds::Dataproc = serde_json::from_value(json!({
        "project": PROJECT,
        "region": REGION,
        "workers": 2,
        "maxLifetime": "2h",
        "vms": {
            "serviceAccount": "cilvest-dataproc@cilvest-test.iam.gserviceaccount.com",
            "subnetwork": format!("projects/{PROJECT}/regions/{REGION}/subnetworks/cilvest-jkt"),
            "internalIpOnly": true,
            "zone": format!("{REGION}-a"),
            "bootDiskType": "pd-balanced",
            "bootDiskSizeGb": 100,
        },
        "labels": {"cost-center": "markets", "cilvest-pipeline": "not-this"},
    }))
    .expect("dataproc settings");
    let request = dataproc::cluster_request(&settings, LIFETIME, "team-a", "demo", date(), "r9");
    let fake = FakeDataproc::start(TOKEN, Faults::default()).await;
    client(&fake)
        .run_on_cluster(&request, &job(), never())
        .await
        .expect("run");
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/clusters"))
        .expect("clusters.create");
    let gce = &create.body["config"]["gceClusterConfig"];
    assert_eq!(
        gce["serviceAccount"],
        "cilvest-dataproc@cilvest-test.iam.gserviceaccount.com"
    );
    assert_eq!(
        gce["serviceAccountScopes"],
        json!(["https://www.googleapis.com/auth/cloud-platform"])
    );
    assert_eq!(
        gce["subnetworkUri"],
        format!("projects/{PROJECT}/regions/{REGION}/subnetworks/cilvest-jkt")
    );
    assert_eq!(gce["internalIpOnly"], true);
    assert_eq!(gce["zoneUri"], format!("{REGION}-a"));
    for group in ["masterConfig", "workerConfig"] {
        let disk = &create.body["config"][group]["diskConfig"];
        assert_eq!(disk["bootDiskType"], "pd-balanced", "{group}");
        assert_eq!(disk["bootDiskSizeGb"], 100, "{group}");
    }
    // The spec's labels ride along; Cilvest's own win, since later runs find their clusters by them.
    assert_eq!(create.body["labels"]["cost-center"], "markets");
    assert_eq!(create.body["labels"]["cilvest-pipeline"], "demo");
    assert_no_cluster(&fake);
}

#[tokio::test]
async fn the_fake_refuses_a_field_the_dataproc_api_does_not_have() {
    let fake = FakeDataproc::start(TOKEN, Faults::default()).await;
    let mut request = dataproc::cluster_request(&settings(), LIFETIME, "team-a", "demo", date(), "r8");
    // `subnetwork` is the gcloud flag; the REST field is `subnetworkUri`.
    request.body["config"]["gceClusterConfig"] = json!({"subnetwork": "cilvest-jkt"});
    let err = client(&fake)
        .run_on_cluster(&request, &job(), never())
        .await
        .expect_err("an unknown field is refused");
    let text = err.to_string();
    assert!(
        text.contains("INVALID_ARGUMENT") && text.contains("Unknown name \"subnetwork\""),
        "{text}"
    );
    assert_no_cluster(&fake);
}

#[tokio::test]
async fn a_refused_create_fails_clearly_and_leaves_nothing() {
    let (fake, outcome) = scenario(Faults {
        create_refused: true,
        ..Faults::default()
    })
    .await;
    let err = outcome.expect_err("quota");
    assert!(matches!(err, DataprocError::ClusterFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("RESOURCE_EXHAUSTED") && err.to_string().contains("quota"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("failed to create dataproc cluster cilvest-demo-20261101-r1"),
        "{err}"
    );
    assert_no_cluster(&fake);
    // The delete after a refused create finds nothing, which is success.
    assert_eq!(deletes(&fake).iter().map(|d| d.1).collect::<Vec<_>>(), [404]);
}

#[tokio::test]
async fn a_cluster_in_error_is_deleted() {
    let (fake, outcome) = scenario(Faults {
        cluster_error: true,
        ..Faults::default()
    })
    .await;
    let err = outcome.expect_err("cluster error");
    assert!(matches!(err, DataprocError::ClusterFailed { .. }), "{err}");
    assert!(err.to_string().contains("Initialization action failed"), "{err}");
    assert_no_cluster(&fake);
    assert!(
        !fake.requests().iter().any(|r| r.path.ends_with("/jobs:submit")),
        "no job on a broken cluster"
    );
}

#[tokio::test]
async fn a_failed_job_fails_the_run_and_the_cluster_is_deleted() {
    let (fake, outcome) = scenario(Faults {
        job_fails: true,
        ..Faults::default()
    })
    .await;
    let err = outcome.expect_err("job error");
    assert!(
        matches!(err, DataprocError::JobFailed { ref state, .. } if state == "ERROR"),
        "{err}"
    );
    assert!(err.to_string().contains("Py4JJavaError"), "{err}");
    assert_no_cluster(&fake);
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_the_run_and_the_cluster_is_deleted() {
    let started = Instant::now();
    let (fake, outcome) = scenario(Faults {
        job_hangs: true,
        ..Faults::default()
    })
    .await;
    let err = outcome.expect_err("deadline");
    assert!(matches!(err, DataprocError::Deadline { .. }), "{err}");
    assert!(err.to_string().contains("did not finish within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_cluster(&fake);
    // Deleting the cluster ends its job too.
    assert!(fake.jobs().iter().all(|j| j.state == "ERROR"), "{:?}", fake.jobs());
}

#[tokio::test]
async fn a_delete_answering_5xx_once_is_retried() {
    let (fake, outcome) = scenario(Faults {
        delete_unavailable: 1,
        ..Faults::default()
    })
    .await;
    outcome.expect("run");
    assert_no_cluster(&fake);
    let statuses: Vec<u16> = deletes(&fake).iter().map(|d| d.1).collect();
    assert_eq!(statuses, [503, 200]);
}

#[tokio::test]
async fn a_delete_failing_for_good_is_an_error() {
    let (fake, outcome) = scenario(Faults {
        delete_unavailable: 100,
        ..Faults::default()
    })
    .await;
    let err = outcome.expect_err("delete keeps failing");
    assert!(matches!(err, DataprocError::DeleteFailed { .. }), "{err}");
    assert!(err.to_string().contains("UNAVAILABLE"), "{err}");
    // What remains is bounded by the cluster's own autoDeleteTtl.
    let left = fake.clusters();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body["config"]["lifecycleConfig"]["autoDeleteTtl"], "7200s");
}

#[tokio::test]
async fn leftovers_of_this_pipeline_are_deleted_first_and_others_are_left_alone() {
    let fake = FakeDataproc::start(TOKEN, Faults::default()).await;
    let labels = |namespace: &str, pipeline: &str| json!({"cilvest-namespace": namespace, "cilvest-pipeline": pipeline, "cilvest-run-date": "2026-10-31"});
    fake.add_running_cluster(PROJECT, REGION, "cilvest-demo-20261031-old", labels("team-a", "demo"));
    fake.add_running_cluster(
        PROJECT,
        REGION,
        "cilvest-demo-20261031-other-ns",
        labels("team-b", "demo"),
    );
    fake.add_running_cluster(PROJECT, REGION, "cilvest-news-20261031-other", labels("team-a", "news"));
    client(&fake)
        .run_on_cluster(&request("r2"), &job(), never())
        .await
        .expect("run");
    let left: Vec<String> = fake.clusters().into_iter().map(|c| c.name).collect();
    assert_eq!(left, ["cilvest-demo-20261031-other-ns", "cilvest-news-20261031-other"]);
    let requests = fake.requests();
    let deleted_old = requests
        .iter()
        .position(|r| r.method == "DELETE" && r.path.ends_with("/cilvest-demo-20261031-old"))
        .expect("leftover deleted");
    let created = requests
        .iter()
        .position(|r| r.method == "POST" && r.path.ends_with("/clusters"))
        .expect("create");
    assert!(
        deleted_old < created,
        "the leftover goes before a new cluster is created"
    );
}

#[tokio::test]
async fn a_shutdown_mid_job_deletes_the_cluster() {
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
    let mut client = client(&fake);
    client.polling.job_deadline = Duration::from_secs(60);
    let watcher = Arc::clone(&fake);
    let shutdown = async move {
        while !watcher.jobs().iter().any(|j| j.state == "RUNNING") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let err = client
        .run_on_cluster(&request("r3"), &job(), shutdown)
        .await
        .expect_err("terminated");
    assert!(matches!(err, DataprocError::Terminated { .. }), "{err}");
    assert_no_cluster(&fake);
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_error() {
    let fake = FakeDataproc::start("another-token", Faults::default()).await;
    let err = client(&fake)
        .run_on_cluster(&request("r4"), &job(), never())
        .await
        .expect_err("401");
    assert!(
        err.to_string().contains("401") && err.to_string().contains("UNAUTHENTICATED"),
        "{err}"
    );
    assert!(!err.to_string().contains(TOKEN), "the token never shows in errors");
}

#[tokio::test]
async fn serverless_batches_carry_a_ttl_identity_subnetwork_and_labels_and_report_failure() {
    let settings = cilvest_crds::DataprocServerless {
        project: PROJECT.to_owned(),
        region: REGION.to_owned(),
        max_lifetime: "2h".to_owned(),
        service_account: Some("cilvest-spark@cilvest-test.iam.gserviceaccount.com".to_owned()),
        subnetwork: Some("cilvest-jkt".to_owned()),
        labels: [("cost-center".to_owned(), cilvest_crds::LabelValue("markets".to_owned()))].into(),
    };
    let labels = dataproc::with_user_labels(dataproc::labels("team-a", "demo", date()), &settings.labels);
    let execution = || dataproc::batch_execution(&settings, Duration::from_secs(7200));
    let batch_id = dataproc::resource_name("demo", date(), "r5", 63);
    let fake = FakeDataproc::start(TOKEN, Faults::default()).await;
    client(&fake)
        .run_batch(&batch_id, &job(), &labels, execution(), never())
        .await
        .expect("batch");
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("batches.create");
    assert!(
        create
            .path
            .ends_with(&format!("/projects/{PROJECT}/locations/{REGION}/batches"))
    );
    assert_eq!(create.query["batchId"], batch_id);
    let sent = &create.body["environmentConfig"]["executionConfig"];
    assert_eq!(sent["ttl"], "7200s");
    assert_eq!(
        sent["serviceAccount"],
        "cilvest-spark@cilvest-test.iam.gserviceaccount.com"
    );
    assert_eq!(sent["subnetworkUri"], "cilvest-jkt");
    assert_eq!(create.body["labels"], labels);
    assert_eq!(create.body["labels"]["cost-center"], "markets");
    assert_eq!(
        create.body["pysparkBatch"]["mainPythonFileUri"],
        job().main_python_file_uri
    );

    let fake = FakeDataproc::start(
        TOKEN,
        Faults {
            batch_fails: true,
            ..Faults::default()
        },
    )
    .await;
    let err = client(&fake)
        .run_batch(&batch_id, &job(), &labels, execution(), never())
        .await
        .expect_err("batch failure");
    assert!(
        matches!(err, DataprocError::BatchFailed { ref state, .. } if state == "FAILED"),
        "{err}"
    );
    assert!(err.to_string().contains("ModuleNotFoundError"), "{err}");
    assert!(fake.clusters().is_empty());
}

#[test]
fn names_fit_the_api_limits_and_keep_the_run_suffix() {
    let long = "a-very-long-pipeline-name-that-goes-on-and-on-and-on";
    let name = dataproc::resource_name(long, date(), "0123456789", 51);
    assert!(name.len() <= 51 && name.ends_with("-20261101-0123456789"), "{name}");
    let request = dataproc::cluster_request(&settings(), LIFETIME, "ns", "Demo.Pipeline", date(), "r");
    assert_eq!(request.body["labels"]["cilvest-pipeline"], "demo-pipeline");
    assert!(dataproc::script_path().starts_with("jobs/transform-") && dataproc::script_path().ends_with(".py"));
}

// ---- the `cilvest daily` binary ----

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
