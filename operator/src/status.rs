//! Status: the conditions people, `kubectl get` and Argo CD read, computed from the children's own health.

use k8s_openapi::{
    api::{apps::v1::Deployment, batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::ResourceExt;

use cilvest_crds::{ChildStatus, CilvestPipelineStatus, DailyRun};

use crate::apply::LiveChildren;

/// Phases, in the order a pipeline usually moves through them.
pub const PENDING: &str = "Pending";
pub const PROGRESSING: &str = "Progressing";
pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const SUSPENDED: &str = "Suspended";

/// A terminal problem that needs a person: it becomes `Degraded` with this reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
}

/// Health of each child the pipeline wants, from what is live.
pub fn child_health(live: &LiveChildren, pipeline: &str, wants_search: bool) -> Vec<ChildStatus> {
    let mut children = Vec::new();
    for (kind, name) in live.objects.keys() {
        let Some(object) = live.objects.get(&(kind.clone(), name.clone())) else {
            continue;
        };
        let (ready, message) = match kind.as_str() {
            "KafkaTopic" | "KafkaUser" => condition_true(&object.data, "Ready"),
            "Elasticsearch" | "Kibana" => {
                let health = object.data["status"]["health"].as_str().unwrap_or("unknown");
                (
                    matches!(health, "green" | "yellow"),
                    (!matches!(health, "green" | "yellow")).then(|| format!("health is {health}")),
                )
            }
            _ => continue,
        };
        if kind == "Elasticsearch" && !wants_search {
            continue;
        }
        children.push(ChildStatus {
            kind: kind.clone(),
            name: name.clone(),
            ready,
            message,
        });
    }
    for deployment in &live.deployments {
        let (ready, message) = deployment_available(deployment);
        children.push(ChildStatus {
            kind: "Deployment".to_owned(),
            name: deployment.name_any(),
            ready,
            message,
        });
    }
    children.retain(|c| c.name.starts_with(pipeline));
    children
}

fn condition_true(data: &serde_json::Value, kind: &str) -> (bool, Option<String>) {
    let conditions = data["status"]["conditions"].as_array().cloned().unwrap_or_default();
    match conditions.iter().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == "True" => (true, None),
        Some(c) => (
            false,
            c["message"]
                .as_str()
                .map(str::to_owned)
                .or(Some(format!("{kind} is not True"))),
        ),
        None => (false, Some(format!("no {kind} condition yet"))),
    }
}

fn deployment_available(deployment: &Deployment) -> (bool, Option<String>) {
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if available >= wanted {
        (true, None)
    } else {
        (false, Some(format!("{available}/{wanted} replicas available")))
    }
}

/// The daily Job that finished last, if any has.
pub fn newest_finished(jobs: &[Job]) -> Option<&Job> {
    jobs.iter()
        .filter_map(|job| {
            let status = job.status.as_ref()?;
            let condition = finished_condition(job)?;
            let finished_at = status
                .completion_time
                .clone()
                .or(condition.last_transition_time.clone())?;
            Some((finished_at, job))
        })
        .max_by_key(|(at, _)| at.0)
        .map(|(_, job)| job)
}

fn finished_condition(job: &Job) -> Option<&k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// How many days `status.days` keeps.
pub const DAYS_KEPT: usize = 14;

/// The days the newest finished daily Job processed, oldest first: the summaries it wrote as its termination
/// message (one run, or a list when it caught up on several days), or, when it died without one, the Job's own
/// failure reason.
pub fn newest_runs(jobs: &[Job], pods: &[Pod]) -> Vec<DailyRun> {
    let Some(job) = newest_finished(jobs) else {
        return Vec::new();
    };
    let Some(condition) = finished_condition(job) else {
        return Vec::new();
    };
    let job_name = job.name_any();
    let message = pods
        .iter()
        .filter(|pod| pod.labels().get("job-name") == Some(&job_name))
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses.iter().find_map(|c| c.state.as_ref()?.terminated.as_ref())?;
            Some((
                terminated.finished_at.as_ref().map(|t| t.0),
                terminated.message.clone()?,
            ))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, message)| message);
    let parsed = message.as_deref().map(str::trim).and_then(|m| {
        serde_json::from_str::<DailyRun>(m)
            .map(|run| vec![run])
            .or_else(|_| serde_json::from_str::<Vec<DailyRun>>(m))
            .ok()
            .filter(|runs| !runs.is_empty())
    });
    parsed.unwrap_or_else(|| {
        vec![DailyRun {
            date: String::new(),
            result: if condition.type_ == "Complete" {
                "Succeeded"
            } else {
                "Failed"
            }
            .to_owned(),
            message: Some(
                condition
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("job {job_name} left no summary")),
            ),
            ..DailyRun::default()
        }]
    })
}

/// The run `status.lastRun` shows of a Job's days: the first that failed, else the newest day.
pub fn headline(runs: &[DailyRun]) -> Option<DailyRun> {
    runs.iter()
        .find(|r| r.result == "Failed")
        .or_else(|| runs.iter().max_by(|a, b| a.date.cmp(&b.date)))
        .cloned()
}

/// `status.days`: the previous history with `runs` replacing the entries of their days, newest day first, at most
/// [`DAYS_KEPT`]. Runs without a date (a Job that left no summary) are not a day's history.
pub fn merge_days(previous: &[DailyRun], runs: &[DailyRun]) -> Vec<DailyRun> {
    let mut by_day: std::collections::BTreeMap<&str, &DailyRun> =
        previous.iter().map(|r| (r.date.as_str(), r)).collect();
    for run in runs {
        by_day.insert(run.date.as_str(), run);
    }
    by_day
        .into_iter()
        .rev()
        .filter(|(date, _)| !date.is_empty())
        .take(DAYS_KEPT)
        .map(|(_, run)| run.clone())
        .collect()
}

/// The new status: conditions only change their transition time when their status flips.
pub fn compute(
    previous: Option<&CilvestPipelineStatus>,
    generation: Option<i64>,
    keywords: String,
    suspended: bool,
    problem: Option<&Problem>,
    children: Vec<ChildStatus>,
    runs: &[DailyRun],
) -> CilvestPipelineStatus {
    let all_ready = children.iter().all(|c| c.ready);
    let waiting: Vec<String> = children
        .iter()
        .filter(|c| !c.ready)
        .map(|c| format!("{} {}: {}", c.kind, c.name, c.message.as_deref().unwrap_or("not ready")))
        .collect();
    let (phase, ready, progressing, degraded) = match problem {
        Some(p) => (
            DEGRADED,
            ("False", p.reason.as_str(), p.message.clone()),
            ("False", "Blocked", "waiting for the problem to be fixed".to_owned()),
            ("True", p.reason.as_str(), p.message.clone()),
        ),
        None if suspended => (
            SUSPENDED,
            ("False", "Suspended", "spec.schedule.suspend is true".to_owned()),
            ("False", "Suspended", "spec.schedule.suspend is true".to_owned()),
            ("False", "AsExpected", String::new()),
        ),
        None if all_ready => (
            READY,
            ("True", "AllChildrenReady", "every child is ready".to_owned()),
            ("False", "Reconciled", "every child is up to date".to_owned()),
            ("False", "AsExpected", String::new()),
        ),
        None => (
            PROGRESSING,
            ("False", "ChildrenNotReady", waiting.join("; ")),
            ("True", "RollingOut", waiting.join("; ")),
            ("False", "AsExpected", String::new()),
        ),
    };
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        let unchanged = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status);
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: unchanged.map_or_else(|| Time(Timestamp::now()), |c| c.last_transition_time.clone()),
        }
    };
    CilvestPipelineStatus {
        observed_generation: generation,
        phase: Some(phase.to_owned()),
        keywords: Some(keywords),
        conditions: vec![
            condition("Ready", ready),
            condition("Progressing", progressing),
            condition("Degraded", degraded),
        ],
        children,
        last_run: headline(runs).or_else(|| previous.and_then(|s| s.last_run.clone())),
        days: merge_days(previous.map(|s| s.days.as_slice()).unwrap_or_default(), runs),
        x_usage: previous.and_then(|s| s.x_usage.clone()),
        google_cost: previous.and_then(|s| s.google_cost.clone()),
    }
}

/// Whether writing `new` would change anything a reader sees (ignoring nothing: times are carried over).
pub fn changed(previous: Option<&CilvestPipelineStatus>, new: &CilvestPipelineStatus) -> bool {
    previous != Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_run(jobs: &[Job], pods: &[Pod]) -> Option<DailyRun> {
        headline(&newest_runs(jobs, pods))
    }

    fn child(ready: bool) -> ChildStatus {
        ChildStatus {
            kind: "Deployment".into(),
            name: "p-producer".into(),
            ready,
            message: (!ready).then(|| "0/1 replicas available".into()),
        }
    }

    #[test]
    fn ready_only_when_every_child_is_ready() {
        let status = compute(
            None,
            Some(1),
            "saham".into(),
            false,
            None,
            vec![child(true), child(false)],
            &[],
        );
        assert_eq!(status.phase.as_deref(), Some(PROGRESSING));
        let ready = compute(
            Some(&status),
            Some(1),
            "saham".into(),
            false,
            None,
            vec![child(true)],
            &[],
        );
        assert_eq!(ready.phase.as_deref(), Some(READY));
        assert_eq!(ready.conditions[0].status, "True");
    }

    #[test]
    fn last_run_reads_the_newest_finished_jobs_termination_message() {
        let job = |name: &str, finished: &str, kind: &str| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"completionTime": finished, "conditions": [{"type": kind, "status": "True", "message": "BackoffLimitExceeded"}]}
            }))
            .expect("job")
        };
        let pod = |job: &str, message: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("{job}-x"), "labels": {"job-name": job}},
                "status": {"containerStatuses": [{"name": "daily", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-02T01:40:00Z", "message": message}}}]}
            }))
            .expect("pod")
        };
        let summary = r#"{"date":"2026-11-01","result":"Succeeded","tweetsIn":120,"tweetsKept":80,"rejected":2,"durationSeconds":3.5}"#;
        let jobs = [
            job("d-1", "2026-11-01T01:40:00Z", "Failed"),
            job("d-2", "2026-11-02T01:40:00Z", "Complete"),
        ];
        let run = last_run(&jobs, &[pod("d-2", summary)]).expect("a run");
        assert_eq!(
            (run.date.as_str(), run.result.as_str(), run.tweets_kept),
            ("2026-11-01", "Succeeded", 80)
        );
        let failed = last_run(&jobs[..1], &[]).expect("a failed run");
        assert_eq!(
            (failed.result.as_str(), failed.message.as_deref()),
            ("Failed", Some("BackoffLimitExceeded"))
        );
        assert!(last_run(&[], &[]).is_none());
    }

    #[test]
    fn transition_time_moves_only_when_a_condition_flips() {
        let first = compute(None, Some(1), "saham".into(), false, None, vec![child(true)], &[]);
        let again = compute(
            Some(&first),
            Some(2),
            "saham".into(),
            false,
            None,
            vec![child(true)],
            &[],
        );
        assert_eq!(
            first.conditions[0].last_transition_time,
            again.conditions[0].last_transition_time
        );
        let problem = Problem {
            reason: "SecretMissing".into(),
            message: "secret x not found".into(),
        };
        let degraded = compute(
            Some(&again),
            Some(2),
            "saham".into(),
            false,
            Some(&problem),
            vec![],
            &[],
        );
        assert_eq!(degraded.phase.as_deref(), Some(DEGRADED));
        let degraded_condition = degraded
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .expect("degraded");
        assert_eq!(
            (degraded_condition.status.as_str(), degraded_condition.reason.as_str()),
            ("True", "SecretMissing")
        );
    }

    #[test]
    fn a_catch_up_run_reports_each_day_and_the_history_keeps_the_latest_run_of_each() {
        let run = |date: &str, result: &str| DailyRun {
            date: date.into(),
            result: result.into(),
            ..DailyRun::default()
        };
        // One Job that caught up on two days, the older failing: lastRun shows the failure.
        let runs = [run("2026-11-02", "Failed"), run("2026-11-03", "Succeeded")];
        assert_eq!(headline(&runs).map(|r| r.date), Some("2026-11-02".to_owned()));
        let first = compute(None, Some(1), "saham".into(), false, None, vec![child(true)], &runs);
        let dates: Vec<(&str, &str)> = first
            .days
            .iter()
            .map(|r| (r.date.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(dates, [("2026-11-03", "Succeeded"), ("2026-11-02", "Failed")]);
        // The next Job does the failed day again: its entry is replaced, lastRun is the newest day.
        let retried = [run("2026-11-02", "Succeeded"), run("2026-11-04", "Succeeded")];
        let second = compute(
            Some(&first),
            Some(1),
            "saham".into(),
            false,
            None,
            vec![child(true)],
            &retried,
        );
        let dates: Vec<(&str, &str)> = second
            .days
            .iter()
            .map(|r| (r.date.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(
            dates,
            [
                ("2026-11-04", "Succeeded"),
                ("2026-11-03", "Succeeded"),
                ("2026-11-02", "Succeeded")
            ]
        );
        assert_eq!(second.last_run.map(|r| r.date), Some("2026-11-04".to_owned()));
        // Bounded, newest kept.
        let many: Vec<DailyRun> = (1..=20).map(|d| run(&format!("2026-10-{d:02}"), "Succeeded")).collect();
        let days = merge_days(&second.days, &many);
        assert_eq!(days.len(), DAYS_KEPT);
        assert_eq!(days[0].date, "2026-11-04");
    }
}
