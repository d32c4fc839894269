//! The cluster engine through `dataproc::Client`: the created cluster (TTLs, labels, identity, network, disks), every
//! failure on the way, leftovers, a shutdown mid-job, a wrong token, and resource names within the API limits.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cilvest_workers::google::dataproc::{self, DataprocError};
use serde_json::json;

use super::{
    DATE, LIFETIME, PROJECT, REGION, TOKEN, assert_no_cluster, client, date, deletes, job, never, request, scenario,
    settings,
};
use crate::support::fake_dataproc::{FakeDataproc, Faults};

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

#[test]
fn names_fit_the_api_limits_and_keep_the_run_suffix() {
    let long = "a-very-long-pipeline-name-that-goes-on-and-on-and-on";
    let name = dataproc::resource_name(long, date(), "0123456789", 51);
    assert!(name.len() <= 51 && name.ends_with("-20261101-0123456789"), "{name}");
    let request = dataproc::cluster_request(&settings(), LIFETIME, "ns", "Demo.Pipeline", date(), "r");
    assert_eq!(request.body["labels"]["cilvest-pipeline"], "demo-pipeline");
    assert!(dataproc::script_path().starts_with("jobs/transform-") && dataproc::script_path().ends_with(".py"));
}
