//! Unit tests of `health`: each rule fires on what it names, and not on a healthy pipeline.

use k8s_openapi::{
    api::{
        apps::v1::{DeploymentCondition, DeploymentStatus},
        batch::v1::{CronJobSpec, CronJobStatus},
        core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
        },
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn healthy<'a>(now: Timestamp) -> Observed<'a> {
    Observed {
        now,
        suspended: false,
        last_run: None,
        cron_job: None,
        deployments: &[],
        pods: &[],
        usage: None,
        kibana_import: None,
    }
}

fn pod(name: &str, labels: &[(&str, &str)], status: PodStatus) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..ObjectMeta::default()
        },
        status: Some(status),
        ..Pod::default()
    }
}

fn crash_looping(name: &str, labels: &[(&str, &str)]) -> Pod {
    pod(
        name,
        labels,
        PodStatus {
            phase: Some("Running".to_owned()),
            container_statuses: Some(vec![ContainerStatus {
                name: "producer".to_owned(),
                restart_count: 5,
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".to_owned()),
                        message: Some("back-off 2m40s restarting failed container".to_owned()),
                    }),
                    ..ContainerState::default()
                }),
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 2,
                        reason: Some("Error".to_owned()),
                        message: Some("kafka bootstrap unreachable".to_owned()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        },
    )
}

fn cron_job(created: &str, last_schedule: Option<&str>, suspend: bool) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("p-daily".to_owned()),
            creation_timestamp: Some(Time(at(created))),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            suspend: Some(suspend),
            ..CronJobSpec::default()
        }),
        status: Some(CronJobStatus {
            last_schedule_time: last_schedule.map(|t| Time(at(t))),
            ..CronJobStatus::default()
        }),
    }
}

#[test]
fn a_healthy_pipeline_has_no_problem() {
    let now = at("2026-12-04T10:00:00Z");
    let run = DailyRun {
        date: "2026-12-03".into(),
        result: "Succeeded".into(),
        ..DailyRun::default()
    };
    let cron = cron_job("2026-11-01T00:00:00Z", Some("2026-12-04T01:00:00Z"), false);
    let usage = UsageRecord::default();
    let seen = Observed {
        last_run: Some(&run),
        cron_job: Some(&cron),
        usage: Some(&usage),
        ..healthy(now)
    };
    assert_eq!(problem(&seen), None);
}

#[test]
fn a_failed_run_names_its_date_and_error_and_the_next_success_clears_it() {
    let now = at("2026-12-04T10:00:00Z");
    let failed = DailyRun {
        date: "2026-12-03".into(),
        result: "Failed".into(),
        message: Some("BigQuery load failed: HTTP 403".into()),
        ..DailyRun::default()
    };
    let found = problem(&Observed {
        last_run: Some(&failed),
        ..healthy(now)
    })
    .expect("a problem");
    assert_eq!(found.reason, "DailyRunFailed");
    assert!(
        found.message.contains("2026-12-03") && found.message.contains("HTTP 403"),
        "{}",
        found.message
    );
    let succeeded = DailyRun {
        result: "Succeeded".into(),
        ..failed
    };
    assert_eq!(
        problem(&Observed {
            last_run: Some(&succeeded),
            ..healthy(now)
        }),
        None
    );
}

#[test]
fn a_cron_job_that_started_nothing_for_a_day_missed_a_run_unless_suspended_or_new() {
    let now = at("2026-12-04T10:00:00Z");
    let stale = cron_job("2026-11-01T00:00:00Z", Some("2026-12-02T01:00:00Z"), false);
    let found = problem(&Observed {
        cron_job: Some(&stale),
        ..healthy(now)
    })
    .expect("missed");
    assert_eq!(found.reason, "DailyRunMissed");
    assert!(found.message.contains("p-daily"), "{}", found.message);
    let never = cron_job("2026-12-01T00:00:00Z", None, false);
    assert_eq!(
        problem(&Observed {
            cron_job: Some(&never),
            ..healthy(now)
        })
        .map(|p| p.reason),
        Some("DailyRunMissed".to_owned())
    );
    let young = cron_job("2026-12-04T00:00:00Z", None, false);
    let suspended = cron_job("2026-11-01T00:00:00Z", Some("2026-12-02T01:00:00Z"), true);
    for cron in [&young, &suspended] {
        assert_eq!(
            problem(&Observed {
                cron_job: Some(cron),
                ..healthy(now)
            }),
            None
        );
    }
    assert_eq!(
        problem(&Observed {
            cron_job: Some(&stale),
            suspended: true,
            ..healthy(now)
        }),
        None
    );
}

#[test]
fn a_crash_looping_worker_is_named_with_its_last_exit_but_a_daily_pod_is_not_judged() {
    let now = at("2026-12-04T10:00:00Z");
    let pods = [crash_looping(
        "p-producer-1",
        &[("app.kubernetes.io/component", "producer")],
    )];
    let found = problem(&Observed {
        pods: &pods,
        ..healthy(now)
    })
    .expect("a problem");
    assert_eq!(found.reason, "CrashLoopBackOff");
    for part in [
        "p-producer-1",
        "restarted 5 times",
        "last exit 2",
        "kafka bootstrap unreachable",
    ] {
        assert!(found.message.contains(part), "{part} missing from {}", found.message);
    }
    let daily = [crash_looping("p-daily-1-abc", &[("job-name", "p-daily-1")])];
    assert_eq!(
        problem(&Observed {
            pods: &daily,
            ..healthy(now)
        }),
        None
    );
}

#[test]
fn readiness_failing_counts_only_after_the_grace() {
    let unready = |since: &str| {
        pod(
            "p-consumer-1",
            &[],
            PodStatus {
                phase: Some("Running".to_owned()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: "False".to_owned(),
                    last_transition_time: Some(Time(at(since))),
                    message: Some("containers with unready status: [consumer]".to_owned()),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            },
        )
    };
    let now = at("2026-12-04T10:00:00Z");
    let long = [unready("2026-12-04T09:40:00Z")];
    assert_eq!(
        problem(&Observed {
            pods: &long,
            ..healthy(now)
        })
        .map(|p| p.reason),
        Some("ReadinessFailing".to_owned())
    );
    let short = [unready("2026-12-04T09:55:00Z")];
    assert_eq!(
        problem(&Observed {
            pods: &short,
            ..healthy(now)
        }),
        None
    );
}

#[test]
fn a_deployment_past_its_progress_deadline_is_degraded() {
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some("p-consumer".to_owned()),
            ..ObjectMeta::default()
        },
        status: Some(DeploymentStatus {
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".to_owned(),
                status: "False".to_owned(),
                reason: Some("ProgressDeadlineExceeded".to_owned()),
                message: Some("ReplicaSet \"p-consumer-5d\" has timed out progressing.".to_owned()),
                ..DeploymentCondition::default()
            }]),
            ..DeploymentStatus::default()
        }),
        ..Deployment::default()
    };
    let found = problem(&Observed {
        deployments: std::slice::from_ref(&deployment),
        ..healthy(at("2026-12-04T10:00:00Z"))
    })
    .expect("a problem");
    assert_eq!(found.reason, "ProgressDeadlineExceeded");
    assert!(found.message.contains("p-consumer"), "{}", found.message);
}

#[test]
fn x_refusing_the_token_comes_first() {
    let usage = UsageRecord {
        rejection: Some(cilvest_crds::usage::Rejection {
            kind: "unauthorized".into(),
            message: "X rejected the bearer token (HTTP 401): Unauthorized".into(),
        }),
        ..UsageRecord::default()
    };
    let failed = DailyRun {
        result: "Failed".into(),
        ..DailyRun::default()
    };
    let found = problem(&Observed {
        usage: Some(&usage),
        last_run: Some(&failed),
        ..healthy(at("2026-12-04T10:00:00Z"))
    })
    .expect("a problem");
    assert_eq!(found.reason, "XUnauthorized");
    assert!(found.message.contains("HTTP 401"), "{}", found.message);
    let query = UsageRecord {
        rejection: Some(cilvest_crds::usage::Rejection {
            kind: "rejected".into(),
            message: "X rejected the search request (HTTP 400): bad query".into(),
        }),
        ..UsageRecord::default()
    };
    assert_eq!(
        problem(&Observed {
            usage: Some(&query),
            ..healthy(at("2026-12-04T10:00:00Z"))
        })
        .map(|p| p.reason),
        Some("XRequestRejected".to_owned())
    );
}

#[test]
fn a_kibana_import_that_gave_up_is_named_but_one_still_trying_is_not() {
    let now = at("2026-12-04T10:00:00Z");
    let job = |condition: Option<(&str, &str)>| -> k8s_openapi::api::batch::v1::Job {
        let conditions = condition.map(|(type_, message)| {
            serde_json::json!([{"type": type_, "status": "True", "reason": "BackoffLimitExceeded", "message": message}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cilvest-kibana-setup-0a1b2c3d"},
            "status": {"conditions": conditions.unwrap_or_else(|| serde_json::json!([]))}
        }))
        .expect("job")
    };
    let judged = |import: &k8s_openapi::api::batch::v1::Job| {
        problem(&Observed {
            kibana_import: Some(import),
            ..healthy(now)
        })
    };
    assert_eq!(judged(&job(None)), None, "still trying");
    assert_eq!(judged(&job(Some(("Complete", "")))), None);
    let found = judged(&job(Some(("Failed", "Job has reached the specified backoff limit")))).expect("a problem");
    assert_eq!(found.reason, "KibanaImportFailed");
    assert_eq!(
        found.message,
        "the Kibana dashboard was not imported: Job cilvest-kibana-setup-0a1b2c3d failed (Job has reached the \
         specified backoff limit); see kubectl logs job/cilvest-kibana-setup-0a1b2c3d"
    );
}
