//! The daily job's subcommands: `configs` (pipeline.json and transform.py's config for one day) and `ceiling` (bare
//! JSON parsing of a raw day).

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path as FsPath, PathBuf},
    time::Instant,
};

use chrono::NaiveDate;
use cilvest_workers::{google::dataproc, jobs::demo};
use flate2::read::MultiGzDecoder;
use serde_json::{Value, json};

use super::cpu_seconds;

/// `cilvest daily`'s pipeline.json for the demo's embedded pipeline (the one `cilvest demo` generated the day
/// for), and transform.py's config for the same rules and day.
pub(super) fn configs(out: &FsPath, date: NaiveDate, lake: &FsPath, spark_out: &FsPath) -> Value {
    std::fs::create_dir_all(out).expect("config dir");
    let mut config = demo::pipeline_config(None).expect("embedded pipeline");
    config.spec.targets.lake.uri = format!("file://{}", lake.display());
    let pipeline = out.join("pipeline.json");
    std::fs::write(&pipeline, serde_json::to_vec_pretty(&config).expect("json")).expect("write pipeline.json");
    let spark = dataproc::transform_config(
        &config.spec,
        date,
        &format!("file://{}/raw/dt={date}", lake.display()),
        &format!("file://{}", spark_out.display()),
    );
    let spark_path = out.join("spark.json");
    std::fs::write(&spark_path, &spark).expect("write spark.json");
    let script = out.join("transform.py");
    std::fs::write(&script, dataproc::TRANSFORM_PY).expect("write transform.py");
    json!({"pipeline": pipeline, "spark_config": spark_path, "transform_py": script})
}

fn raw_lines(raw: &FsPath) -> (Vec<Vec<u8>>, u64) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(raw)
        .expect("raw dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let mut bodies = Vec::new();
    let mut compressed = 0;
    for path in paths {
        let bytes = std::fs::read(&path).expect("read raw object");
        compressed += bytes.len() as u64;
        let name = path.to_string_lossy();
        if name.ends_with(".ndjson.gz") {
            let mut out = Vec::new();
            MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).expect("gunzip");
            bodies.push(out);
        } else if name.ends_with(".ndjson") {
            bodies.push(bytes);
        }
    }
    (bodies, compressed)
}

/// Bare serde_json over the same decompressed lines the native engine reads: into `IgnoredAny` (tokenising and
/// validating only) and into `Value` (a full tree). Times are this process's CPU seconds, best of `passes`.
pub(super) fn ceiling(raw: &FsPath, passes: u32) -> Value {
    let (bodies, compressed) = raw_lines(raw);
    let bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let me = std::process::id().to_string();
    let mut best = BTreeMap::new();
    for _ in 0..passes {
        for kind in ["ignored_any", "value", "gunzip"] {
            let start = cpu_seconds(&me);
            let wall = Instant::now();
            let mut lines = 0u64;
            if kind == "gunzip" {
                // What reading the .gz objects costs before any parsing.
                let (again, _) = raw_lines(raw);
                lines = again.len() as u64;
            } else {
                for body in &bodies {
                    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        lines += 1;
                        if kind == "value" {
                            let _ = std::hint::black_box(serde_json::from_slice::<Value>(line));
                        } else {
                            let _ = std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(line));
                        }
                    }
                }
            }
            let cpu = (cpu_seconds(&me) - start).max(wall.elapsed().as_secs_f64().min(0.01));
            let entry = best.entry(kind).or_insert((f64::MAX, 0u64));
            if cpu < entry.0 {
                *entry = (cpu, lines);
            }
        }
    }
    let result: serde_json::Map<String, Value> = best
        .into_iter()
        .map(|(kind, (cpu, lines))| {
            (
                kind.to_owned(),
                json!({"cpu_s": cpu, "lines": lines, "bytes_per_cpu_s": bytes as f64 / cpu}),
            )
        })
        .collect();
    json!({"raw_bytes": bytes, "compressed_bytes": compressed, "results": result})
}
