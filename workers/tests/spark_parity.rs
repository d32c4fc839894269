//! Parity of `workers/spark/transform.py` run by real Spark (`pyspark`, local mode) with the native transform: the
//! daily fixture day and a generated day of 20,000 tweets give identical curated rows (sorted by id, all columns)
//! and identical counts, on Spark 4 and on Spark 3.5 (what Dataproc 2.2 images run). One `spark-submit` per version
//! does both days, because a Spark start-up costs ~30 s here.

mod support;

use std::{
    io::Write,
    path::{Path as FsPath, PathBuf},
    process::Command,
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use chrono::NaiveDate;
use cilvest_crds::CilvestPipelineSpec;
use cilvest_workers::{
    google::dataproc,
    jobs::daily::{curated, raw},
    transform::{Counts, CuratedTweet, Rules},
};
use flate2::{Compression, write::GzEncoder};
use object_store::{ObjectStore, local::LocalFileSystem};
use serde_json::{Value, json};
use support::{service_env, unique};

const FIXTURE_DAY: &str = "2026-11-01";
const GENERATED_DAY: &str = "2026-11-05";
const GENERATED_TWEETS: usize = 20_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/daily")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn spec(mode: &str) -> CilvestPipelineSpec {
    serde_json::from_value(json!({
        "keywords": [
            {"name": "saham", "terms": ["saham", "#saham"]},
            {"name": "reksadana", "terms": ["reksadana", "reksa dana"]},
            {"name": "sukuk", "terms": ["sukuk"]},
            {"name": "obligasi", "terms": ["obligasi", "SBN"]},
            {"name": "emoji", "terms": ["🚀🚀"]},
        ],
        "matching": {"mode": mode},
        "language": "in",
        "schedule": {"timeZone": "Asia/Jakarta"},
        "targets": {"lake": {"uri": "gs://lake"}, "bigquery": {"project": "cilvest-test", "dataset": "d"}},
    }))
    .expect("spec")
}

/// A seeded xorshift PRNG: the generated day is the same on every run.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Realistic tweet text: Indonesian finance talk with the noise X returns (URLs, entities, mentions, hashtags,
/// emoji, line breaks, zero-width characters, accents, other scripts and digits).
const PIECES: &[&str] = &[
    "saham",
    "Saham",
    "SAHAM",
    "#saham",
    "#SahamIndonesia",
    "sahamnya",
    "reksa dana",
    "Reksa\nDana",
    "reksadana",
    "reksa\u{200D}dana",
    "sukuk",
    "Sukuk ritel",
    "obligasi",
    "SBN",
    "sbn2026",
    "beli",
    "jual",
    "naik",
    "turun",
    "hari ini",
    "IHSG",
    "BBCA",
    "cuan",
    "nyangkut",
    "@budi_santoso",
    "@sari",
    "https://t.co/AbC123",
    "http://idx.co.id/x?y=1&amp;z",
    "www.ojk.go.id/saham",
    "lihat:https://t.co/x,",
    "&amp;",
    "&lt;",
    "&gt;",
    "5%",
    "1.000.000",
    "Rp",
    "🚀",
    "🚀🚀",
    "📈",
    "🤔",
    "👨\u{200D}👩\u{200D}👧",
    "\u{FE0F}",
    "\u{200B}",
    "sa\u{AD}ham",
    "émission",
    "Ünïcödé",
    "株式",
    "٣",
    "²",
    "ß",
    "İstanbul",
    "ΣΑΣ",
    "e\u{301}",
    "\u{A0}",
    "\u{3000}",
    "\t",
    "\r\n",
    "!!!",
    "?",
    "...",
    "(",
    ")",
    "-",
    "_",
    "\"",
    "'",
    "link",
    "[link]",
    "RT",
    "ART @x",
];

/// One generated raw line (or a rejected one), with duplicates, other days, languages and retweets mixed in.
fn generated_line(prng: &mut Prng, i: usize) -> String {
    match prng.below(100) {
        0 => return "not json at all".to_owned(),
        1 => return r#"{"tweet":{"id":"12x","text":"saham","created_at":"2026-11-05T01:00:00Z"}}"#.to_owned(),
        2 => return String::new(),
        _ => {}
    }
    let words = 1 + prng.below(14);
    let mut text: String = (0..words)
        .map(|_| prng.pick(PIECES))
        .collect::<Vec<_>>()
        .join(if prng.below(3) == 0 { "" } else { " " });
    if prng.below(20) == 0 {
        text = format!("RT @{}: {text}", prng.pick(&["budi", "sari"]));
    }
    // Duplicates: ids repeat among the last few hundred.
    let id = if i > 500 && prng.below(10) == 0 {
        1_900_000_000_000_000_000 + i as u64 - prng.below(400) as u64
    } else {
        1_900_000_000_000_000_000 + i as u64
    };
    // 2026-11-04T16:00Z..2026-11-05T17:00Z covers the Jakarta day and an hour on either side.
    let seconds = 1_793_808_000 - 3600 + prng.below(26 * 3600) as i64;
    let micros = if prng.below(2) == 0 {
        0
    } else {
        prng.below(1_000_000) as u32 * 1000 + prng.below(1000) as u32
    };
    let created = chrono::DateTime::from_timestamp(seconds, micros).expect("time");
    let created_at = if prng.below(2) == 0 {
        created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    } else {
        created
            .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("offset"))
            .to_rfc3339()
    };
    let lang = prng.pick(&["in", "in", "in", "id", "IN", "en", "ja"]);
    let mut tweet = json!({"id": id.to_string(), "text": text, "created_at": created_at, "author_id": "42"});
    if prng.below(30) != 0 {
        tweet["lang"] = json!(lang);
    }
    // Long posts: `text` is the first 280 characters, the whole post is in note_tweet, with the keywords after the
    // cut; and now and then a malformed note_tweet, which makes the line a reject in both engines.
    match prng.below(15) {
        0 => {
            let full = format!("{}{text}", "posting panjang soal pasar modal ".repeat(9));
            tweet["text"] = json!(full.chars().take(280).collect::<String>());
            tweet["note_tweet"] = json!({"text": full, "entities": {"hashtags": []}});
        }
        1 if prng.below(4) == 0 => tweet["note_tweet"] = json!("not an object"),
        _ => {}
    }
    match prng.below(12) {
        0 => tweet["referenced_tweets"] = json!([{"type": "retweeted", "id": "1"}]),
        1 => tweet["referenced_tweets"] = json!([{"type": "quoted", "id": "1"}]),
        _ => {}
    }
    let username = match prng.below(8) {
        0 => Value::Null,
        _ => json!(prng.pick(&["budi", "sari", "andi", "Zed", "ani"])),
    };
    if prng.below(5) == 0 {
        let mut bare = tweet;
        if !username.is_null() {
            bare["author_username"] = username;
        }
        bare.to_string()
    } else {
        json!({"tweet": tweet, "author_username": username, "fetched_at": "2026-11-06T00:00:00Z"}).to_string()
    }
}

/// The generated day as several objects: gzip (one multi-member) and plain, some with `\r\n` line ends.
fn generated_objects() -> Vec<(String, Vec<u8>)> {
    let mut prng = Prng(0x5EED_CAFE_F00D_BEEF);
    let lines: Vec<String> = (0..GENERATED_TWEETS).map(|i| generated_line(&mut prng, i)).collect();
    let mut objects = Vec::new();
    for (n, chunk) in lines.chunks(GENERATED_TWEETS / 4).enumerate() {
        let end = if n == 1 { "\r\n" } else { "\n" };
        let body: String = chunk.iter().map(|line| format!("{line}{end}")).collect();
        let (name, bytes) = match n {
            0 => ("a.ndjson.gz", gzip(body.as_bytes())),
            1 => ("b.ndjson", body.into_bytes()),
            2 => {
                let (first, second) = body.split_at(body.len() / 2);
                (
                    "c.ndjson.gz",
                    [gzip(first.as_bytes()), gzip(second.as_bytes())].concat(),
                )
            }
            _ => ("d.ndjson.gz", gzip(body.as_bytes())),
        };
        objects.push((format!("raw/dt={GENERATED_DAY}/part-{name}"), bytes));
    }
    objects
}

fn write_objects(root: &FsPath, objects: &[(String, Vec<u8>)]) {
    for (path, body) in objects {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write raw object");
    }
}

/// The native engine's rows and counts for one day, through the curated Parquet encoding.
async fn native(
    lake: &Arc<dyn ObjectStore>,
    spec: &CilvestPipelineSpec,
    date: NaiveDate,
) -> (Vec<CuratedTweet>, Counts) {
    let rules = Rules::new(spec, chrono_tz::Asia::Jakarta);
    let (day, _) = raw::transform_day(lake, &rules, date).await.expect("read raw day");
    let (rows, counts) = day.finish();
    let bytes = curated::encode(&rows).expect("encode");
    let mut rows = curated::decode(Bytes::from(bytes)).expect("decode");
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    (rows, counts)
}

/// Spark's rows (all Parquet parts of `out/curated`) and counts (`out/counts/part-00000`).
fn spark_output(out: &FsPath) -> (Vec<CuratedTweet>, Counts) {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(out.join("curated")).expect("spark curated dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "parquet") {
            rows.extend(
                curated::decode(Bytes::from(std::fs::read(&path).expect("read parquet")))
                    .expect("decode spark parquet"),
            );
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let counts = std::fs::read_to_string(out.join("counts/part-00000")).expect("spark counts");
    (rows, serde_json::from_str(counts.trim()).expect("counts json"))
}

/// An environment variable spark-submit runs with.
type SparkEnv = (&'static str, String);

fn assert_same(day: &str, native: &[CuratedTweet], spark: &[CuratedTweet]) {
    for (n, s) in native.iter().zip(spark) {
        assert_eq!(n, s, "day {day}: first differing row");
    }
    assert_eq!(native.len(), spark.len(), "day {day}: row count");
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_and_native_transforms_produce_identical_curated_rows() {
    let spark_submit = service_env("CILVEST_SPARK_SUBMIT", "spark");
    for var in ["PYSPARK_PYTHON", "SPARK_HOME", "SPARK_CONF_DIR"] {
        service_env(var, "spark");
    }
    let root = std::env::temp_dir().join(unique("cilvest-parity"));
    let lake_dir = root.join("lake");
    std::fs::create_dir_all(&lake_dir).expect("lake dir");
    write_objects(
        &lake_dir,
        &[
            (
                format!("raw/dt={FIXTURE_DAY}/cilvest.demo.raw-0-100.ndjson.gz"),
                gzip(&fixture("2026-11-01.a.ndjson")),
            ),
            (
                format!("raw/dt={FIXTURE_DAY}/cilvest.demo.raw-1-200.ndjson"),
                fixture("2026-11-01.b.ndjson"),
            ),
            // The next day's fixture lands in the same folder: its tweets are another local day there.
            (
                format!("raw/dt={FIXTURE_DAY}/cilvest.demo.raw-0-300.ndjson.gz"),
                gzip(&fixture("2026-11-02.ndjson")),
            ),
            (format!("raw/dt={FIXTURE_DAY}/_marker"), b"ignored".to_vec()),
        ],
    );
    write_objects(&lake_dir, &generated_objects());
    let lake: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&lake_dir).expect("local lake"));

    let fixture_spec = spec("substring");
    let generated_spec = spec("wholeWord");
    let fixture_date: NaiveDate = FIXTURE_DAY.parse().expect("date");
    let generated_date: NaiveDate = GENERATED_DAY.parse().expect("date");
    let (native_fixture, native_fixture_counts) = native(&lake, &fixture_spec, fixture_date).await;
    let (native_generated, native_generated_counts) = native(&lake, &generated_spec, generated_date).await;
    assert!(native_fixture.len() >= 10, "the fixture day keeps tweets");
    assert!(
        native_generated.len() > 5_000,
        "the generated day keeps {} tweets",
        native_generated.len()
    );
    assert!(native_generated_counts.duplicates > 100 && native_generated_counts.other_day > 100);

    // The same config transform.py gets on Dataproc, one run per day.
    let run = |spec: &CilvestPipelineSpec, date: NaiveDate, out: &str| -> Value {
        let config: Value = serde_json::from_str(&dataproc::transform_config(
            spec,
            date,
            &format!("file://{}/raw/dt={date}", lake_dir.display()),
            out,
        ))
        .expect("config");
        let mut run = config["runs"][0].clone();
        run["rules"] = json!({"keywords": config["keywords"], "mode": config["mode"]});
        run
    };
    let script = root.join("transform.py");
    std::fs::write(&script, dataproc::TRANSFORM_PY).expect("write script");
    // Spark 4.x (the shared venv), and 3.5, which Dataproc 2.2 images run: the same script, the same rows.
    let spark35 = [
        ("SPARK_HOME", service_env("CILVEST_SPARK35_HOME", "spark")),
        ("PYSPARK_PYTHON", service_env("CILVEST_SPARK35_PYTHON", "spark")),
        ("PYSPARK_DRIVER_PYTHON", service_env("CILVEST_SPARK35_PYTHON", "spark")),
    ];
    let versions: [(&str, String, &[SparkEnv]); 2] = [
        ("4", spark_submit.clone(), &[]),
        ("3.5", service_env("CILVEST_SPARK35_SUBMIT", "spark"), &spark35),
    ];
    for (version, submit, env) in versions {
        let out_fixture = root.join(format!("spark{version}-fixture"));
        let out_generated = root.join(format!("spark{version}-generated"));
        let mut config: Value =
            serde_json::from_str(&dataproc::transform_config(&fixture_spec, fixture_date, "", "")).expect("config");
        config["runs"] = json!([
            run(
                &fixture_spec,
                fixture_date,
                &format!("file://{}", out_fixture.display())
            ),
            run(
                &generated_spec,
                generated_date,
                &format!("file://{}", out_generated.display())
            ),
        ]);
        let started = Instant::now();
        let output = Command::new(&submit)
            .current_dir(&root)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg(&script)
            .arg(config.to_string())
            .output()
            .expect("run spark-submit");
        eprintln!(
            "spark {version}: spark-submit took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            output.status.success(),
            "spark {version}: spark-submit failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let version_line = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            version_line.contains(&format!("Running Spark version {version}")),
            "spark {version}: not the Spark version expected"
        );

        let (spark_fixture, spark_fixture_counts) = spark_output(&out_fixture);
        let (spark_generated, spark_generated_counts) = spark_output(&out_generated);
        assert_same(FIXTURE_DAY, &native_fixture, &spark_fixture);
        assert_eq!(
            native_fixture_counts, spark_fixture_counts,
            "spark {version}: fixture day counts"
        );
        assert_same(GENERATED_DAY, &native_generated, &spark_generated);
        assert_eq!(
            native_generated_counts, spark_generated_counts,
            "spark {version}: generated day counts"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
