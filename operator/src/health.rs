//! Health that tells the truth: what goes wrong with a pipeline whose spec is fine, as the one problem that makes it
//! `Degraded` (as Strimzi and ECK report their clusters). In order of precedence:
//!
//! | reason | when |
//! | --- | --- |
//! | `XUnauthorized` / `XRequestRejected` | the producer's usage record says X refuses its token (401/403) or query (400) |
//! | a pod's waiting reason (`CrashLoopBackOff`, `ImagePullBackOff`, `CreateContainerConfigError`, …) | a worker container cannot run |
//! | `ReadinessFailing` | a running worker pod has not been ready for [`READINESS_GRACE`] |
//! | `ProgressDeadlineExceeded` | a worker Deployment stopped progressing (its `progressDeadlineSeconds`) |
//! | `DailyRunFailed` | the newest finished daily Job failed (cleared by the next success) |
//! | `DailyRunMissed` | the daily CronJob, not suspended, started no Job for [`MISSED_AFTER`] |
//! | `KibanaImportFailed` | the Job importing the Kibana dashboard gave up (its pods' logs say why) |
//!
//! Messages hold no times that move, so an unchanged problem writes no status and publishes no second Event.

use std::time::Duration;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        batch::v1::{CronJob, Job},
        core::v1::Pod,
    },
    jiff::Timestamp,
};
use kube::ResourceExt;

use cilvest_crds::{DailyRun, usage::UsageRecord};

use crate::status::Problem;

/// A running worker pod not ready for this long is a problem, not a start-up.
pub const READINESS_GRACE: Duration = Duration::from_secs(10 * 60);
/// The daily job runs once a day; a CronJob that started nothing for this long (a day and a long run's margin)
/// missed a day.
pub const MISSED_AFTER: Duration = Duration::from_secs(26 * 3600);
/// Waiting reasons of a container that will not start without a change.
const STUCK: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the reconcile saw of a pipeline's running parts.
pub struct Observed<'a> {
    pub now: Timestamp,
    pub suspended: bool,
    /// The newest finished daily run (carried over in status once its Job is gone).
    pub last_run: Option<&'a DailyRun>,
    pub cron_job: Option<&'a CronJob>,
    pub deployments: &'a [Deployment],
    /// The pipeline's pods (workers and daily Jobs).
    pub pods: &'a [Pod],
    pub usage: Option<&'a UsageRecord>,
    /// The Job importing the Kibana dashboard, with managed Kibana.
    pub kibana_import: Option<&'a Job>,
}

/// The problem that makes the pipeline Degraded, if any.
pub fn problem(seen: &Observed<'_>) -> Option<Problem> {
    x_rejection(seen.usage)
        .or_else(|| seen.pods.iter().filter(|p| is_worker(p)).find_map(stuck_container))
        .or_else(|| {
            seen.pods
                .iter()
                .filter(|p| is_worker(p))
                .find_map(|p| readiness_failing(p, seen.now))
        })
        .or_else(|| seen.deployments.iter().find_map(stalled))
        .or_else(|| seen.last_run.and_then(failed_run))
        .or_else(|| {
            (!seen.suspended)
                .then_some(seen.cron_job)
                .flatten()
                .and_then(|c| missed(c, seen.now))
        })
        .or_else(|| seen.kibana_import.and_then(failed_import))
}

fn failed_import(job: &Job) -> Option<Problem> {
    let failed = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let name = job.name_any();
    Some(Problem {
        reason: "KibanaImportFailed".to_owned(),
        message: format!(
            "the Kibana dashboard was not imported: Job {name} failed ({}); see kubectl logs job/{name}",
            failed
                .message
                .as_deref()
                .or(failed.reason.as_deref())
                .unwrap_or("no reason given")
        ),
    })
}

/// The pipeline's health as the operator's metrics publish it for alerts (see `crate::telemetry::Health`).
pub fn alerting(
    suspended: bool,
    problem: Option<&Problem>,
    last_run: Option<&DailyRun>,
    cron_job: Option<&CronJob>,
) -> crate::telemetry::Health {
    let suspended = suspended || cron_job.and_then(|c| c.spec.as_ref()?.suspend) == Some(true);
    crate::telemetry::Health {
        degraded: problem.map(|p| p.reason.clone()),
        daily_failed: last_run.map(|r| r.result == "Failed"),
        daily_succeeded_at: cron_job
            .filter(|_| !suspended)
            .and_then(|c| c.status.as_ref()?.last_successful_time.as_ref())
            .map(|t| t.0.as_second()),
    }
}

fn x_rejection(usage: Option<&UsageRecord>) -> Option<Problem> {
    let rejection = usage?.rejection.as_ref()?;
    let reason = if rejection.kind == "unauthorized" {
        "XUnauthorized"
    } else {
        "XRequestRejected"
    };
    Some(Problem {
        reason: reason.to_owned(),
        message: format!(
            "{} (the producer retries rarely until it is fixed: check the Secret of spec.source.x.bearerTokenSecretRef and the keywords)",
            rejection.message
        ),
    })
}

/// Producer and consumer pods; the daily Job's pods are judged by the Job's outcome instead.
fn is_worker(pod: &Pod) -> bool {
    !pod.labels().contains_key("job-name")
}

fn stuck_container(pod: &Pod) -> Option<Problem> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|container| {
        let waiting = container.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref().filter(|r| STUCK.contains(r))?;
        let mut message = format!("pod {} container {}: {reason}", pod.name_any(), container.name);
        if let Some(detail) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
            message.push_str(&format!(" ({detail})"));
        }
        if container.restart_count > 0 {
            message.push_str(&format!("; restarted {} times", container.restart_count));
        }
        if let Some(last) = container.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            message.push_str(&format!(
                "; last exit {} ({})",
                last.exit_code,
                last.reason.as_deref().unwrap_or("unknown reason")
            ));
            if let Some(said) = last.message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                message.push_str(&format!(": {}", said.chars().take(300).collect::<String>()));
            }
        }
        Some(Problem {
            reason: reason.to_owned(),
            message,
        })
    })
}

fn readiness_failing(pod: &Pod, now: Timestamp) -> Option<Problem> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ready = status.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    let since = ready.last_transition_time.as_ref()?.0;
    let long = now.as_second() - since.as_second() >= READINESS_GRACE.as_secs() as i64;
    (ready.status == "False" && long).then(|| Problem {
        reason: "ReadinessFailing".to_owned(),
        message: format!(
            "pod {} has not been ready since {since}: {}",
            pod.name_any(),
            ready.message.as_deref().unwrap_or("its readiness probe fails")
        ),
    })
}

fn stalled(deployment: &Deployment) -> Option<Problem> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing")?;
    (progressing.status == "False" && progressing.reason.as_deref() == Some("ProgressDeadlineExceeded")).then(|| {
        Problem {
            reason: "ProgressDeadlineExceeded".to_owned(),
            message: format!(
                "deployment {}: {}",
                deployment.name_any(),
                progressing.message.as_deref().unwrap_or("it stopped progressing")
            ),
        }
    })
}

fn failed_run(run: &DailyRun) -> Option<Problem> {
    (run.result == "Failed").then(|| {
        let day = if run.date.is_empty() {
            "the newest daily run".to_owned()
        } else {
            format!("the daily run for {}", run.date)
        };
        Problem {
            reason: "DailyRunFailed".to_owned(),
            message: format!(
                "{day} failed: {}",
                run.message.as_deref().unwrap_or("no message (see the Job's pod logs)")
            ),
        }
    })
}

fn missed(cron_job: &CronJob, now: Timestamp) -> Option<Problem> {
    if cron_job.spec.as_ref()?.suspend == Some(true) {
        return None;
    }
    let limit = MISSED_AFTER.as_secs() as i64;
    let created = cron_job.metadata.creation_timestamp.as_ref()?.0;
    if now.as_second() - created.as_second() < limit {
        return None;
    }
    let last = cron_job
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0);
    if last.is_some_and(|last| now.as_second() - last.as_second() < limit) {
        return None;
    }
    let hours = limit / 3600;
    Some(Problem {
        reason: "DailyRunMissed".to_owned(),
        message: match last {
            Some(last) => format!(
                "cronjob {} started no daily run in {hours} h (the last started at {last}): is the CronJob controller running, or was the run refused?",
                cron_job.name_any()
            ),
            None => format!(
                "cronjob {} has started no daily run in {hours} h since it was created",
                cron_job.name_any()
            ),
        },
    })
}

#[cfg(test)]
mod tests;
