//! One verdict for a CilvestPipeline: every case of `crds/tests/verdicts.yaml` goes through the real API server
//! (`kubectl apply --dry-run=server --validate=strict`, the CRD as `cilvest-operator crd` generates it) and through
//! `cilvest-operator validate -f`, and both must agree: the same verdict, and a refusal that names the case's field.

use crate::common;

use std::{path::Path, process::Command};

use serde::Deserialize;
use serde_json::{Value, json};

use common::{client, install_crd, temp_namespace};

const TABLE: &str = include_str!("../../../crds/tests/verdicts.yaml");
const FULL: &str = include_str!("../../../examples/cilvest.yaml");
const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");
const PUBSUB: &str = include_str!("../../../examples/pubsub.yaml");

#[derive(Deserialize)]
struct Case {
    case: String,
    #[serde(default)]
    base: Option<String>,
    valid: bool,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    patch: Value,
    #[serde(default)]
    object: Option<Value>,
}

impl Case {
    fn document(&self, name: &str) -> Value {
        let base = match self.base.as_deref() {
            None | Some("cilvest") => FULL,
            Some("minimal") => MINIMAL,
            Some("pubsub") => PUBSUB,
            Some(other) => panic!("{}: unknown base {other}", self.case),
        };
        let mut document: Value = serde_saphyr::from_str(base).expect("example parses");
        document["metadata"] = json!({"name": name});
        json_patch::merge(&mut document["spec"], &self.patch);
        if let Some(object) = &self.object {
            json_patch::merge(&mut document, object);
        }
        document
    }
}

/// The API server's answer: admitted, or its error text.
fn api_server(namespace: &str, file: &Path) -> Result<(), String> {
    let bin = std::env::var("CILVEST_K8S_BIN")
        .expect("CILVEST_K8S_BIN is not set: run `scripts/testenv up k8s` and `eval \"$(scripts/testenv env)\"`");
    let output = Command::new(Path::new(&bin).join("kubectl"))
        .args(["apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f"])
        .arg(file)
        .output()
        .expect("run kubectl");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The CLI's answer: the problems' fields and messages.
fn cli(file: &Path) -> (bool, Vec<(String, String)>) {
    let output = Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args(["validate", "-o", "json", "-f"])
        .arg(file)
        .output()
        .expect("run cilvest-operator validate");
    let reports: Value = serde_json::from_slice(&output.stdout).expect("validate -o json prints JSON");
    let report = &reports[0];
    let problems = report["problems"]
        .as_array()
        .map(|problems| {
            problems
                .iter()
                .map(|p| {
                    (
                        p["path"].as_str().unwrap_or_default().to_owned(),
                        p["message"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        output.status.success(),
        report["valid"] == true,
        "the exit code says what the report says"
    );
    (report["valid"] == true, problems)
}

#[tokio::test]
async fn the_api_server_and_the_cli_agree_on_every_case() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = temp_namespace(&client, "verdicts").await;
    let cases: Vec<Case> = serde_saphyr::from_str(TABLE).expect("verdicts.yaml parses");
    assert!(
        cases.len() >= 80,
        "the table keeps at least 80 cases, has {}",
        cases.len()
    );
    let dir = std::env::temp_dir().join(format!("cilvest-verdicts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let file = dir.join(format!("case-{i}.json"));
        let document = case.document(&format!("case-{i}"));
        std::fs::write(&file, serde_json::to_vec_pretty(&document).expect("json")).expect("write case");
        let server = api_server(&namespace, &file);
        let (cli_valid, problems) = cli(&file);
        let field = case.field.as_deref().unwrap_or_default();
        let verdict = match (case.valid, &server, cli_valid) {
            (true, Ok(()), true) => None,
            (false, Err(text), false) => {
                let server_names = text.contains(field);
                let cli_names = problems.iter().any(|(path, _)| path == field);
                (!server_names || !cli_names).then(|| {
                    format!("refused by both, but the field {field} is named by the API server: {server_names} ({text}), by the CLI: {cli_names} ({problems:?})")
                })
            }
            _ => Some(format!(
                "expected valid={}, API server: {server:?}, CLI: valid={cli_valid} {problems:?}",
                case.valid
            )),
        };
        if let Some(why) = verdict {
            disagreements.push(format!("{}: {why}", case.case));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

#[test]
fn the_cli_reads_several_documents_and_names_unknown_fields_with_a_hint() {
    let dir = std::env::temp_dir().join(format!("cilvest-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("two.yaml");
    let misspelled = MINIMAL.replace("  keywords:", "  dropRetweet: false\n  keywords:");
    std::fs::write(&file, format!("{MINIMAL}\n---\n{misspelled}")).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().count(), 1, "one problem, one line: {text}");
    assert!(
        text.contains("spec.dropRetweet: unknown field \"dropRetweet\"; did you mean \"dropRetweets\"?"),
        "{text}"
    );
    let examples: Vec<_> = ["minimal", "cilvest", "pubsub"]
        .iter()
        .map(|e| Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{e}.yaml")))
        .collect();
    let status = Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args(["validate", "-f"])
        .args(&examples)
        .status()
        .expect("run validate");
    assert!(status.success(), "the examples validate");
    let _ = std::fs::remove_dir_all(&dir);
}
