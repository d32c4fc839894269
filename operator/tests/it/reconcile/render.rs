//! `cilvest-operator render`: the rendered manifests pass a server-side dry run.

use super::setup;
use crate::common::{delete_namespace, kubectl};

#[tokio::test]
async fn rendered_manifests_pass_server_side_dry_run() {
    let (client, ns, _) = setup("op-render").await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cilvest-operator"))
        .args([
            "render",
            "--namespace",
            &ns,
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cilvest.yaml"),
        ])
        .output()
        .expect("run render");
    assert!(
        output.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = std::env::temp_dir().join(format!("{ns}-rendered.yaml"));
    std::fs::write(&rendered, &output.stdout).expect("write rendered");
    let apply = kubectl()
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=cilvest-tests",
            "-n",
            &ns,
            "-f",
        ])
        .arg(&rendered)
        .output()
        .expect("kubectl apply");
    let stdout = String::from_utf8_lossy(&apply.stdout);
    assert!(
        apply.status.success(),
        "dry run failed: {}{}",
        stdout,
        String::from_utf8_lossy(&apply.stderr)
    );
    for kind in [
        "configmap/",
        "deployment.apps/",
        "cronjob.batch/",
        "kafkatopic.kafka.strimzi.io/",
        "elasticsearch.elasticsearch.k8s.elastic.co/",
        "kibana.kibana.k8s.elastic.co/",
    ] {
        assert!(stdout.contains(kind), "{kind} missing from: {stdout}");
    }
    delete_namespace(&client, &ns).await;
}
