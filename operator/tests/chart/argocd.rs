//! The Argo CD health check in Lua 5.1 over every state, and the Argo CD manifests that carry it.

use serde_json::Value;

use super::argocd_health;
use crate::common::chart::{repo, run_unchecked, tool};

#[test]
fn argocd_health_check_covers_every_state() {
    let cases = [
        ("healthy.json", "Healthy", "every child is ready"),
        (
            "progressing.json",
            "Progressing",
            "Deployment cilvest-consumer: 0/1 replicas available",
        ),
        ("degraded.json", "Degraded", "secret cilvest-x-api (key bearerToken)"),
        ("suspended.json", "Suspended", "spec.schedule.suspend is true"),
        (
            "no-status.json",
            "Progressing",
            "Waiting for cilvest-operator to report status",
        ),
        (
            "stale-generation.json",
            "Progressing",
            "observe generation 2 (status is for 1)",
        ),
        ("degraded-while-suspended.json", "Degraded", "install Strimzi"),
    ];
    let dir = repo("deploy/argocd/testdata");
    let fixtures = std::fs::read_dir(&dir)
        .expect("testdata")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .count();
    assert_eq!(
        fixtures,
        cases.len(),
        "every fixture in {} has a case here",
        dir.display()
    );
    for (fixture, status, message) in cases {
        let object = std::fs::read(dir.join(fixture)).expect("fixture");
        let (got_status, got_message) = argocd_health(&object);
        assert_eq!(got_status, status, "{fixture}: {got_message}");
        assert!(
            got_message.contains(message),
            "{fixture}: {got_message:?} lacks {message:?}"
        );
    }

    // The harness gives the script only what Argo CD does: a script reaching for `os` fails.
    let script = std::env::temp_dir().join(format!("cilvest-health-os-{}.lua", std::process::id()));
    std::fs::write(&script, "return {status = os.date()}\n").expect("script");
    let (ok, output) = run_unchecked(
        tool("CILVEST_LUA")
            .arg(repo("deploy/argocd/testdata/run.lua"))
            .arg(&script)
            .stdin(std::fs::File::open(dir.join("healthy.json")).expect("fixture")),
    );
    assert!(!ok, "a script using os ran: {output}");
}

#[test]
fn argocd_manifests_carry_the_tested_script_and_real_paths() {
    let script = std::fs::read_to_string(repo("deploy/argocd/health.lua")).expect("health.lua");
    let cm: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("deploy/argocd/argocd-cm.yaml")).expect("argocd-cm.yaml"))
            .expect("argocd-cm.yaml parses");
    assert_eq!(
        cm["data"]["resource.customizations.health.cilvest.io_CilvestPipeline"].as_str(),
        Some(script.as_str()),
        "deploy/argocd/argocd-cm.yaml must carry deploy/argocd/health.lua unchanged"
    );
    let applications: Vec<Value> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(repo("deploy/argocd/application.yaml")).expect("application.yaml"),
    )
    .expect("application.yaml parses");
    assert_eq!(applications.len(), 2);
    for app in &applications {
        assert_eq!(app["kind"], "Application");
        let path = app["spec"]["source"]["path"].as_str().expect("source path");
        assert!(repo(path).is_dir(), "{path} does not exist in the repository");
        if let Some(include) = app["spec"]["source"]["directory"]["include"].as_str() {
            assert!(repo(path).join(include).is_file(), "{path}/{include} does not exist");
        }
    }
}
