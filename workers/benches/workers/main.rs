//! The workers' side of `scripts/bench` (run by hand, never in CI): helpers the driver cannot do from the shell.
//! Each subcommand prints one JSON object on stdout; `scripts/bench` stores it and renders BENCHMARKS.md.
//!
//! ```text
//!  configs   pipeline.json for `cilvest daily` and the transform.py config for the same day and pipeline
//!  ceiling   bare serde_json parsing of a raw day's lines: the practical bytes/s ceiling on this machine
//!  consumer  N tweets pre-produced to a fresh topic, then `cilvest consumer` timed until every one is written
//!  latency   tweets produced at a steady rate, each timed until an object holding it is visible in the lake
//!  producer  `cilvest producer` against the fake X API: CPU and peak memory per 1,000 tweets published
//! ```
//!
//! Needs the release `cilvest` binary and, for Kafka, GCS and X, `eval "$(scripts/testenv env)"`.

mod consuming;
mod daily;
mod producing;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use consuming::{consumer, latency, per_tweet};
use daily::{ceiling, configs};
use producing::producer;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// cargo bench passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Cmd {
    Configs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        date: NaiveDate,
        /// The lake directory (its raw/dt=D is the input of both engines).
        #[arg(long)]
        lake: PathBuf,
        /// Where Spark writes its output.
        #[arg(long)]
        spark_out: PathBuf,
    },
    Ceiling {
        /// A raw day folder: *.ndjson.gz and *.ndjson.
        #[arg(long)]
        raw: PathBuf,
        #[arg(long, default_value_t = 3)]
        passes: u32,
    },
    Consumer {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long)]
        tweets: u64,
        /// `local` or `gcs`.
        #[arg(long)]
        lake: String,
        #[arg(long, default_value_t = 10_000)]
        flush_records: u64,
        /// Run the consumer under `taskset -c CPU`.
        #[arg(long)]
        cpu: Option<u32>,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// The consumer's `--flush-interval`: short, so that a batch left partial at the end (a slow lake write
        /// lets the next batch cut early) does not add the default 60 s to the run.
        #[arg(long, default_value = "1s")]
        flush_interval: String,
    },
    /// The original design's consumer: one object per tweet, one put at a time, in this process.
    PerTweet {
        #[arg(long)]
        tweets: u64,
        #[arg(long)]
        lake: String,
    },
    Latency {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long)]
        lake: String,
        /// Tweets per second, produced evenly.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 150)]
        seconds: u64,
    },
    Producer {
        #[arg(long)]
        cilvest: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        tweets: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Cmd::Configs {
            out,
            date,
            lake,
            spark_out,
        } => configs(&out, date, &lake, &spark_out),
        Cmd::Ceiling { raw, passes } => ceiling(&raw, passes),
        Cmd::Consumer {
            cilvest,
            tweets,
            lake,
            flush_records,
            cpu,
            partitions,
            flush_interval,
        } => runtime().block_on(consumer(
            &cilvest,
            tweets,
            &lake,
            (flush_records, &flush_interval),
            cpu,
            partitions,
        )),
        Cmd::PerTweet { tweets, lake } => runtime().block_on(per_tweet(tweets, &lake)),
        Cmd::Latency {
            cilvest,
            lake,
            rate,
            seconds,
        } => runtime().block_on(latency(&cilvest, &lake, rate, seconds)),
        Cmd::Producer { cilvest, tweets } => runtime().block_on(producer(&cilvest, tweets)),
    };
    println!("{result}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of metric `name`; None while the endpoint is not up.
async fn metric(http: &reqwest::Client, port: u16, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
