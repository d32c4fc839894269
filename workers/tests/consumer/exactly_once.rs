//! Every tweet in the lake exactly once: through ten SIGKILLs, two members of one group splitting the partitions, and a
//! member stalled past a rebalance.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chrono::Utc;
use serde_json::Value;

use super::{
    Committed, ConsumerArgs, ConsumerProcess, Produced, SERIAL, assert_exactly_once, count_objects, produce, producer,
    read_lake, temp_dir,
};
use crate::support::{count_lines, create_topic, gcs_lake, kafka_bootstrap, service_env, unique};

/// A small deterministic PRNG (SplitMix64), so a failing kill schedule can be replayed with its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tweet_lands_exactly_once_through_ten_sigkills() {
    const N: u64 = 50_000;
    const KILLS: usize = 10;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-kill");
    let group = unique("consumer-kill-group");
    create_topic(&bootstrap, &topic, 3).await;
    let dir = temp_dir("consumer-kill");
    let lake_dir = dir.join("lake");
    let lake_uri = format!("file://{}", lake_dir.display());
    let seed = std::env::var("CILVEST_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros().unsigned_abs());
    eprintln!(
        "kill schedule seed {seed} (replay with CILVEST_TEST_SEED={seed}); logs in {}",
        dir.display()
    );
    let mut random = SplitMix(seed);

    // Tweets arrive while the consumer is being killed: 25 chunks over about 20 s.
    let producing = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap);
            let mut produced = Produced::new();
            for chunk in 0..25 {
                produced.extend(produce(&producer, &topic, chunk * N / 25..(chunk + 1) * N / 25).await);
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            produced
        })
    };
    // Small batches and a short flush interval, so kills land between writing objects and committing them. Static
    // membership lets the restarted process take its partitions back at once instead of waiting out the session of
    // the killed one; the rebalance path is the two-consumer test's.
    let instance = unique("consumer-kill-instance");
    let membership = format!("group.instance.id={instance}");
    let extra = [
        "--flush-records",
        "1000",
        "--flush-interval",
        "300ms",
        "--kafka-option",
        &membership,
    ];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let committed = Committed::new(&group, &topic, 3);
    // Kill as long as tweets keep coming; only kills that leave records uncommitted count towards the ten. Every
    // other kill is aimed: right after a new object appears, which is most likely before its batch is committed.
    let mut kills = 0;
    let mut kills_between_write_and_commit = 0;
    let mut run = 0;
    while !producing.is_finished() {
        run += 1;
        let mut consumer = ConsumerProcess::spawn(&args, dir.join(format!("run-{run}.log")));
        let life = random.millis(300, 2_000);
        let aimed = run % 2 == 0;
        if aimed {
            tokio::time::sleep(life / 2).await;
            let before = count_objects(&lake_dir);
            let give_up = Instant::now() + Duration::from_secs(3);
            while count_objects(&lake_dir) <= before && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            tokio::time::sleep(life).await;
        }
        consumer.kill9().await;
        let done = committed.total().await;
        if done < N as i64 {
            kills += 1;
        }
        // More tweets in the lake than committed: the killed process wrote objects it never committed, which the
        // next one must overwrite rather than duplicate.
        let in_lake = count_lines(&lake_dir);
        if in_lake > done {
            kills_between_write_and_commit += 1;
        }
        let how = if aimed { "at a new object" } else { "at random" };
        eprintln!("SIGKILL {run} {how}: {done} of {N} committed, {in_lake} records in the lake");
    }
    let produced = producing.await.expect("producer task");
    assert_eq!(produced.len() as u64, N);
    assert!(
        kills >= KILLS,
        "only {kills} SIGKILLs hit a consumer with work left; produce more slowly"
    );
    eprintln!("{kills_between_write_and_commit} of {run} SIGKILLs left objects whose records were not committed");
    assert!(
        kills_between_write_and_commit > 0,
        "no SIGKILL landed between writing objects and committing them, so no replay was tested"
    );

    let mut last = ConsumerProcess::spawn(&args, dir.join("final.log"));
    committed
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut last])
        .await;
    assert!(last.terminate(Duration::from_secs(15)).await.success());

    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    let objects = read_lake(&lake).await;
    assert_exactly_once(&objects, &topic, &produced);
    assert!(objects.keys().all(|path| path.starts_with("raw/")), "nothing rejected");
    eprintln!("{N} tweets in {} objects after {kills} SIGKILLs", objects.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_split_the_partitions_and_write_every_record_once() {
    const N: u64 = 20_000;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-pair");
    let group = unique("consumer-pair-group");
    create_topic(&bootstrap, &topic, 4).await;
    let dir = temp_dir("consumer-pair");
    let lake_uri = format!("file://{}", dir.join("lake").display());
    let producing = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap);
            let mut produced = Produced::new();
            for chunk in 0..10 {
                produced.extend(produce(&producer, &topic, chunk * N / 10..(chunk + 1) * N / 10).await);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            produced
        })
    };
    let extra = ["--flush-records", "2000", "--flush-interval", "1s"];
    let args = ConsumerArgs {
        topic: &topic,
        group: &group,
        lake: &lake_uri,
        extra: &extra,
    };
    let mut first = ConsumerProcess::spawn(&args, dir.join("first.log"));
    // The second member joins while the first holds unflushed records of every partition: the rebalance must flush
    // and commit them before the partitions move.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut second = ConsumerProcess::spawn(&args, dir.join("second.log"));
    let produced = producing.await.expect("producer task");
    Committed::new(&group, &topic, 4)
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut first, &mut second])
        .await;

    let mut written = Vec::new();
    for consumer in [&first, &second] {
        let out = consumer.metric("cilvest_consumer_records_out_total").await;
        let assigned = consumer.metric("cilvest_consumer_assigned_partitions").await;
        eprintln!("member wrote {out} tweets, owns {assigned} partitions");
        assert_eq!(assigned, 2.0, "four partitions split two and two");
        assert!(out > 0.0, "both members write");
        written.push(out);
    }
    assert_eq!(
        written.iter().sum::<f64>(),
        N as f64,
        "the revoked partitions' records were committed by the member that read them, so none was read twice"
    );
    assert!(first.terminate(Duration::from_secs(15)).await.success());
    assert!(second.terminate(Duration::from_secs(15)).await.success());

    let lake = cilvest_workers::lake::open(&lake_uri, None).expect("open lake");
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every object under the bucket's lake prefix with its GCS generation (the JSON API's own count of writes).
async fn generations(bucket: &str) -> BTreeMap<String, String> {
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let listed: Value = reqwest::get(format!("{endpoint}/storage/v1/b/{bucket}/o?prefix=lake/"))
        .await
        .expect("list objects")
        .json()
        .await
        .expect("list json");
    listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| (o["name"].to_string(), o["generation"].to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stalled_past_a_rebalance_overwrites_nothing_and_loses_nothing() {
    const N: u64 = 3_000;
    let _serial = SERIAL.lock().await;
    let bootstrap = kafka_bootstrap();
    let topic = unique("consumer-zombie");
    let group = unique("consumer-zombie-group");
    create_topic(&bootstrap, &topic, 2).await;
    let (lake_uri, lake) = gcs_lake("consumer-zombie").await;
    let bucket = lake_uri
        .trim_start_matches("gs://")
        .split('/')
        .next()
        .expect("bucket")
        .to_owned();
    let dir = temp_dir("consumer-zombie");
    let committed = Committed::new(&group, &topic, 2);
    // The zombie-to-be holds its whole batch for 20 s; its group session lasts 6 s.
    let slow = [
        "--flush-records",
        "100000",
        "--flush-interval",
        "20s",
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=1000",
    ];
    let mut zombie = ConsumerProcess::spawn(
        &ConsumerArgs {
            topic: &topic,
            group: &group,
            lake: &lake_uri,
            extra: &slow,
        },
        dir.join("zombie.log"),
    );
    zombie.wait_live().await;
    let produced = produce(&producer(&bootstrap), &topic, 0..N).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while zombie.metric("cilvest_consumer_records_in_total").await < N as f64 {
        assert!(Instant::now() < deadline, "the first member did not read every record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGSTOP: a GC pause or a partition as the group sees it. Its partitions move once the session expires.
    let pid = zombie.child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let quick = ["--flush-interval", "1s", "--flush-records", "700"];
    let mut owner = ConsumerProcess::spawn(
        &ConsumerArgs {
            topic: &topic,
            group: &group,
            lake: &lake_uri,
            extra: &quick,
        },
        dir.join("owner.log"),
    );
    committed
        .wait_for(N as i64, Duration::from_secs(60), &mut [&mut owner])
        .await;
    let landed = generations(&bucket).await;
    assert!(!landed.is_empty(), "the new owner wrote objects");

    // SIGCONT: the stalled member wakes with its batch of the same offsets and tries to land it.
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    while !std::fs::read_to_string(dir.join("zombie.log"))
        .unwrap_or_default()
        .contains("exists already")
    {
        assert!(
            Instant::now() < deadline,
            "the woken member never tried to land its stale batch:\n{}",
            zombie.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = generations(&bucket).await;
    for (name, generation) in &landed {
        assert_eq!(after.get(name), Some(generation), "{name} was overwritten");
    }
    assert_exactly_once(&read_lake(&lake).await, &topic, &produced);
    assert_eq!(committed.total().await, N as i64);
    let _ = std::fs::remove_dir_all(&dir);
}
