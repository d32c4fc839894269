//! The Kibana dashboard import: with managed Kibana, a Job running `cilvest kibana-setup`, which imports the
//! pipeline's data view and dashboard through Kibana's saved objects API (the objects themselves are built by the
//! worker, `workers/src/search/dashboard.rs`), as the file-realm user `<pipeline>-kibana-setup` (`build::search`).
//!
//! A Job's pod template cannot change, so the Job is named after a hash of it: when what it would import changes
//! (the index alias, the worker image), a new Job runs and the old one is deleted as an orphan. A finished Job is
//! kept, so that it does not run again on every reconcile. The objects live in the pipeline's own Elasticsearch,
//! which the pipeline owns: deleting the pipeline removes them with it.

use k8s_openapi::api::{
    batch::v1::{Job, JobSpec},
    core::v1::{EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount},
};
use kube::ResourceExt;

use cilvest_crds::{CilvestPipeline, worker_config::KIBANA_PASSWORD_ENV};

use super::{
    BuildOptions, search,
    workers::{pod_template, worker_container},
};
use crate::meta::{fingerprint, object_meta};

/// The component label of the import Job and its pods (and of its NetworkPolicy and ServiceAccount).
pub const COMPONENT: &str = "kibana-setup";
/// ECK's Kibana HTTPS port.
pub const KIBANA_PORT: i32 = 5601;
const CA_DIR: &str = "/etc/cilvest/kibana-ca";

/// Whether `pipeline` has a managed Kibana.
pub fn wanted(pipeline: &CilvestPipeline) -> bool {
    pipeline
        .spec
        .targets
        .elasticsearch
        .as_ref()
        .and_then(|s| s.managed.as_ref())
        .is_some_and(|m| m.kibana)
}

/// The import Job, with managed Kibana only.
pub fn setup_job(pipeline: &CilvestPipeline, options: &BuildOptions) -> Option<Job> {
    if !wanted(pipeline) {
        return None;
    }
    let name = pipeline.name_any();
    let namespace = pipeline.namespace().unwrap_or_default();
    let secret = search::kibana_setup_secret_name(&name);
    let password = EnvVar {
        name: KIBANA_PASSWORD_ENV.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: "password".to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut container = worker_container(
        options,
        COMPONENT,
        vec![password],
        &pipeline.spec.workers.env,
        ("50m", "64Mi", "256Mi"),
    );
    container.ports = None;
    container.liveness_probe = None;
    container.readiness_probe = None;
    container.args.get_or_insert_with(Vec::new).extend([
        "--kibana-url".to_owned(),
        // ECK's service and certificate: `<kibana>-kb-http`, signed by the CA in `<kibana>-kb-http-certs-public`.
        format!("https://{name}-kb-http.{namespace}.svc:{KIBANA_PORT}"),
        "--kibana-ca".to_owned(),
        format!("{CA_DIR}/ca.crt"),
        "--username".to_owned(),
        secret,
    ]);
    container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
        name: "kibana-ca".to_owned(),
        mount_path: CA_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    let ca = Volume {
        name: "kibana-ca".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(format!("{name}-kb-http-certs-public")),
            items: Some(vec![KeyToPath {
                key: "ca.crt".to_owned(),
                path: "ca.crt".to_owned(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let template = pod_template(pipeline, COMPONENT, container, vec![ca], "Never");
    // The worker reads the alias from the pipeline's ConfigMap, not from the template: hash it too.
    let alias = pipeline
        .spec
        .targets
        .elasticsearch
        .as_ref()
        .map(|s| s.index.as_str())
        .unwrap_or_default();
    let hash = &fingerprint(&(&template, alias))[..8];
    Some(Job {
        metadata: object_meta(pipeline, &format!("{name}-{COMPONENT}-{hash}"), COMPONENT),
        spec: Some(JobSpec {
            // Kibana starts minutes after its Job: the worker waits up to 10 minutes per attempt.
            backoff_limit: Some(4),
            active_deadline_seconds: Some(3600),
            template,
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(image: &str) -> BuildOptions {
        BuildOptions {
            worker_image: image.to_owned(),
        }
    }

    fn pipeline() -> CilvestPipeline {
        super::super::full_example("jkt")
    }

    #[test]
    fn the_import_job_runs_as_its_own_user_against_ecks_kibana_service() {
        let p = pipeline();
        let job = setup_job(&p, &options("cilvest:test")).expect("the example has Kibana");
        let name = job.name_any();
        assert!(name.starts_with("cilvest-kibana-setup-") && name.len() == "cilvest-kibana-setup-".len() + 8);
        let spec = job.spec.expect("spec");
        assert_eq!(
            spec.ttl_seconds_after_finished, None,
            "a finished Job stays, so it does not run again"
        );
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.service_account_name.as_deref(), Some("cilvest-kibana-setup"));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let container = &pod.containers[0];
        let args = container.args.clone().expect("args").join(" ");
        assert!(args.starts_with("kibana-setup --config "), "{args}");
        assert!(
            args.contains("--kibana-url https://cilvest-kb-http.jkt.svc:5601"),
            "{args}"
        );
        assert!(args.contains("--username cilvest-kibana-setup"), "{args}");
        let env = container.env.clone().expect("env");
        let password = env
            .iter()
            .find(|e| e.name == KIBANA_PASSWORD_ENV)
            .expect("password env");
        let reference = password
            .value_from
            .clone()
            .and_then(|v| v.secret_key_ref)
            .expect("secret ref");
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("cilvest-kibana-setup", "password")
        );
        assert!(password.value.is_none(), "the password is referenced, never copied");
        let volumes = pod.volumes.expect("volumes");
        assert!(volumes.iter().any(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("cilvest-kb-http-certs-public"))
        }));
        let security = container.security_context.clone().expect("security context");
        assert_eq!(security.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn a_changed_import_is_a_new_job_and_no_kibana_is_no_job() {
        let p = pipeline();
        let first = setup_job(&p, &options("cilvest:test")).expect("job").name_any();
        assert_eq!(
            setup_job(&p, &options("cilvest:test")).expect("job").name_any(),
            first,
            "stable"
        );
        let mut moved = p.clone();
        if let Some(search) = moved.spec.targets.elasticsearch.as_mut() {
            search.index = "other-tweets".to_owned();
        }
        assert_ne!(
            setup_job(&moved, &options("cilvest:test")).expect("job").name_any(),
            first
        );
        let other_image = options("ghcr.io/cilvest/cilvest:other");
        assert_ne!(setup_job(&p, &other_image).expect("job").name_any(), first);
        let mut none = p;
        if let Some(managed) = none
            .spec
            .targets
            .elasticsearch
            .as_mut()
            .and_then(|s| s.managed.as_mut())
        {
            managed.kibana = false;
        }
        assert!(setup_job(&none, &options("cilvest:test")).is_none());
    }
}
