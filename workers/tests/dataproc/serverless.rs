//! The Dataproc Serverless engine: batches carry their TTL, identity, subnetwork and labels, and a failed batch fails
//! the run.

use std::time::Duration;

use cilvest_workers::google::dataproc::{self, DataprocError};

use super::{PROJECT, REGION, TOKEN, client, date, job, never};
use crate::support::fake_dataproc::{FakeDataproc, Faults};

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
