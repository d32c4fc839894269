//! The producer on Pub/Sub: each tweet published with its id as an attribute, and a rerun resuming from the checkpoint
//! without reading a tweet twice.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use cilvest_workers::{
    bus::pubsub::{Client, Names, TWEET_ID_ATTRIBUTE},
    jobs::producer::{Args, Producer},
    telemetry::Telemetry,
    tweet,
};
use clap::Parser;
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::{CILVEST_QUERY, SERIAL, client, names, write_config};
use crate::support;
use crate::support::{fake_x::FakeX, gcs_lake, service_env, unique};

/// Everything the subscription delivers until it has been quiet for `quiet`, acknowledged: tweet id attribute ->
/// decoded data, with a count of how often each id came.
async fn drain(client: &Client, names: &Names, quiet: Duration) -> BTreeMap<u64, (usize, Vec<u8>)> {
    let mut got: BTreeMap<u64, (usize, Vec<u8>)> = BTreeMap::new();
    let mut quiet_since = Instant::now();
    loop {
        let messages = client.pull_now(names, 1000).await.expect("pull");
        if messages.is_empty() {
            if quiet_since.elapsed() >= quiet {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        quiet_since = Instant::now();
        let ack_ids: Vec<String> = messages.iter().map(|m| m.ack_id.clone()).collect();
        for message in messages {
            let id: u64 = message
                .attributes
                .get(TWEET_ID_ATTRIBUTE)
                .and_then(|id| id.parse().ok())
                .expect("tweet_id attribute");
            let entry = got.entry(id).or_insert((0, message.data.clone()));
            entry.0 += 1;
        }
        client.acknowledge(names, &ack_ids).await.expect("acknowledge");
    }
}

fn producer_args(config: &Path, fake: &FakeX, token_file: &Path) -> Args {
    Args::try_parse_from([
        "producer",
        "--config",
        config.to_str().expect("utf-8"),
        "--x-api-url",
        &fake.url(),
        "--bearer-token-file",
        token_file.to_str().expect("utf-8"),
        "--retry-initial",
        "100ms",
        "--retry-max",
        "1s",
        "--x-api-timeout",
        "5s",
        "--once",
    ])
    .expect("producer flags")
}

async fn run_producer_once(args: Args) {
    support::init_test_logs();
    let producer = Producer::new(args, Telemetry::new("cilvest_producer")).expect("producer");
    tokio::time::timeout(Duration::from_secs(60), producer.run(std::future::pending()))
        .await
        .expect("producer --once finishes within 60 s")
        .expect("producer run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_publishes_each_tweet_with_its_id_and_resumes_from_the_checkpoint_without_rereading() {
    let _serial = SERIAL.lock().await;
    // The producer reads the GCS emulator's address the way the consumer does.
    let gcs = service_env("CILVEST_GCS_ENDPOINT", "gcs");
    assert!(!gcs.is_empty());
    let client = client();
    let names = names("producer");
    let (lake_uri, lake) = gcs_lake("pubsub-producer").await;
    let pipeline = unique("pipeline");
    let config = write_config(&pipeline, &names, &lake_uri);
    let token = format!("AAAAAAAAAAAAAAAAAAAAA{}", unique("secret").replace('-', "x"));
    let token_file = config.with_file_name("bearer-token");
    std::fs::write(&token_file, &token).expect("token file");
    let fake = FakeX::start(&token).await;
    fake.add_tweets(250);
    fake.add_noise(20);
    let mut expected = fake.matching_ids(CILVEST_QUERY);
    assert_eq!(expected.len(), 250);

    // The topic and the subscription do not exist yet: the producer creates both before publishing.
    run_producer_once(producer_args(&config, &fake, &token_file)).await;
    let got = drain(&client, &names, Duration::from_secs(3)).await;
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), expected);
    for (id, (count, data)) in &got {
        assert_eq!(*count, 1, "tweet {id} published once");
        let parsed = tweet::parse(data).expect("an envelope");
        assert_eq!(parsed.tweet.id, id.to_string(), "the attribute is the tweet's id");
        assert!(parsed.author_username.is_some());
    }
    let checkpoint = format!("checkpoints/{pipeline}/producer.json");
    let body = lake
        .get(&checkpoint.as_str().into())
        .await
        .expect("checkpoint written")
        .bytes()
        .await
        .expect("checkpoint body");
    let body: Value = serde_json::from_slice(&body).expect("checkpoint json");
    let newest = *expected.last().expect("tweets");
    assert_eq!(body["newest_id"], newest.to_string());

    // A new process knows nothing but the checkpoint: it asks X only for newer tweets.
    let searches_before = fake.search_request_count();
    let later = fake.add_tweets(120);
    expected.extend(later.iter().copied());
    run_producer_once(producer_args(&config, &fake, &token_file)).await;
    let again = drain(&client, &names, Duration::from_secs(3)).await;
    assert_eq!(
        again.keys().copied().collect::<BTreeSet<_>>(),
        later.into_iter().collect::<BTreeSet<_>>(),
        "only the new tweets are published"
    );
    let resumed = fake
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "search")
        .nth(searches_before)
        .expect("a search after the restart");
    assert_eq!(resumed.param("since_id"), Some(newest.to_string().as_str()));
    assert_eq!(resumed.param("start_time"), None);
    assert_eq!(fake.posts_served(), 370, "no tweet is read twice");
}
