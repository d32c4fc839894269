//! BigQuery going down mid-run, through a private emulator the test stops and starts: the run fails clearly and the
//! rerun leaves one copy of each tweet.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use cilvest_crds::DailyRun;
use cilvest_workers::google::bigquery::Warehouse;

use super::marts::assert_warehouse_tweets;
use super::{DAY1, ExpectedDay, Setup, assert_report, int, select, sorted};
use crate::support::{service_env, unique};

/// A BigQuery emulator of one test's own, on free ports with its own persistent data directory, so that stopping it
/// disturbs no other test. It reads load jobs' `gs://` URIs from the shared emulator's local root, as `Setup` expects.
struct PrivateBigQuery {
    process: Option<std::process::Child>,
    rest_port: u16,
    grpc_port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PrivateBigQuery {
    async fn start() -> Self {
        let mut emulator = Self {
            process: None,
            rest_port: free_port(),
            grpc_port: free_port(),
            dir: std::env::temp_dir().join(unique("cilvest-private-bq")),
        };
        emulator.restart().await;
        emulator
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// Start the emulator (again) on the same ports and data, and wait until it answers `/readyz`.
    async fn restart(&mut self) {
        // `scripts/testenv.d/bigquery.sh` runs bqemulator from the venv whose python it exports.
        let python = PathBuf::from(service_env("CILVEST_PYTHON", "bigquery"));
        let bqemulator = python.with_file_name("bqemulator");
        for sub in ["data", "uploads"] {
            std::fs::create_dir_all(self.dir.join(sub)).expect("emulator dir");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bqemulator.log"))
            .expect("emulator log");
        let child = std::process::Command::new(bqemulator)
            .current_dir(&self.dir)
            .env(
                "BQEMU_GCS_LOCAL_ROOT",
                service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery"),
            )
            .env("BQEMU_UPLOAD_STAGING_DIR", self.dir.join("uploads"))
            .args(["start", "--rest-host", "127.0.0.1", "--rest-port"])
            .arg(self.rest_port.to_string())
            .args(["--grpc-host", "127.0.0.1", "--grpc-port"])
            .arg(self.grpc_port.to_string())
            .args([
                "--project",
                &service_env("CILVEST_BQ_PROJECT", "bigquery"),
                "--persistent",
            ])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start bqemulator");
        self.process = Some(child);
        let ready = format!("{}/readyz", self.url());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private bqemulator did not start: see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn warehouse(&self) -> Warehouse {
        let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
        Warehouse::connect(Some(&self.url()), &project, "asia-southeast2")
            .await
            .expect("warehouse")
    }
}

impl Drop for PrivateBigQuery {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::test]
async fn bigquery_down_during_daily_fails_clearly_and_the_rerun_leaves_one_copy_of_each_tweet() {
    let setup = Setup::new().await;
    let mut bigquery = PrivateBigQuery::start().await;
    let endpoint = bigquery.url();
    let day1 = ExpectedDay::from_fixtures(&["2026-11-01.a.ndjson", "2026-11-01.b.ndjson"]);
    let args = ["--bigquery-endpoint", endpoint.as_str(), "--skip-search"];

    // A first run loads the day; then the warehouse goes away and the day is run again.
    setup
        .run(DAY1, &args)
        .await
        .unwrap_or_else(|e| panic!("first run: {e}"));
    let warehouse = bigquery.warehouse().await;
    let marts_before = sorted(select(&warehouse, &setup.marts, "mart_tweets_per_keyword").await);
    bigquery.stop();
    let err = setup.run(DAY1, &args).await.expect_err("BigQuery is down");
    let message = err.to_string();
    assert!(
        message.contains("bigquery") && message.contains(&endpoint),
        "the error names neither BigQuery nor its endpoint: {message}"
    );
    let run: DailyRun =
        serde_json::from_slice(&std::fs::read(setup.termination_log()).expect("termination log")).expect("DailyRun");
    assert_eq!(run.result, "Failed");

    // Back up (its data survives), the rerun succeeds and leaves exactly one row per tweet.
    bigquery.restart().await;
    let report = setup.run(DAY1, &args).await.unwrap_or_else(|e| panic!("rerun: {e}"));
    assert_report(&report, &day1, DAY1);
    let warehouse = bigquery.warehouse().await;
    let counts = warehouse
        .query(
            "count ids",
            &format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {}",
                warehouse.table_sql(&setup.dataset, "tweets")
            ),
        )
        .await
        .expect("count");
    assert_eq!(int(&counts[0], "n"), day1.rows.len() as i64, "rows after the rerun");
    assert_eq!(
        int(&counts[0], "ids"),
        day1.rows.len() as i64,
        "distinct ids after the rerun"
    );
    assert_warehouse_tweets(&select(&warehouse, &setup.dataset, "tweets").await, &day1.rows);
    assert_eq!(
        sorted(select(&warehouse, &setup.marts, "mart_tweets_per_keyword").await),
        marts_before,
        "the marts after the rerun"
    );
    drop(bigquery);
    // The datasets went to the private emulator, which is gone; this removes the lake and the config.
    setup.clean_up().await;
}
