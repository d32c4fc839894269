//! `cilvest kibana-setup` against a contract-faithful fake of Kibana's saved objects import API
//! (`support::fake_kibana`): it waits out a Kibana that is still starting, imports the data view, the panels and the
//! dashboard with `overwrite=true` and the `kbn-xsrf` header, and a second run replaces the objects instead of
//! adding copies. A wrong password, a missing one and a Kibana that never starts each fail with the cause named.
//! Not run against a real Kibana here: none can run on this machine.

mod support;

use std::{path::Path, process::Command};

use serde_json::{Value, json};
use support::{fake_kibana::FakeKibana, unique, write_worker_config};

const USER: &str = "shop-kibana-setup";
const PASSWORD: &str = "s3cret-Pa55";

/// A worker configuration for pipeline `cilvest` with a managed search target behind alias `tweets-x`.
fn config() -> std::path::PathBuf {
    let path = write_worker_config("127.0.0.1:1", &unique("t"), "in", None);
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("config");
    config["spec"]["targets"]["elasticsearch"] = json!({"index": "tweets-x", "managed": {"kibana": true}});
    std::fs::write(&path, serde_json::to_vec(&config).expect("json")).expect("write config");
    path
}

/// Run `cilvest kibana-setup`; its exit success and its stderr.
fn setup(config: &Path, url: &str, password: Option<&str>, wait: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cilvest"));
    command
        .args(["--log-format", "text", "kibana-setup", "--config"])
        .arg(config)
        .args(["--kibana-url", url, "--username", USER, "--wait", wait])
        .env_remove("CILVEST_KIBANA_PASSWORD");
    if let Some(password) = password {
        command.env("CILVEST_KIBANA_PASSWORD", password);
    }
    let output = command.output().expect("run cilvest kibana-setup");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), stderr)
}

/// [`setup`] off the runtime's threads, so that the fake Kibana keeps answering meanwhile.
async fn setup_blocking(config: &Path, url: &str, password: Option<&str>, wait: &str) -> (bool, String) {
    let (config, url, password, wait) = (
        config.to_owned(),
        url.to_owned(),
        password.map(str::to_owned),
        wait.to_owned(),
    );
    tokio::task::spawn_blocking(move || setup(&config, &url, password.as_deref(), &wait))
        .await
        .expect("join")
}

#[tokio::test]
async fn imports_the_dashboard_once_kibana_is_ready_and_a_rerun_replaces_it() {
    let kibana = FakeKibana::start(USER, PASSWORD, 2).await;
    let config = config();
    let (ok, log) = setup_blocking(&config, &kibana.url(), Some(PASSWORD), "2m").await;
    assert!(ok, "kibana-setup failed: {log}");
    let requests = kibana.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200],
        "two refusals while starting, then one import: {requests:?}"
    );
    let import = &requests[2];
    assert_eq!(import.path, "/api/saved_objects/_import");
    assert_eq!(import.query, "overwrite=true");
    assert!(import.xsrf);

    let objects = kibana.objects();
    let kinds: Vec<&str> = objects.keys().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "visualization").count(), 5, "{kinds:?}");
    for kind in ["index-pattern", "search", "dashboard"] {
        assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "one {kind}: {kinds:?}");
    }
    let view = &objects[&("index-pattern".to_owned(), "cilvest-cilvest-tweets".to_owned())];
    assert_eq!(
        view["attributes"]["title"], "tweets-x",
        "the data view is the pipeline's alias"
    );
    let dashboard = &objects[&("dashboard".to_owned(), "cilvest-cilvest".to_owned())];
    assert_eq!(dashboard["references"].as_array().map(Vec::len), Some(6));

    let (ok, log) = setup_blocking(&config, &kibana.url(), Some(PASSWORD), "2m").await;
    assert!(ok, "the second import failed: {log}");
    assert_eq!(
        kibana.objects(),
        objects,
        "a rerun replaces the same objects, it adds none"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_password_and_a_kibana_that_never_starts_fail_naming_the_cause() {
    let kibana = FakeKibana::start(USER, PASSWORD, 0).await;
    let config = config();
    let url = kibana.url();
    let (ok, log) = setup_blocking(&config, &url, Some("wrong"), "1m").await;
    assert!(!ok);
    assert!(log.contains("refused the saved objects import with 401"), "{log}");
    assert!(!log.contains("wrong"), "the password is not logged: {log}");

    let (ok, log) = setup_blocking(&config, &url, None, "1m").await;
    assert!(!ok);
    assert!(log.contains("CILVEST_KIBANA_PASSWORD is not set"), "{log}");
    assert!(kibana.objects().is_empty(), "nothing was imported");

    let starting = FakeKibana::start(USER, PASSWORD, u32::MAX).await;
    let (ok, log) = setup_blocking(&config, &starting.url(), Some(PASSWORD), "3s").await;
    assert!(!ok);
    assert!(log.contains("was not ready within"), "{log}");
    assert!(log.contains("Kibana server is not ready yet"), "{log}");
}
