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
//! `--restart-with PATH` (repeatable) restarts it again over the same pipelines with another build of
//! `cilvest-operator`, in the order given, so trees are compared on one cluster state (`restarts` in the output).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "operator/measure.rs"]
mod measure;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
    runtime::watcher,
};
use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;
use cilvest_operator::meta::{MANAGER, PIPELINE_LABEL};
use common::{
    ECK_CRDS, Operator, STRIMZI_CRD, client, delete_namespace, install_crd, install_crds_yaml, temp_namespace,
};

use measure::{
    cpu_seconds, cpu_since, memory, operator_pid, percentile, restart, servers_cpu, settle, vm_hwm_mib, wait_for,
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
    let this_tree = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cilvest-operator"));
    let start_operator = |binary: &std::path::Path| match namespaces.as_slice() {
        [only] => Operator::start_binary(binary, only, None),
        _ => Operator::start_binary_with(
            binary,
            &["run".to_owned(), "--leader-election".to_owned(), "false".to_owned()],
            &[],
        ),
    };
    let mut operator = start_operator(&this_tree);

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
    let operator_cpu_before = cpu_seconds(&operator_pid(&operator)).unwrap_or_default();
    let servers_before = servers_cpu();
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
    // Where the CPU of the burst went, until the last pipeline's children were all seen.
    let burst_cpu = cpu_since(&operator, operator_cpu_before, &servers_before);
    burst_latencies.sort_by(f64::total_cmp);
    // A burst of thousands keeps the operator busy long after the last child appears (status follows the
    // children's own status): wait until it is quiet, for up to 15 minutes (`--settle-seconds`; at 2,000 pipelines
    // the five-minute resyncs alone never leave it quiet for 5 s).
    settle(&operator, Duration::from_secs(5), arg("--settle-seconds", 900) as u64).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_rss_total = operator.rss_mib();
    let peak_rss_total = vm_hwm_mib(&operator);
    let memory_total = memory(&operator, allocator);
    let reconciles_before_restart = operator.metric("cilvest_operator_reconciles_total").await;

    // Resync: a fresh operator over the unchanged pipelines.
    operator.kill();
    let (mut operator, first) = restart(&client, &namespaces, total, &|| start_operator(&this_tree)).await;
    let memory_resync = memory(&operator, allocator);
    // More restarts over the same pipelines, with each `--restart-with` build in turn: trees compared on one state.
    let mut restarts = Vec::new();
    for binary in args
        .iter()
        .zip(args.iter().skip(1))
        .filter(|(flag, _)| *flag == "--restart-with")
        .map(|(_, path)| std::path::PathBuf::from(path))
    {
        operator.kill();
        let (next, mut result) = restart(&client, &namespaces, total, &|| start_operator(&binary)).await;
        result["binary"] = json!(binary);
        restarts.push(result);
        operator = next;
    }
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
            "burst_s": burst_s, "burst_rate_per_s": rate, "burst_cpu_s": burst_cpu,
            "burst_create_to_children_s": {"p50": percentile(&burst_latencies, 0.50),
                                            "p99": percentile(&burst_latencies, 0.99),
                                            "max": burst_latencies.last(), "count": burst_latencies.len()},
            "idle_rss_mib_1": idle_rss_1, "idle_rss_mib_total": idle_rss_total,
            "peak_rss_mib_total": peak_rss_total, "reconciles_before_restart": reconciles_before_restart,
            "memory": {"idle_1": memory_1, "idle_total": memory_total, "after_restart": memory_resync},
            "resync": first, "restarts": restarts,
        })
    );
}
