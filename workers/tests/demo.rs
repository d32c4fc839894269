//! `cilvest demo` end to end, as a newcomer runs it: the binary as a subprocess.
//!
//! - `--input` with a hand-written file of v2 tweets gives the counts worked out by hand below;
//! - the generated run is deterministic and prints every table;
//! - `--kafka` (publisher, broker, consumer) gives the same report as the in-process bus;
//! - the embedded marts equal the BigQuery marts (`warehouse::marts` on the emulator) over the same lake;
//! - the HTML page renders in headless Chromium with one chart series per keyword, visible in a screenshot.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use serde_json::{Value, json};

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

/// Tweets in Asia/Jakarta (UTC+7), annotated with what the pipeline must make of them.
fn input_lines() -> Vec<String> {
    let bare = |id: &str, text: &str, at: &str, lang: &str, user: Option<&str>| {
        let mut tweet = json!({"id": id, "text": text, "created_at": at, "lang": lang, "author_id": "1"});
        if let Some(user) = user {
            tweet["author_username"] = json!(user);
        }
        tweet.to_string()
    };
    let envelope = json!({
        "tweet": {"id": "1001", "text": "Beli #saham BBCA hari ini 🚀", "created_at": "2026-11-01T02:00:00.000Z",
                  "lang": "in"},
        "author_username": "budi", "fetched_at": "2026-11-01T02:01:00Z",
    })
    .to_string();
    vec![
        // 11-01 09:00, saham.
        envelope.clone(),
        // 11-01 10:00, reksadana ("reksa dana" is a term), a bare tweet.
        bare(
            "1002",
            "reksa dana pasar uang\ncocok buat pemula",
            "2026-11-01T03:30:00Z",
            "in",
            Some("sari"),
        ),
        // 20:00 UTC is 03:00 of 11-02 in Jakarta: sukuk and saham (substring: "sahamnya").
        bare(
            "1003",
            "Sukuk ritel dan sahamnya",
            "2026-11-01T20:00:00Z",
            "id",
            Some("budi"),
        ),
        // The producer's overlap: the same envelope again (a duplicate).
        envelope,
        // A retweet (dropped), and English (dropped).
        json!({"id": "1004", "text": "RT @budi: Beli #saham", "created_at": "2026-11-01T04:00:00Z", "lang": "in",
               "referenced_tweets": [{"type": "retweeted", "id": "1001"}], "author_username": "tono"})
        .to_string(),
        bare("1005", "saham means stock", "2026-11-01T04:00:00Z", "en", Some("tono")),
        // Not a tweet at all: the lake writer sets it aside.
        "this is not json".to_owned(),
        // 11-02 12:00 and 13:00, saham; the second has no username.
        bare("1006", "saham lagi merah", "2026-11-02T05:00:00Z", "in", Some("tono")),
        bare("1007", "#SAHAM", "2026-11-02T06:10:00Z", "in", None),
        // X matched the URL only: kept, no keyword.
        bare(
            "1008",
            "cek https://x.co/saham",
            "2026-11-02T07:00:00Z",
            "in",
            Some("sari"),
        ),
    ]
}

#[test]
fn input_file_counts_match_a_hand_count() {
    let dir = temp_dir("cilvest-demo-input");
    let input = dir.join("tweets.jsonl");
    std::fs::write(&input, input_lines().join("\n") + "\n").expect("write input");
    let lake = dir.join("lake");
    let report = demo_json(&[
        "--input",
        input.to_str().expect("utf-8"),
        "--lake",
        lake.to_str().expect("utf-8"),
    ]);

    assert_eq!(report["records"], 10);
    assert_eq!(report["rejectedRecords"], 1);
    // The report says first where its posts came from.
    assert_eq!(report["data"], format!("the posts in {}", input.display()));
    let table = demo(&["--input", input.to_str().expect("utf-8")]);
    assert_eq!(
        table.lines().next(),
        Some(format!("Data: the posts in {}", input.display()).as_str())
    );
    let t = &report["transform"];
    assert_eq!(
        (
            &t["tweetsIn"],
            &t["duplicates"],
            &t["retweets"],
            &t["otherLanguage"],
            &t["kept"],
            &t["unmatched"]
        ),
        (&json!(9), &json!(1), &json!(1), &json!(1), &json!(6), &json!(1)),
        "{t:#}"
    );
    assert_eq!(report["days"], json!(["2026-11-01", "2026-11-02"]));
    let marts = &report["marts"];
    assert_eq!(
        marts["total"],
        json!({"tweets": 6, "authors": 3, "first_day": "2026-11-01", "last_day": "2026-11-02"})
    );
    let per_keyword: BTreeMap<String, (u64, u64)> = marts["perKeyword"]
        .as_array()
        .expect("perKeyword")
        .iter()
        .map(|k| {
            (
                k["keyword"].as_str().expect("keyword").to_owned(),
                (num(&k["tweets"]), num(&k["authors"])),
            )
        })
        .collect();
    // saham: 1001 budi, 1003 budi, 1006 tono, 1007 nobody; reksadana: 1002 sari; sukuk: 1003 budi.
    assert_eq!(
        per_keyword,
        BTreeMap::from([
            ("saham".to_owned(), (4, 2)),
            ("reksadana".to_owned(), (1, 1)),
            ("sukuk".to_owned(), (1, 1))
        ])
    );
    let daily: BTreeMap<(String, String), u64> = marts["keywordDaily"]
        .as_array()
        .expect("keywordDaily")
        .iter()
        .map(|d| ((text(&d["keyword"]), text(&d["local_date"])), num(&d["tweets"])))
        .collect();
    let day = |k: &str, d: &str| (k.to_owned(), d.to_owned());
    assert_eq!(
        daily,
        BTreeMap::from([
            (day("saham", "2026-11-01"), 1),
            (day("reksadana", "2026-11-01"), 1),
            (day("saham", "2026-11-02"), 3),
            (day("sukuk", "2026-11-02"), 1),
        ])
    );
    // Hours are local: 02:00Z is 09:00, 20:00Z is 03:00, 05:00Z is 12:00, 06:10Z is 13:00.
    let hourly: BTreeMap<String, Vec<u64>> = report["hourly"]
        .as_array()
        .expect("hourly")
        .iter()
        .map(|pair| {
            (
                text(&pair[0]),
                pair[1].as_array().expect("24").iter().map(num).collect(),
            )
        })
        .collect();
    let hours = |set: &[usize]| (0..24).map(|h| u64::from(set.contains(&h))).collect::<Vec<_>>();
    assert_eq!(hourly["saham"], hours(&[3, 9, 12, 13]));
    assert_eq!(hourly["reksadana"], hours(&[10]));
    assert_eq!(hourly["sukuk"], hours(&[3]));
    // budi 1001, 1003; sari 1002, 1008; tono 1006: a tie for first place, then rank 3.
    let top: Vec<(String, u64, u64)> = marts["topUsers"]
        .as_array()
        .expect("topUsers")
        .iter()
        .map(|u| (text(&u["username"]), num(&u["tweets"]), num(&u["rank"])))
        .collect();
    assert_eq!(
        top,
        vec![
            ("budi".to_owned(), 2, 1),
            ("sari".to_owned(), 2, 1),
            ("tono".to_owned(), 1, 3)
        ]
    );
    // The lake has the consumer's layout, and the curated day the daily job writes.
    let raw_day = std::fs::read_dir(lake.join("raw/dt=2026-11-02"))
        .expect("raw day")
        .count();
    assert!(raw_day >= 1);
    assert!(lake.join("curated/dt=2026-11-01/part-00000.parquet").exists());
    assert!(std::fs::read_dir(lake.join("rejected")).expect("rejected tree").count() == 1);
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn generated_runs_are_deterministic_and_print_every_table() {
    let args = ["--tweets", "3000", "--days", "3", "--seed", "42"];
    let mut first = demo_json(&args);
    let mut second = demo_json(&args);
    first["seconds"] = Value::Null;
    second["seconds"] = Value::Null;
    assert_eq!(first, second);
    let t = &first["transform"];
    assert_eq!(first["records"], 3000);
    assert_eq!(first["days"].as_array().map(Vec::len), Some(3));
    for field in ["duplicates", "retweets", "otherLanguage", "kept", "unmatched"] {
        assert!(num(&t[field]) > 0, "{field}: {t:#}");
    }
    assert_eq!(first["marts"]["topUsers"].as_array().map(|u| u.len() >= 10), Some(true));

    let table = demo(&args);
    let first_line = table.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("Data: generated, not real posts") && first_line.contains("seed 42"),
        "{first_line}"
    );
    for heading in [
        "Mentions per keyword",
        "Mentions per keyword per day",
        "Mentions per keyword per local hour",
        "Top users",
    ] {
        assert!(table.contains(heading), "{heading} missing:\n{table}");
    }
    assert!(table.contains("23:00") && table.contains("2026-11-03"), "{table}");
}

/// `--kafka`: the producer's publisher, a real topic and the real consumer give the same report as the in-process
/// bus.
#[test]
fn the_kafka_bus_gives_the_same_report_as_the_in_process_bus() {
    let bootstrap = service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka");
    let args = ["--tweets", "2000", "--days", "2", "--seed", "7"];
    let mut in_process = demo_json(&args);
    let mut with_kafka = demo_json(&[&args[..], &["--kafka", &bootstrap]].concat());
    for report in [&mut in_process, &mut with_kafka] {
        report["seconds"] = Value::Null;
    }
    assert_eq!(with_kafka["records"], 2000);
    assert_eq!(in_process, with_kafka);
}

/// The embedded marts and BigQuery's (the warehouse's SQL on the emulator) over the same lake: run the demo into
/// a lake the emulator reads, then `cilvest daily` for every day of it, and compare every mart table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_marts_agree_with_the_bigquery_marts() {
    let root = service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery");
    let endpoint = service_env("CILVEST_BQ_URL", "bigquery");
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    let bucket = unique("demo-lake");
    let lake_dir = PathBuf::from(&root).join(&bucket).join("lake");
    let report = demo_json(&[
        "--tweets",
        "4000",
        "--days",
        "9",
        "--lake",
        lake_dir.to_str().expect("utf-8"),
    ]);

    let dataset = unique("demo").replace('-', "_");
    let marts_dataset = format!("{dataset}_marts");
    let mut config = cilvest_workers::jobs::demo::pipeline_config(None).expect("embedded pipeline");
    config.spec.targets.lake.uri = format!("gs://{bucket}/lake");
    config.spec.targets.bigquery.project = project.clone();
    config.spec.targets.bigquery.dataset = dataset.clone();
    config.spec.targets.bigquery.marts_dataset = Some(marts_dataset.clone());
    config.spec.targets.elasticsearch = None;
    config.search_url = None;
    let dir = temp_dir("cilvest-demo-bq");
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("config")).expect("write config");
    let lake_uri = format!("file://{}", lake_dir.display());
    let log = dir.join("termination-log");
    for day in report["days"].as_array().expect("days") {
        let day = text(day);
        let args = cilvest_workers::jobs::daily::Args::parse_from([
            "daily",
            "--config",
            config_path.to_str().expect("utf-8"),
            "--date",
            &day,
            "--lake",
            &lake_uri,
            "--bigquery-endpoint",
            &endpoint,
            "--skip-search",
            "--termination-log",
            log.to_str().expect("utf-8"),
        ]);
        cilvest_workers::jobs::daily::run(args).await.expect("daily run");
    }

    let warehouse = cilvest_workers::google::bigquery::Warehouse::connect(Some(&endpoint), &project, "asia-southeast2")
        .await
        .expect("warehouse");
    let embedded = &report["marts"];
    for (mart, key) in [
        ("mart_total_tweets", "total"),
        ("mart_tweets_per_keyword", "perKeyword"),
        ("mart_keyword_daily", "keywordDaily"),
        ("mart_keyword_hourly", "keywordHourly"),
        ("mart_top_users", "topUsers"),
        ("mart_top_users_per_keyword", "topUsersPerKeyword"),
    ] {
        let sql = format!("SELECT * FROM {}", warehouse.table_sql(&marts_dataset, mart));
        let bigquery_rows: Vec<Value> = warehouse
            .query(&format!("read {mart}"), &sql)
            .await
            .expect("read mart")
            .into_iter()
            .map(|row| Value::Object(row.into_iter().collect()))
            .collect();
        let embedded_rows = match &embedded[key] {
            Value::Array(rows) => rows.clone(),
            one => vec![one.clone()],
        };
        assert!(!bigquery_rows.is_empty(), "{mart} is empty in bigquery");
        assert_eq!(normalize(&bigquery_rows), normalize(&embedded_rows), "{mart} differs");
    }

    for dataset in [&dataset, &marts_dataset] {
        warehouse
            .client()
            .dataset()
            .delete_if_exists(warehouse.project(), dataset, true)
            .await;
    }
    let _ = std::fs::remove_dir_all(PathBuf::from(&root).join(&bucket));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows as sorted lists of `column=value` strings. BigQuery returns every scalar as a string; numbers are compared
/// as numbers rounded to 9 decimals (`share_of_day` is a float division on both sides).
fn normalize(rows: &[Value]) -> Vec<BTreeMap<String, String>> {
    let scalar = |value: &Value| match value {
        Value::Null => "null".to_owned(),
        Value::Number(n) => format!("{:.9}", n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => match s.parse::<f64>() {
            Ok(n) => format!("{n:.9}"),
            Err(_) => s.clone(),
        },
        other => other.to_string(),
    };
    let mut out: Vec<BTreeMap<String, String>> = rows
        .iter()
        .map(|row| {
            row.as_object()
                .expect("row object")
                .iter()
                .map(|(k, v)| (k.clone(), scalar(v)))
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// Series colours of the page, as RGB: the first three of `render::COLOURS`.
fn series_colours() -> Vec<[u8; 3]> {
    cilvest_workers::jobs::demo::render::COLOURS[..3]
        .iter()
        .map(|hex| {
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
            [byte(1), byte(3), byte(5)]
        })
        .collect()
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let binary = service_env("CILVEST_CHROMIUM", "tools");
    Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn the_html_report_renders_its_chart_in_headless_chromium() {
    let dir = temp_dir("cilvest-demo-html");
    let page = dir.join("report.html");
    let report = demo_json(&[
        "--tweets",
        "3000",
        "--days",
        "5",
        "--html",
        page.to_str().expect("utf-8"),
    ]);
    let url = format!("file://{}", page.display());

    let dom = chromium(&dir.join("profile-dom"), &["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<svg id=\"daily-chart\""), "no chart in the rendered DOM");
    let data = dom.find("id=\"data\"").expect("the data line");
    assert!(
        dom.find("<h1>").is_some_and(|h1| data < h1) && dom.contains("Data: generated, not real posts"),
        "the page says first that the data is generated"
    );
    for keyword in ["saham", "reksadana", "sukuk"] {
        assert_eq!(
            dom.matches(&format!("<path id=\"series-{keyword}\"")).count(),
            1,
            "{keyword}"
        );
    }
    assert_eq!(dom.matches("<path id=\"series-").count(), 3);
    for day in report["days"].as_array().expect("days") {
        assert!(dom.contains(&format!(">{}</text>", text(day))), "x axis label {day}");
    }
    assert_eq!(dom.matches("class=\"y-label\"").count(), 5, "y axis labels");
    assert!(dom.contains(">mentions</text>"));
    // Per local hour: one path per keyword, 24 hours labelled every other hour.
    assert!(dom.contains("<svg id=\"hourly-chart\""), "no hourly chart");
    for keyword in ["saham", "reksadana", "sukuk"] {
        assert_eq!(
            dom.matches(&format!("<path id=\"hourly-{keyword}\"")).count(),
            1,
            "{keyword}"
        );
    }
    assert_eq!(dom.matches("class=\"x-label hourly\"").count(), 12, "hour labels");
    assert!(dom.contains(">00</text>") && dom.contains(">22</text>"));
    // The most active authors: one bar each, labelled with the name, as in the report's top-users mart.
    assert!(dom.contains("<svg id=\"top-authors-chart\""), "no top-authors chart");
    let top = report["marts"]["topUsers"].as_array().expect("top users");
    assert!(!top.is_empty());
    assert_eq!(dom.matches("class=\"bar\"").count(), top.len());
    for user in top {
        let name = text(&user["username"]);
        assert!(dom.contains(&format!("data-label=\"{name}\"")), "bar for {name}");
    }

    let screenshot = dir.join("report.png");
    let shot = chromium(
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1200,900",
            &url,
        ],
    );
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    // The chart is the first thing below the title: the top 700 rows hold it, the legend and tables come after.
    let rows = (info.height as usize).min(700);
    for colour in series_colours() {
        let count = (0..rows * info.width as usize)
            .map(|i| &pixels[i * channels..i * channels + 3])
            .filter(|px| px.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 24))
            .count();
        assert!(
            count > 500,
            "series colour {colour:?}: only {count} pixels in the chart area"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
