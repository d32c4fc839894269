//! The operator's side of `scripts/bench` (run by hand, never in CI), against the real API server of
//! `scripts/testenv up k8s` in a fresh namespace that is deleted afterwards. Prints one JSON object on stdout.
//!
//! ```text
//!  1 pipeline (warm-up) ──▶ idle RSS ──▶ N pipelines one after another: create ──▶ every child seen by a watch
//!  ──▶ burst up to M pipelines ──▶ idle RSS ──▶ operator restarted: resync of M unchanged pipelines, resourceVersions
//!  of every pipeline and child compared before and after (a write of any kind changes one)
//! ```
//!
//! Pipelines are `examples/cilvest.yaml` (managed Elasticsearch and Kibana included) with the schedule suspended,
//! so the shared test cluster does not get a producer pod per pipeline. `--namespaces K` spreads them round-robin
//! over K fresh namespaces and runs the operator cluster-wide (as the chart does); with 1 it watches only its own.
//! At each idle point it records where the operator's resident memory is (anonymous or file-backed pages);
//! `--allocator-stats` adds glibc's own account (held from the system, in use), read through gdb.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
    runtime::watcher,
};
use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;
use cilvest_operator::meta::{MANAGER, PIPELINE_LABEL};
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, delete_namespace, install_crd, install_crds_yaml, status_kib,
    temp_namespace,
};

const FULL: &str = include_str!("../../examples/cilvest.yaml");

/// The kwok node the bench adds for its pods, removed at the end.
const BENCH_NODE: &str = "kwok-bench";

/// Children seen so far: `namespace/pipeline` -> each child (kind/name) seen.
type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

fn child_kinds() -> Vec<ApiResource> {
    [
        ("", "v1", "ConfigMap"),
        ("", "v1", "ServiceAccount"),
        ("apps", "v1", "Deployment"),
        ("batch", "v1", "CronJob"),
        ("kafka.strimzi.io", "v1", "KafkaTopic"),
        ("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch"),
        ("kibana.k8s.elastic.co", "v1", "Kibana"),
    ]
    .into_iter()
    .map(|(g, v, k)| ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k)))
    .collect()
}

fn pipeline(name: &str) -> CilvestPipeline {
    let mut p: Value =
        serde_json::to_value(serde_saphyr::from_str::<CilvestPipeline>(FULL).expect("example")).expect("json");
    p["metadata"] = json!({"name": name});
    p["spec"]["topics"]["raw"]["name"] = json!(format!("cilvest.{name}.raw"));
    p["spec"]["schedule"]["suspend"] = json!(true);
    p.as_object_mut().map(|o| o.remove("status"));
    serde_json::from_value(p).expect("pipeline")
}

/// Watch every child kind cluster-wide and record each child of `namespaces` under its pipeline's label.
fn watch_children(client: &Client, namespaces: &[String], seen: &Seen) {
    let namespaces: Arc<BTreeSet<String>> = Arc::new(namespaces.iter().cloned().collect());
    for kind in child_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind);
        let (seen, namespaces) = (seen.clone(), namespaces.clone());
        let config = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
        tokio::spawn(async move {
            let mut stream = watcher(api, config).boxed();
            while let Some(event) = stream.next().await {
                let objects = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                for o in objects {
                    let ns = o.namespace().unwrap_or_default();
                    if !namespaces.contains(&ns) {
                        continue;
                    }
                    if let Some(p) = o.labels().get(PIPELINE_LABEL) {
                        let mut seen = seen.lock().expect("seen");
                        seen.entry(format!("{ns}/{p}"))
                            .or_default()
                            .insert(format!("{}/{}", kind.kind, o.name_any()));
                    }
                }
            }
        });
    }
}

fn children_of(seen: &Seen, name: &str) -> usize {
    seen.lock().expect("seen").get(name).map_or(0, BTreeSet::len)
}

/// resourceVersion of every pipeline and every labelled child in `namespaces`.
async fn versions(client: &Client, namespaces: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        out.extend(versions_in(client, ns).await);
    }
    out
}

async fn versions_in(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    for kind in child_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind);
        for o in api.list(&selector).await.expect("list children").items {
            out.insert(
                format!("{ns}/{}/{}", kind.kind, o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
    }
    for p in Api::<CilvestPipeline>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list pipelines")
        .items
    {
        out.insert(
            format!("{ns}/CilvestPipeline/{}", p.name_any()),
            p.resource_version().unwrap_or_default(),
        );
    }
    out
}

/// The status of every pipeline in `namespaces`, keyed like [`versions`].
async fn statuses(client: &Client, namespaces: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for p in Api::<CilvestPipeline>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("list pipelines")
            .items
        {
            let status = serde_json::to_value(&p.status).unwrap_or_default();
            out.insert(format!("{ns}/CilvestPipeline/{}", p.name_any()), status);
        }
    }
    out
}

async fn wait_for(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Wait until `reconciles_total` stops growing for `quiet`, i.e. the operator is idle.
async fn settle(operator: &Operator, quiet: Duration, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut last = -1.0;
    loop {
        let now = operator.metric("cilvest_operator_reconciles_total").await;
        if now == last || Instant::now() > deadline {
            return;
        }
        last = now;
        tokio::time::sleep(quiet).await;
    }
}

fn vm_hwm_mib(operator: &Operator) -> f64 {
    status_kib(&operator_pid(operator), "VmHWM:").unwrap_or(0.0) / 1024.0
}

/// Where the operator's resident memory is, at an idle moment: anonymous against file-backed pages (the binary's
/// touched text) and threads, from `/proc`; with `--allocator-stats`, also glibc's own account of its arenas (bytes
/// held from the system against bytes in use), which `malloc_stats()` prints to the operator's stderr when gdb
/// calls it. The difference between the two is what the allocator keeps after a peak.
fn memory(operator: &Operator, allocator: bool) -> Value {
    let pid = operator_pid(operator);
    let mib = |name: &str| status_kib(&pid, name).map(|k| k / 1024.0);
    let mut memory = json!({
        "anon_mib": mib("RssAnon:"), "file_mib": mib("RssFile:"), "threads": status_kib(&pid, "Threads:"),
    });
    if allocator {
        let logged = operator.logs().len();
        let gdb = std::process::Command::new("gdb")
            .args(["-p", &pid, "-batch", "-nx", "-ex", "call (void) malloc_stats()"])
            .output();
        assert!(
            gdb.is_ok_and(|o| o.status.success()),
            "--allocator-stats needs gdb (apt install gdb)"
        );
        let logs = operator.logs();
        let dump = logs.get(logged..).unwrap_or_default();
        let bytes = |label: &str| {
            dump.rsplit_once("Total (incl. mmap):")
                .and_then(|(_, total)| total.lines().find(|l| l.starts_with(label)))
                .and_then(|l| l.rsplit('=').next()?.trim().parse::<f64>().ok())
                .map(|b| b / 1024.0 / 1024.0)
        };
        memory["allocator"] = json!({
            "arenas": dump.lines().filter(|l| l.starts_with("Arena ")).count(),
            "system_mib": bytes("system bytes"), "in_use_mib": bytes("in use bytes"),
        });
    }
    memory
}

/// The operator's pid, found by its metrics port in its command line.
fn operator_pid(operator: &Operator) -> String {
    let needle = format!("127.0.0.1:{}", operator.metrics_port);
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            (text.contains("cilvest-operator") && text.contains(&needle))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .next()
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let measured = arg("--pipelines", 100);
    let total = arg("--idle-pipelines", 500).max(measured + 1);
    let namespace_count = arg("--namespaces", 1).max(1);
    // Creates per second in the burst (0: as fast as the API server takes them).
    let rate = arg("--rate", 0);
    let allocator = args.iter().any(|a| a == "--allocator-stats");

    let client = client().await;
    // Room for every pipeline's consumer pod: the test cluster's one kwok node takes 110 pods, and the Deployments
    // of the rest would stop progressing after 10 minutes, a real status change in the middle of the measurement.
    let nodes: Api<Node> = Api::all(client.clone());
    let room: Node = serde_json::from_value(json!({
        "metadata": {"name": BENCH_NODE, "labels": {"type": "kwok"},
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "status": {"capacity": {"cpu": "4000", "memory": "16Ti", "pods": (2 * total).to_string()},
                   "allocatable": {"cpu": "4000", "memory": "16Ti", "pods": (2 * total).to_string()}}
    }))
    .expect("node");
    let _ = nodes.delete(BENCH_NODE, &Default::default()).await;
    nodes.create(&PostParams::default(), &room).await.expect("bench node");
    install_crd(&client).await;
    install_crds_yaml(&client, STRIMZI_CRD).await;
    install_crds_yaml(&client, ECK_CRDS).await;
    let mut namespaces = Vec::new();
    for _ in 0..namespace_count {
        let ns = temp_namespace(&client, "bench-operator").await;
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "cilvest-x-api"}, "stringData": {"bearerToken": "bench-token-not-real"}
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
        namespaces.push(ns);
    }
    let apis: Vec<Api<CilvestPipeline>> = namespaces
        .iter()
        .map(|ns| Api::namespaced(client.clone(), ns))
        .collect();
    let seen: Seen = Arc::default();
    watch_children(&client, &namespaces, &seen);
    let start_operator = || match namespaces.as_slice() {
        [only] => Operator::start(only, None),
        _ => Operator::start_with(
            &["run".to_owned(), "--leader-election".to_owned(), "false".to_owned()],
            &[],
        ),
    };
    let mut operator = start_operator();

    // Warm-up: the first pipeline fixes how many children a pipeline has.
    let name = |i: usize| format!("bench-{i:03}");
    let key = |i: usize| format!("{}/{}", namespaces[i % namespace_count], name(i));
    let create = |i: usize| {
        let api = apis[i % namespace_count].clone();
        async move {
            api.create(&PostParams::default(), &pipeline(&name(i)))
                .await
                .expect("create");
        }
    };
    create(0).await;
    let mut expected = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = children_of(&seen, &key(0));
        if now > 0 && now == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the first pipeline's children never settled");
        expected = now;
    }
    settle(&operator, Duration::from_secs(3), 60).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss_1 = operator.rss_mib();
    let memory_1 = memory(&operator, allocator);

    // Pipelines created one after another, each once the previous one has all its children.
    let mut latencies = Vec::new();
    for i in 1..=measured {
        let started = Instant::now();
        create(i).await;
        let n = key(i);
        wait_for(&format!("children of {n}"), 120, || children_of(&seen, &n) >= expected).await;
        latencies.push(started.elapsed().as_secs_f64());
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);

    // The rest in a burst (paced at `--rate` creates per second, each one's create -> all children timed), then idle.
    let burst = Instant::now();
    let created: Arc<Mutex<BTreeMap<usize, Instant>>> = Arc::default();
    let creator = {
        let created = created.clone();
        let apis = apis.clone();
        tokio::spawn(async move {
            for i in measured + 1..total {
                if rate > 0 {
                    let due = burst + Duration::from_secs_f64((i - measured - 1) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let at = Instant::now();
                apis[i % namespace_count]
                    .create(&PostParams::default(), &pipeline(&name(i)))
                    .await
                    .expect("create");
                created.lock().expect("created").insert(i, at);
            }
        })
    };
    let mut burst_latencies = Vec::new();
    let mut pending: BTreeSet<usize> = (measured + 1..total).collect();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "the burst's children never all appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let created = created.lock().expect("created").clone();
        let seen = seen.lock().expect("seen");
        pending.retain(|i| match created.get(i) {
            Some(at) if seen.get(&key(*i)).is_some_and(|c| c.len() >= expected) => {
                burst_latencies.push((now - *at).as_secs_f64());
                false
            }
            _ => true,
        });
    }
    creator.await.expect("creator");
    let burst_s = burst.elapsed().as_secs_f64();
    burst_latencies.sort_by(f64::total_cmp);
    // A burst of thousands keeps the operator busy long after the last child appears (status follows the
    // children's own status): wait until it is quiet, for up to 15 minutes.
    settle(&operator, Duration::from_secs(5), 900).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_rss_total = operator.rss_mib();
    let peak_rss_total = vm_hwm_mib(&operator);
    let memory_total = memory(&operator, allocator);
    let reconciles_before_restart = operator.metric("cilvest_operator_reconciles_total").await;

    // Resync: a fresh operator over the unchanged pipelines.
    operator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = versions(&client, &namespaces).await;
    let statuses_before = statuses(&client, &namespaces).await;
    let resync = Instant::now();
    let operator = start_operator();
    let deadline = Instant::now() + Duration::from_secs(600);
    while operator.metric("cilvest_operator_reconciles_total").await < total as f64 {
        assert!(
            Instant::now() < deadline,
            "the new operator did not reconcile every pipeline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync_s = resync.elapsed().as_secs_f64();
    settle(&operator, Duration::from_secs(3), 120).await;
    let after = versions(&client, &namespaces).await;
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
        .collect();
    // What a restart rewrote in a pipeline's status, for the first few that changed.
    let statuses_after = statuses(&client, &namespaces).await;
    let status_changes: Vec<Value> = changed
        .iter()
        .filter(|k| k.contains("/CilvestPipeline/"))
        .take(3)
        .map(|k| json!({"pipeline": k, "before": statuses_before.get(*k), "after": statuses_after.get(*k)}))
        .collect();
    let resync_rss = operator.rss_mib();
    let memory_resync = memory(&operator, allocator);
    let resync_fetches = operator.metric("cilvest_operator_drift_fetches_total").await;
    let updated_lines = operator
        .logs()
        .lines()
        .filter(|l| l.contains("children updated"))
        .count();
    drop(operator);
    for ns in &namespaces {
        delete_namespace(&client, ns).await;
    }
    let _ = nodes.delete(BENCH_NODE, &Default::default()).await;
    // A next run's cluster-wide operator would cache a namespace still being deleted: wait until they are gone.
    let all: Api<Namespace> = Api::all(client.clone());
    let gone = Instant::now() + Duration::from_secs(900);
    for ns in &namespaces {
        while all.get_opt(ns).await.ok().flatten().is_some() && Instant::now() < gone {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    println!(
        "{}",
        json!({
            "namespaces": namespace_count, "children_per_pipeline": expected, "measured": measured, "total": total,
            "create_to_children_s": {"p50": percentile(&sorted, 0.50), "p99": percentile(&sorted, 0.99),
                                      "min": sorted.first(), "max": sorted.last()},
            "latencies_s": latencies,
            "burst_s": burst_s, "burst_rate_per_s": rate,
            "burst_create_to_children_s": {"p50": percentile(&burst_latencies, 0.50),
                                            "p99": percentile(&burst_latencies, 0.99),
                                            "max": burst_latencies.last(), "count": burst_latencies.len()},
            "idle_rss_mib_1": idle_rss_1, "idle_rss_mib_total": idle_rss_total,
            "peak_rss_mib_total": peak_rss_total, "reconciles_before_restart": reconciles_before_restart,
            "memory": {"idle_1": memory_1, "idle_total": memory_total, "after_restart": memory_resync},
            "resync": {"objects_compared": before.len(), "changed": changed.len(),
                       "changed_examples": changed.iter().take(10).collect::<Vec<_>>(),
                       "status_changes": status_changes,
                       "children_updated_log_lines": updated_lines, "seconds_to_reconcile_all": resync_s,
                       "rss_mib_after": resync_rss, "drift_fetches": resync_fetches},
        })
    );
}
