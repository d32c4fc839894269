//! `cilvest demo` end to end, as a newcomer runs it: the binary as a subprocess.
//!
//! - `--input` with a hand-written file of v2 tweets gives the counts worked out by hand below;
//! - the generated run is deterministic and prints every table;
//! - `--kafka` (publisher, broker, consumer) gives the same report as the in-process bus;
//! - the embedded marts equal the BigQuery marts (`warehouse::marts` on the emulator) over the same lake;
//! - the HTML page renders in headless Chromium with one chart series per keyword, visible in a screenshot.

mod chromium;
mod input;
mod runs;

use std::{path::PathBuf, process::Command};

use serde_json::Value;

// Not `mod support`: these few lines keep this test independent of helpers other test binaries grow.

/// The value of `var`, which `scripts/testenv env` exports; panics saying what to start when it is missing.
fn service_env(var: &str, service: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the service with `scripts/testenv up {service}` and \
             `eval \"$(scripts/testenv env)\"`"
        )
    })
}

/// A name no earlier run used.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}-{}",
        nanos ^ u128::from(std::process::id()),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run `cilvest demo ARGS` and return its stdout; panics with stderr when it fails.
fn demo(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cilvest"))
        .args(["--log-format", "text", "demo"])
        .args(args)
        .output()
        .expect("run cilvest demo");
    assert!(
        output.status.success(),
        "cilvest demo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

fn demo_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&demo(&all)).expect("json report")
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn num(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_owned()
}
