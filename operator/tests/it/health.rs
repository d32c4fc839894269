//! Health that tells the truth, against the real API server and controller manager: a failed daily run, a worker
//! that cannot start and X refusing the token each make the pipeline `Degraded` with its own reason, a Warning
//! Event and the `Degraded` printer column; fixing the cause clears it. Pod and Job status are patched where no
//! kubelet runs them (the real-node end-to-end test runs real pods); the rules on time (readiness for 10 minutes,
//! a day without a run) are unit tests in `src/health/tests.rs`.

use crate::common;

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ConfigMap, Pod},
};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use cilvest_crds::{
    CilvestPipeline,
    usage::{Rejection, UsageRecord},
};
use common::{
    Operator, STRIMZI_CRD, client, condition, create_token_secret, delete_namespace, install_crd, install_crds_yaml,
    kubectl, temp_namespace, wait_until,
};

const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/managed-by": "cilvest-operator",
        "app.kubernetes.io/component": component,
        "cilvest.io/pipeline": "minimal",
    })
}

/// A ready minimal pipeline in a new namespace, with its operator.
async fn ready_pipeline(test: &str) -> (Client, String, Api<CilvestPipeline>, Operator) {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    let ns = temp_namespace(&client, test).await;
    create_token_secret(&client, &ns).await;
    let operator = Operator::start(&ns, None);
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    let pipeline: CilvestPipeline = serde_saphyr::from_str(MINIMAL).expect("example");
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .expect("create pipeline");
    let topics: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "kafka.strimzi.io",
            "v1",
            "KafkaTopic",
        )),
    );
    wait_until("the raw topic", 60, || async {
        topics.get_opt("minimal-raw").await.ok()?
    })
    .await;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    topics
        .patch_status("minimal-raw", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("topic status");
    wait_until("the pipeline to become Ready", 90, || async {
        let p = pipelines.get("minimal").await.ok()?;
        (condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
    (client, ns, pipelines, operator)
}

async fn degraded_with(pipelines: &Api<CilvestPipeline>, reason: &str) -> (String, String) {
    wait_until(&format!("Degraded={reason}"), 60, || async {
        let p = pipelines.get("minimal").await.ok()?;
        let (status, found, message) = condition(&p, "Degraded")?;
        if status != "True" || found != reason {
            return None;
        }
        Some((p.status?.phase?, message))
    })
    .await
}

async fn healthy_again(pipelines: &Api<CilvestPipeline>) {
    wait_until("the pipeline to be Ready again", 90, || async {
        let p = pipelines.get("minimal").await.ok()?;
        (condition(&p, "Degraded")?.0 == "False" && condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
}

/// The Warning Events the operator published about the pipeline, by reason.
fn warnings(ns: &str, reason: &str) -> Vec<Value> {
    common::events(ns, "events.events.k8s.io")
        .into_iter()
        .filter(|e| e["reason"] == reason && e["type"] == "Warning" && e["regarding"]["kind"] == "CilvestPipeline")
        .collect()
}

#[tokio::test]
async fn a_failed_daily_run_degrades_the_pipeline_until_the_next_success() {
    let (client, ns, pipelines, operator) = ready_pipeline("health-daily").await;
    // The rest of the monthly spend, next to xUsage: the Google part of `cilvest-operator cost`.
    let cost = pipelines
        .get("minimal")
        .await
        .expect("pipeline")
        .status
        .and_then(|s| s.google_cost);
    let cost = cost.expect("status.googleCost");
    let usd: f64 = cost.estimated_monthly_usd.parse().expect("a number of dollars");
    assert!(usd > 0.0 && cost.basis.contains("posts a day"), "{cost:?}");
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    // A daily Job as the CronJob makes them, managed by no controller here (`managedBy`), so its status is ours.
    let job = |name: &str| -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels("daily")},
            "spec": {
                "managedBy": "cilvest.io/health-test",
                "template": {
                    "metadata": {"labels": labels("daily")},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "daily", "image": "cilvest:test"}]}
                }
            }
        }))
        .expect("job")
    };
    let finish = |condition: &str, message: &str| {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let interim = if condition == "Failed" {
            "FailureTarget"
        } else {
            "SuccessCriteriaMet"
        };
        let mut status = json!({
            "startTime": now,
            "conditions": [
                {"type": interim, "status": "True", "reason": "Test", "message": message, "lastTransitionTime": now},
                {"type": condition, "status": "True", "reason": "Test", "message": message, "lastTransitionTime": now}
            ]
        });
        if condition == "Complete" {
            status["completionTime"] = json!(now);
            status["succeeded"] = json!(1);
        } else {
            status["failed"] = json!(1);
        }
        json!({ "status": status })
    };
    jobs.create(&PostParams::default(), &job("minimal-daily-1"))
        .await
        .expect("create job");
    jobs.patch_status(
        "minimal-daily-1",
        &PatchParams::default(),
        &Patch::Merge(&finish("Failed", "BackoffLimitExceeded: BigQuery refused the load")),
    )
    .await
    .expect("fail the job");
    let (phase, message) = degraded_with(&pipelines, "DailyRunFailed").await;
    assert_eq!(phase, "Degraded");
    assert!(message.contains("BigQuery refused the load"), "{message}");
    // What the chart's alerts read (CilvestDailyRunFailed, CilvestPipelineDegraded).
    let series =
        |name: &str, extra: &str| format!(r#"cilvest_operator_{name}{{namespace="{ns}",pipeline="minimal"{extra}}} "#);
    let failed = series("daily_last_run_failed", "");
    let degraded = series("pipeline_degraded", r#",reason="DailyRunFailed""#);
    wait_until("the failed run in the operator's metrics", 30, || async {
        (operator.metric(&failed).await == 1.0 && operator.metric(&degraded).await == 1.0).then_some(())
    })
    .await;
    let events = warnings(&ns, "DailyRunFailed");
    assert_eq!(events.len(), 1, "one Warning Event per failed run: {events:?}");
    // `kubectl get cvp` shows it.
    let table = kubectl()
        .args(["get", "cvp", "minimal", "-n", &ns])
        .output()
        .expect("kubectl get cvp");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("DEGRADED") && table.contains("DailyRunFailed"),
        "{table}"
    );

    // The next run succeeds: the pipeline is Ready again.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    jobs.create(&PostParams::default(), &job("minimal-daily-2"))
        .await
        .expect("create job");
    jobs.patch_status(
        "minimal-daily-2",
        &PatchParams::default(),
        &Patch::Merge(&finish("Complete", "done")),
    )
    .await
    .expect("complete the job");
    healthy_again(&pipelines).await;
    wait_until("the success in the operator's metrics", 30, || async {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", operator.metrics_port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (text.contains(&format!("{failed}0")) && !text.contains("cilvest_operator_pipeline_degraded{")).then_some(())
    })
    .await;
    // The CronJob's last success, as CilvestDailyRunMissed reads it.
    let succeeded = k8s_openapi::jiff::Timestamp::now();
    let cron_jobs: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(client.clone(), &ns);
    cron_jobs
        .patch_status(
            "minimal-daily",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastSuccessfulTime": succeeded.to_string()}})),
        )
        .await
        .expect("cronjob status");
    let last_success = series("daily_last_success_timestamp_seconds", "");
    wait_until("the last success in the operator's metrics", 60, || async {
        (operator.metric(&last_success).await == succeeded.as_second() as f64).then_some(())
    })
    .await;
    // Every operator series the chart's alerts read is one of those served above.
    let seen: std::collections::BTreeSet<String> = [&failed, &degraded, &last_success]
        .iter()
        .filter_map(|s| s.split('{').next().map(str::to_owned))
        .collect();
    for name in common::alerts::alerted_series("cilvest_operator_") {
        assert!(
            seen.contains(&name),
            "the chart alerts on {name}, which this test never saw served: {seen:?}"
        );
    }
    drop(operator);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_worker_that_cannot_start_degrades_the_pipeline_with_the_pods_reason() {
    let (client, ns, pipelines, operator) = ready_pipeline("health-pod").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // A producer pod held back from scheduling (so no kwok node takes it), whose status says what a kubelet says of
    // a container that keeps exiting.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "minimal-producer-crash", "labels": labels("producer")},
        "spec": {
            "schedulingGates": [{"name": "cilvest.io/health-test"}],
            "containers": [{"name": "producer", "image": "cilvest:test"}]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let crash = json!({"status": {
        "phase": "Running",
        "containerStatuses": [{
            "name": "producer", "image": "cilvest:test", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "kafka: all brokers down"}}
        }]
    }});
    pods.patch_status("minimal-producer-crash", &PatchParams::default(), &Patch::Merge(&crash))
        .await
        .expect("pod status");
    let (_, message) = degraded_with(&pipelines, "CrashLoopBackOff").await;
    assert!(
        message.contains("minimal-producer-crash") && message.contains("kafka: all brokers down"),
        "{message}"
    );
    assert_eq!(warnings(&ns, "CrashLoopBackOff").len(), 1);
    pods.delete("minimal-producer-crash", &Default::default())
        .await
        .expect("delete pod");
    healthy_again(&pipelines).await;
    drop(operator);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn x_refusing_the_token_shows_as_x_unauthorized() {
    let (client, ns, pipelines, operator) = ready_pipeline("health-x").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // What the producer writes into its usage ConfigMap when X answers 401 (workers/tests/producer/).
    let refused = UsageRecord {
        month: k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m").to_string(),
        rejection: Some(Rejection {
            kind: "unauthorized".into(),
            message: "X rejected the bearer token (HTTP 401): Unauthorized".into(),
        }),
        ..UsageRecord::default()
    };
    let apply = PatchParams::apply(cilvest_crds::usage::USAGE_FIELD_MANAGER).force();
    let body = |record: &UsageRecord| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "minimal-x-usage"}, "data": record.to_data()});
    maps.patch("minimal-x-usage", &apply, &Patch::Apply(body(&refused)))
        .await
        .expect("usage");
    let (_, message) = degraded_with(&pipelines, "XUnauthorized").await;
    assert!(message.contains("HTTP 401"), "{message}");
    let answered = UsageRecord {
        rejection: None,
        ..refused
    };
    maps.patch("minimal-x-usage", &apply, &Patch::Apply(body(&answered)))
        .await
        .expect("usage");
    healthy_again(&pipelines).await;
    drop(operator);
    delete_namespace(&client, &ns).await;
}
