//! The daily CronJob (the day's transform, warehouse, marts and search index) and, for a Dataproc pipeline, the
//! Job that deletes its clusters when the pipeline is deleted.

use k8s_openapi::{
    api::{
        batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec},
        core::v1::{
            Container, EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::ResourceExt;

use cilvest_crds::{CilvestPipeline, worker_config::ES_PASSWORD_ENV};

use super::{
    BuildOptions,
    workers::{pod_template, worker_container},
};
use crate::meta::{labels, object_meta};

const ES_CA_DIR: &str = "/etc/cilvest/es-ca";

/// The daily run, under the pipeline's schedule and time zone, never two at once.
pub(super) fn cron_job(pipeline: &CilvestPipeline, options: &BuildOptions) -> CronJob {
    let name = pipeline.name_any();
    let spec = &pipeline.spec;
    let mut container = worker_container(
        options,
        "daily",
        Vec::new(),
        &spec.workers.env,
        ("500m", "512Mi", "2Gi"),
    );
    container.ports = None;
    container.liveness_probe = None;
    container.readiness_probe = None;
    // The run summary goes to the termination message, where the operator reads it into status.lastRun.
    container.termination_message_policy = Some("FallbackToLogsOnError".to_owned());
    let volumes = search_credentials(pipeline, &mut container);
    let pod = pod_template(pipeline, "daily", container, volumes, "Never");
    CronJob {
        metadata: object_meta(pipeline, &format!("{name}-daily"), "daily"),
        spec: Some(CronJobSpec {
            schedule: spec.schedule.daily.clone(),
            time_zone: Some(spec.schedule.time_zone.clone()),
            suspend: Some(spec.schedule.suspend),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, "daily")),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    // A day's run takes minutes; a stuck one must not block tomorrow's (concurrencyPolicy Forbid).
                    active_deadline_seconds: Some(4 * 3600),
                    template: pod,
                    ..JobSpec::default()
                }),
            },
        }),
        ..CronJob::default()
    }
}

/// The search password (from ECK's `<name>-es-elastic-user` or the external target's Secret) as a Secret reference in
/// the environment, and the search CA mounted as a file; returns the volumes to add to the pod.
fn search_credentials(pipeline: &CilvestPipeline, container: &mut Container) -> Vec<Volume> {
    let name = pipeline.name_any();
    let Some(search) = &pipeline.spec.targets.elasticsearch else {
        return Vec::new();
    };
    let password = match (&search.managed, &search.external) {
        (Some(_), _) => Some((super::search::writer_secret_name(&name), "password".to_owned())),
        (None, Some(external)) => external
            .password_secret_ref
            .as_ref()
            .map(|r| (r.name.clone(), r.key.clone())),
        (None, None) => None,
    };
    if let Some((secret, key)) = password {
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: ES_PASSWORD_ENV.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret,
                    key,
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    let ca = match (&search.managed, &search.external) {
        (Some(_), _) => Some((format!("{name}-es-http-certs-public"), "ca.crt".to_owned())),
        (None, Some(external)) => external.ca_secret_ref.as_ref().map(|r| (r.name.clone(), r.key.clone())),
        (None, None) => None,
    };
    let Some((secret, key)) = ca else {
        return Vec::new();
    };
    container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
        name: "es-ca".to_owned(),
        mount_path: ES_CA_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    container
        .args
        .get_or_insert_with(Vec::new)
        .extend(["--search-ca".to_owned(), format!("{ES_CA_DIR}/ca.crt")]);
    vec![Volume {
        name: "es-ca".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(vec![KeyToPath {
                key,
                path: "ca.crt".to_owned(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }]
}

/// Name of the Job that deletes a Dataproc pipeline's clusters when the pipeline is deleted.
pub fn dataproc_cleanup_name(pipeline: &str) -> String {
    format!("{pipeline}-dataproc-cleanup")
}

/// The Job that runs `cilvest dataproc-cleanup` as the daily job's ServiceAccount (which holds the Google
/// identity), for a pipeline with a Dataproc engine. It has no owner reference and mounts nothing the pipeline
/// owns, so that it still runs while the pipeline and its children are being deleted.
pub fn dataproc_cleanup_job(pipeline: &CilvestPipeline, options: &BuildOptions) -> Option<Job> {
    let dataproc = pipeline.spec.transform.dataproc.as_ref()?;
    let name = pipeline.name_any();
    let mut container = worker_container(
        options,
        "dataproc-cleanup",
        Vec::new(),
        &pipeline.spec.workers.env,
        ("50m", "64Mi", "256Mi"),
    );
    container.args = Some(
        [
            "dataproc-cleanup",
            "--project",
            &dataproc.project,
            "--region",
            &dataproc.region,
            "--namespace",
            &pipeline.namespace().unwrap_or_default(),
            "--pipeline",
            &name,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    container.ports = None;
    container.liveness_probe = None;
    container.readiness_probe = None;
    container.volume_mounts = None;
    let mut pod = pod_template(pipeline, "daily", container, Vec::new(), "Never");
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
    }
    let mut metadata = object_meta(pipeline, &dataproc_cleanup_name(&name), "dataproc-cleanup");
    metadata.owner_references = None;
    Some(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(1800),
            ttl_seconds_after_finished: Some(300),
            template: pod,
            ..JobSpec::default()
        }),
        ..Default::default()
    })
}
