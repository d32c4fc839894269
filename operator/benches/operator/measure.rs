//! What the bench measures of a running operator and the cluster: resourceVersions and statuses before and after
//! a restart, when the operator is idle, its memory (`/proc`, glibc through gdb) and CPU, and a restart itself.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, ListParams},
};
use serde_json::{Value, json};

use cilvest_crds::CilvestPipeline;
use cilvest_operator::meta::MANAGER;

use crate::{
    child_kinds,
    common::{Operator, status_kib},
};

/// resourceVersion of every pipeline and every labelled child in `namespaces`, with its last writer.
pub(crate) async fn versions(client: &Client, namespaces: &[String]) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        out.extend(versions_in(client, ns).await);
    }
    out
}

pub(crate) async fn versions_in(client: &Client, ns: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    for kind in child_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind);
        for o in api.list(&selector).await.expect("list children").items {
            out.insert(
                format!("{ns}/{}/{}", kind.kind, o.name_any()),
                (o.resource_version().unwrap_or_default(), last_writer(&o.metadata)),
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
            (p.resource_version().unwrap_or_default(), last_writer(&p.metadata)),
        );
    }
    out
}

/// The field manager of an object's most recent `managedFields` entry, with its operation and subresource
/// (`kube-controller-manager Update status`): who changed it last.
fn last_writer(meta: &ObjectMeta) -> String {
    meta.managed_fields
        .iter()
        .flatten()
        .max_by_key(|entry| entry.time.as_ref().map(|time| time.0))
        .map(|entry| {
            format!(
                "{} {} {}",
                entry.manager.as_deref().unwrap_or("?"),
                entry.operation.as_deref().unwrap_or("?"),
                entry.subresource.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_owned()
        })
        .unwrap_or_default()
}

/// The status of every pipeline in `namespaces`, keyed like [`versions`].
pub(crate) async fn statuses(client: &Client, namespaces: &[String]) -> BTreeMap<String, Value> {
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

pub(crate) async fn wait_for(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Wait until `reconciles_total` stops growing for `quiet`, i.e. the operator is idle.
pub(crate) async fn settle(operator: &Operator, quiet: Duration, seconds: u64) {
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

pub(crate) fn vm_hwm_mib(operator: &Operator) -> f64 {
    status_kib(&operator_pid(operator), "VmHWM:").unwrap_or(0.0) / 1024.0
}

/// Where the operator's resident memory is, at an idle moment: anonymous against file-backed pages (the binary's
/// touched text) and threads, from `/proc`; with `--allocator-stats`, also glibc's own account of its arenas (bytes
/// held from the system against bytes in use), which `malloc_stats()` prints to the operator's stderr when gdb
/// calls it. The difference between the two is what the allocator keeps after a peak.
pub(crate) fn memory(operator: &Operator, allocator: bool) -> Value {
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

/// The pid of the process named `name` (its `comm`), if one runs.
pub(crate) fn pid_of(name: &str) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// CPU seconds (user and system) a process has used, from `/proc/PID/stat` in clock ticks of 1/100 s.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// The processes beside the operator on this machine whose CPU the bench records (`comm`, so at most 15 bytes).
const SERVERS: [&str; 4] = ["kube-apiserver", "etcd", "kube-controller", "kwok"];

/// CPU seconds used so far by each of `SERVERS` that runs.
pub(crate) fn servers_cpu() -> Vec<(&'static str, Option<f64>)> {
    SERVERS
        .iter()
        .map(|name| (*name, pid_of(name).as_deref().and_then(cpu_seconds)))
        .collect()
}

/// What each of `SERVERS` used since `before`, and the operator's CPU since `operator_before` (0 for its whole life).
pub(crate) fn cpu_since(operator: &Operator, operator_before: f64, before: &[(&str, Option<f64>)]) -> Value {
    let mut cpu = json!({"operator": cpu_seconds(&operator_pid(operator)).map(|now| now - operator_before)});
    for ((name, now), (_, then)) in servers_cpu().iter().zip(before) {
        cpu[*name] = json!(now.zip(*then).map(|(a, b)| a - b));
    }
    cpu
}

/// The operator's pid, found by its metrics port in its command line.
pub(crate) fn operator_pid(operator: &Operator) -> String {
    let needle = format!("127.0.0.1:{}", operator.metrics_port);
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            // By the port alone: a `--restart-with` build may have any file name.
            (text.contains("--metrics-addr") && text.contains(&needle))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .next()
        .unwrap_or_default()
}

/// Restart the operator (already killed) with `start` over the unchanged pipelines: the time until it has
/// reconciled all `total`, and what it changed (resourceVersions of every pipeline and child before and after).
pub(crate) async fn restart(
    client: &Client,
    namespaces: &[String],
    total: usize,
    start: &dyn Fn() -> Operator,
) -> (Operator, Value) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = versions(client, namespaces).await;
    let statuses_before = statuses(client, namespaces).await;
    let servers_before = servers_cpu();
    let resync = Instant::now();
    let operator = start();
    let deadline = Instant::now() + Duration::from_secs(600);
    while operator.metric("cilvest_operator_reconciles_total").await < total as f64 {
        assert!(
            Instant::now() < deadline,
            "the new operator did not reconcile every pipeline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync_s = resync.elapsed().as_secs_f64();
    // Where the CPU of the resync went: the new operator's own (all of its life so far) and the servers' share.
    let cpu = cpu_since(&operator, 0.0, &servers_before);
    settle(&operator, Duration::from_secs(3), 120).await;
    let after = versions(client, namespaces).await;
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, (version, _))| after.get(*k).map(|(v, _)| v) != Some(version))
        .map(|(k, _)| k)
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
        .collect();
    // Who changed them, by kind: the last writer of each after the restart.
    let mut writers: BTreeMap<String, usize> = BTreeMap::new();
    for key in &changed {
        let kind = key.split('/').nth(1).unwrap_or_default();
        let writer = after.get(*key).map(|(_, writer)| writer.as_str()).unwrap_or("deleted");
        *writers.entry(format!("{kind} by {writer}")).or_default() += 1;
    }
    // What a restart rewrote in a pipeline's status, for the first few that changed.
    let statuses_after = statuses(client, namespaces).await;
    let status_changes: Vec<Value> = changed
        .iter()
        .filter(|k| k.contains("/CilvestPipeline/"))
        .take(3)
        .map(|k| json!({"pipeline": k, "before": statuses_before.get(*k), "after": statuses_after.get(*k)}))
        .collect();
    let updated_lines = operator
        .logs()
        .lines()
        .filter(|l| l.contains("children updated"))
        .count();
    let result = json!({
        "objects_compared": before.len(), "changed": changed.len(), "changed_by": writers,
        "changed_examples": changed.iter().take(10).collect::<Vec<_>>(),
        "status_changes": status_changes,
        "children_updated_log_lines": updated_lines, "seconds_to_reconcile_all": resync_s, "cpu_s": cpu,
        "rss_mib_after": operator.rss_mib(),
        "drift_fetches": operator.metric("cilvest_operator_drift_fetches_total").await,
    });
    (operator, result)
}
