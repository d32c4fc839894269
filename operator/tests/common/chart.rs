//! The Helm chart and the tools the chart tests drive: `helm template`, YAML documents, server-side dry runs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::kubectl;

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

pub fn chart() -> PathBuf {
    repo("charts/cilvest-operator")
}

/// A tool from `scripts/testenv up tools`; a missing one fails the test and says what to run.
pub fn tool(var: &str) -> Command {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/testenv up tools` and `eval \"$(scripts/testenv env)\"`")
    });
    assert!(
        Path::new(&path).exists(),
        "{var}={path} does not exist: run `scripts/testenv up tools`"
    );
    Command::new(path)
}

pub fn helm() -> Command {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run `scripts/testenv up k8s` and `eval \"$(scripts/testenv env)\"`"
    );
    tool("CILVEST_HELM")
}

/// Run `command`, fail with its output unless it succeeds, and return its stdout.
pub fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("failed to start {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Run `command` and return its exit status and combined output, for commands expected to fail.
pub fn run_unchecked(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("start command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

pub fn render(release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut command = helm();
    command
        .args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace]);
    for set in sets {
        command.args(["--set", set]);
    }
    run(&mut command, "helm template")
}

pub fn documents(rendered: &str) -> Vec<Value> {
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(rendered).expect("rendered chart parses as YAML");
    docs.into_iter().flatten().filter(|d| !d.is_null()).collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// `kubectl apply --server-side --dry-run=server` of a manifest: the API server validates every object (schemas,
/// RBAC rule syntax, the pod fields, the CRD) without keeping any. The chart names every object's namespace; a
/// manifest that names none goes into `namespace`.
pub fn dry_run(manifest: &str, namespace: Option<&str>, label: &str) -> String {
    let file = std::env::temp_dir().join(format!("cilvest-chart-{label}-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest).expect("write manifest");
    let mut command = kubectl();
    command
        .args(["apply", "--server-side", "--dry-run=server", "--force-conflicts"])
        .arg("--field-manager=cilvest-tests");
    if let Some(namespace) = namespace {
        command.args(["-n", namespace]);
    }
    run(command.arg("-f").arg(&file), "kubectl apply --dry-run=server")
}
