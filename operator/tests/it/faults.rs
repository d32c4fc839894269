//! Faults of the operator's own process and of the API server: an operator SIGKILLed in the middle of a reconcile
//! leaves nothing a new one cannot converge, and an operator outlives an API server restart and carries on. The
//! restart uses a private kube-apiserver (its own etcd, ports and data) so the shared one stays up for other tests.

use crate::common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};

use cilvest_crds::CilvestPipeline;
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, create_token_secret, delete_namespace, free_port, install_crd,
    install_crds_yaml, labelled_children, temp_namespace, wait_until,
};

const FULL: &str = include_str!("../../../examples/cilvest.yaml");
const MANAGED: &str = "app.kubernetes.io/managed-by=cilvest-operator";

fn condition_status(pipeline: &CilvestPipeline, type_: &str) -> Option<String> {
    common::condition(pipeline, type_).map(|(status, _, _)| status)
}

fn pipeline(name: &str) -> CilvestPipeline {
    let mut pipeline: CilvestPipeline = serde_saphyr::from_str(FULL).expect("example");
    pipeline.metadata.name = Some(name.to_owned());
    pipeline
}

/// Every labelled child in `ns` as kind/name -> the uids of its owner references.
async fn children(client: &Client, ns: &str) -> BTreeMap<String, Vec<String>> {
    labelled_children(client, ns)
        .await
        .into_iter()
        .map(|(key, meta)| {
            (
                key,
                meta.owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.uid)
                    .collect(),
            )
        })
        .collect()
}

/// What the full example makes for pipeline `name`, each owned by `uid` alone.
fn expected_children(name: &str, uid: &str) -> BTreeMap<String, Vec<String>> {
    let mut names = vec![format!("ConfigMap/{name}-config")];
    for worker in ["producer", "consumer", "daily"] {
        names.push(format!("ServiceAccount/{name}-{worker}"));
    }
    names.push(format!("Deployment/{name}-producer"));
    names.push(format!("Deployment/{name}-consumer"));
    names.push(format!("CronJob/{name}-daily"));
    names.push(format!("KafkaTopic/{name}-raw"));
    names.push(format!("Elasticsearch/{name}"));
    names.push(format!("Kibana/{name}"));
    names.into_iter().map(|n| (n, vec![uid.to_owned()])).collect()
}

/// Wait until `name` has each of its children exactly once, every labelled child named after it is owned by it
/// alone (children added later to the operator count too), and its status is for the current generation and says it
/// is rolling out (Strimzi and ECK do not run here, so Progressing is as far as it gets).
async fn assert_converged(client: &Client, ns: &str, name: &str, seconds: u64) {
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), ns);
    let uid = pipelines.get(name).await.expect("pipeline").uid().expect("uid");
    let expected = expected_children(name, &uid);
    wait_until("every child exactly once, owned by the pipeline", seconds, || async {
        let live = children(client, ns).await;
        let all_there = expected.iter().all(|(k, owners)| live.get(k) == Some(owners));
        let owned_alone = live
            .iter()
            .filter(|(k, _)| {
                k.split_once('/')
                    .is_some_and(|(_, n)| n == name || n.starts_with(&format!("{name}-")))
            })
            .all(|(_, owners)| owners.as_slice() == std::slice::from_ref(&uid));
        (all_there && owned_alone).then_some(())
    })
    .await;
    wait_until("a status for the current generation", seconds, || async {
        let p = pipelines.get(name).await.ok()?;
        let status = p.status.as_ref()?;
        (status.observed_generation == p.metadata.generation && condition_status(&p, "Progressing")? == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_operator_killed_mid_reconcile_leaves_nothing_the_next_one_cannot_converge() {
    let client = client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ns = temp_namespace(&client, "fault-kill").await;
    create_token_secret(&client, &ns).await;

    // The ConfigMap is the first write of a pass: SIGKILL the operator the moment it appears.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut first_child = watcher(config_maps, watcher::Config::default().labels(MANAGED))
        .applied_objects()
        .boxed();
    let mut operator = Operator::start(&ns, None);
    Api::<CilvestPipeline>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pipeline("cilvest"))
        .await
        .expect("create pipeline");
    common::within("the first child", 60, first_child.try_next())
        .await
        .expect("watch");
    operator.kill();
    let at_kill = children(&client, &ns).await;
    eprintln!(
        "children when the operator was killed: {:?}",
        at_kill.keys().collect::<Vec<_>>()
    );
    assert!(!at_kill.is_empty());

    // A new operator converges: every child once, with one owner, whatever the first one had written.
    let operator = Operator::start(&ns, None);
    assert_converged(&client, &ns, "cilvest", 60).await;
    let logs = operator.logs();
    assert!(!logs.contains("\"level\":\"ERROR\""), "{logs}");
    drop(operator);
    delete_namespace(&client, &ns).await;
}

/// A kube-apiserver and etcd of this test's own on free ports, reusing the test environment's certificates (their
/// serving certificate names 127.0.0.1, whatever the port).
struct PrivateApiServer {
    etcd: Child,
    apiserver: Option<Child>,
    args: Vec<String>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
}

fn k8s_bin(name: &str) -> PathBuf {
    let dir = std::env::var("CILVEST_K8S_BIN")
        .expect("CILVEST_K8S_BIN is not set: run `scripts/testenv up k8s` and `eval \"$(scripts/testenv env)\"`");
    PathBuf::from(dir).join(name)
}

impl PrivateApiServer {
    async fn start() -> Self {
        let shared = PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG: run `scripts/testenv up k8s`"));
        let pki = shared.parent().expect("k8s dir").join("pki");
        let dir = std::env::temp_dir().join(format!("cilvest-private-apiserver-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = dir.join("apiserver.log");
        let etcd = Command::new(k8s_bin("etcd"))
            .arg("--name=private")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-cluster=private=http://127.0.0.1:{peer_port}"))
            .args(["--unsafe-no-fsync", "--log-level=warn"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).expect("etcd log"))
            .spawn()
            .expect("start etcd");
        let p = |file: &str| pki.join(file).display().to_string();
        let args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            "--endpoint-reconciler-type=none".to_owned(),
        ];
        let text = std::fs::read_to_string(&shared).expect("read kubeconfig");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, text.replace(":16443", &format!(":{api_port}"))).expect("write kubeconfig");
        let mut server = Self {
            etcd,
            apiserver: None,
            args,
            dir,
            kubeconfig,
            log,
        };
        server.start_apiserver().await;
        server
    }

    async fn start_apiserver(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("apiserver log");
        let child = Command::new(k8s_bin("kube-apiserver"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver");
        self.apiserver = Some(child);
        let kubeconfig = self.kubeconfig.clone();
        wait_until("the private kube-apiserver to be ready", 120, || {
            let kubeconfig = kubeconfig.clone();
            async move {
                common::kubectl()
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["get", "--raw", "/readyz"])
                    .output()
                    .is_ok_and(|o| o.status.success())
                    .then_some(())
            }
        })
        .await;
    }

    /// SIGTERM, as a rolling control-plane upgrade would, and wait until it has exited.
    fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    async fn client(&self) -> Client {
        let config = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }

    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

impl Drop for PrivateApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn http_status(port: u16, path: &str) -> Option<u16> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test]
async fn the_operator_outlives_an_api_server_restart_and_reconciles_what_came_after() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = PrivateApiServer::start().await;
    let client = server.client().await;
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let ns = temp_namespace(&client, "fault-apiserver").await;
    create_token_secret(&client, &ns).await;

    let kubeconfig = server.kubeconfig().display().to_string();
    let args: Vec<String> = ["run", "--namespace", &ns, "--leader-election", "false"]
        .map(str::to_owned)
        .to_vec();
    let operator = Operator::start_with(&args, &[("KUBECONFIG", &kubeconfig)]);
    let pipelines: Api<CilvestPipeline> = Api::namespaced(client.clone(), &ns);
    pipelines
        .create(&PostParams::default(), &pipeline("before"))
        .await
        .expect("create pipeline");
    assert_converged(&client, &ns, "before", 60).await;

    server.stop_apiserver();
    // Long enough for every watch to notice and retry a few times.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        http_status(operator.metrics_port, "/livez").await,
        Some(200),
        "the operator exited or hung while the API server was down:\n{}",
        operator.logs()
    );
    server.start_apiserver().await;
    let restarted = std::time::Instant::now();

    // A pipeline made after the restart is reconciled by the same process: its watches came back. Each watch waits
    // by its own backoff (capped at 4 s) and its errors do not reach the controller's trigger stream, which would
    // back off all triggers once per watch error (13 watches: 80 to 90 s; 4.8 s since, `controller/watches.rs`).
    pipelines
        .create(&PostParams::default(), &pipeline("after"))
        .await
        .expect("create pipeline after the restart");
    assert_converged(&client, &ns, "after", 45).await;
    eprintln!(
        "pipeline reconciled {:?} after the API server was ready again",
        restarted.elapsed()
    );
    assert_converged(&client, &ns, "before", 60).await;
    assert_eq!(http_status(operator.metrics_port, "/readyz").await, Some(200));
    assert_eq!(http_status(operator.metrics_port, "/livez").await, Some(200));
    drop(operator);
}
