//! The Dataproc engine's lifecycle against a contract-faithful fake of the Dataproc REST API
//! (`support::fake_dataproc`): every scenario, failed or not, ends with no cluster left and, where one is due, an
//! error that says what failed. The request bodies carry the lifecycle TTLs and the labels that let a later run
//! (and the cluster's own `autoDeleteTtl`) clean up after a crash. The last scenarios run the `cilvest daily`
//! binary: killed with SIGKILL mid-job and rerun, and stopped with SIGTERM.

mod binary;
mod clusters;
mod serverless;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use chrono::NaiveDate;
use cilvest_workers::{
    google::auth::GoogleToken,
    google::dataproc::{self, Client, ClusterRequest, DataprocError, Polling, SparkJob},
};
use serde_json::json;

use support::fake_dataproc::{FakeDataproc, Faults};

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
