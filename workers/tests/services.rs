//! Smoke tests of the real services `scripts/testenv up` starts on 127.0.0.1: Kafka, the GCS emulator,
//! the BigQuery emulator, the search server, Spark and the Pub/Sub emulator. Each fails, saying what to start, when its service is missing.

mod support;

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use support::{service_env, unique};

#[tokio::test]
async fn kafka_round_trips_keyed_messages_and_commits_offsets() {
    let bootstrap = service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka");
    let topic = unique("smoke");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic request");
    assert!(created.iter().all(Result::is_ok), "create topic: {created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let mut sent = BTreeMap::new();
    for i in 0..60 {
        let key = format!("tweet-{i}");
        let value = format!("{{\"id\":\"{i}\"}}");
        let partition = producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivery")
            .partition;
        sent.insert(key, (partition, value));
    }
    let partitions: std::collections::BTreeSet<_> = sent.values().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 3, "60 keys spread over all 3 partitions");

    let group = unique("smoke-group");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut received = BTreeMap::new();
    let mut stream = consumer.stream();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("messages within 30 s")
            .expect("stream open")
            .expect("message");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf8 key");
        let value = String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf8 value");
        received.insert(key, (message.partition(), value));
    }
    drop(stream);
    assert_eq!(
        received, sent,
        "every keyed message comes back once, on the partition it was written to"
    );
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition(&topic, p);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed offsets");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!("partition {} has no committed offset: {other:?}", e.partition()),
        })
        .sum();
    assert_eq!(total, 60, "committed offsets cover every consumed message");
}

#[tokio::test]
async fn gcs_emulator_stores_and_lists_objects_through_the_lake() {
    let endpoint = service_env("CILVEST_GCS_URL", "gcs");
    let bucket = unique("smoke-lake");
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{endpoint}/storage/v1/b?project=cilvest-test"))
        .json(&json!({"name": bucket}))
        .send()
        .await
        .expect("create bucket request");
    assert!(response.status().is_success(), "create bucket: {}", response.status());

    let lake = cilvest_workers::lake::open(&format!("gs://{bucket}/tweets"), Some(&endpoint)).expect("open lake");
    for (day, n) in [("2026-11-01", 2), ("2026-11-02", 3)] {
        for i in 0..n {
            let path = Path::from(format!("raw/dt={day}/part-{i}.ndjson"));
            let body = format!("{{\"id\":\"{day}-{i}\"}}\n");
            lake.put(&path, PutPayload::from(body.into_bytes()))
                .await
                .expect("put object");
        }
    }
    let listed: Vec<_> = lake
        .list(Some(&Path::from("raw/dt=2026-11-02")))
        .map(|meta| meta.expect("list entry").location.to_string())
        .collect()
        .await;
    let mut listed = listed;
    listed.sort();
    assert_eq!(
        listed,
        [
            "raw/dt=2026-11-02/part-0.ndjson",
            "raw/dt=2026-11-02/part-1.ndjson",
            "raw/dt=2026-11-02/part-2.ndjson"
        ]
    );
    let body = lake
        .get(&Path::from("raw/dt=2026-11-01/part-1.ndjson"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&body[..], b"{\"id\":\"2026-11-01-1\"}\n");

    // The prefix is real: the object sits under tweets/ in the bucket, as the JSON API lists it.
    let raw: Value = http
        .get(format!("{endpoint}/storage/v1/b/{bucket}/o?prefix=tweets/raw/"))
        .send()
        .await
        .expect("list request")
        .json()
        .await
        .expect("list json");
    assert_eq!(raw["items"].as_array().map(Vec::len), Some(5), "{raw}");

    // The emulator mirrors what is written and deleted into the BigQuery emulator's gs:// root, so that a load job
    // of gs://bucket/path reads what the lake holds (the end-to-end test relies on it).
    let mirror = std::path::PathBuf::from(service_env("CILVEST_BQ_GCS_LOCAL_ROOT", "bigquery gcs"));
    let mirrored = mirror.join(&bucket).join("tweets/raw/dt=2026-11-01/part-1.ndjson");
    assert_eq!(
        std::fs::read(&mirrored).expect("mirrored object"),
        b"{\"id\":\"2026-11-01-1\"}\n"
    );
    lake.delete(&Path::from("raw/dt=2026-11-01/part-1.ndjson"))
        .await
        .expect("delete");
    assert!(!mirrored.exists(), "a deleted object leaves the mirror too");
}

#[tokio::test]
async fn bigquery_emulator_inserts_and_groups_rows() {
    use gcp_bigquery_client::model::{
        dataset::Dataset, query_request::QueryRequest, query_response::ResultSet, table::Table,
        table_data_insert_all_request::TableDataInsertAllRequest, table_field_schema::TableFieldSchema,
        table_schema::TableSchema,
    };
    let endpoint = service_env("CILVEST_BQ_URL", "bigquery");
    let project = service_env("CILVEST_BQ_PROJECT", "bigquery");
    let client = cilvest_workers::google::bigquery::client(Some(&endpoint))
        .await
        .expect("bigquery client");
    let dataset = unique("smoke").replace('-', "_");
    client
        .dataset()
        .create(Dataset::new(&project, &dataset))
        .await
        .expect("create dataset");
    let schema = TableSchema::new(vec![
        TableFieldSchema::string("keyword"),
        TableFieldSchema::integer("tweet_id"),
    ]);
    client
        .table()
        .create(Table::new(&project, &dataset, "tweets", schema))
        .await
        .expect("create table");

    let rows = [("saham", 1), ("saham", 2), ("sukuk", 3), ("saham", 4), ("reksadana", 5)];
    let mut request = TableDataInsertAllRequest::new();
    for (keyword, id) in rows {
        request
            .add_row(None, json!({"keyword": keyword, "tweet_id": id}))
            .expect("row");
    }
    let inserted = client
        .tabledata()
        .insert_all(&project, &dataset, "tweets", request)
        .await
        .expect("insertAll");
    assert!(
        inserted.insert_errors.as_ref().is_none_or(|e| e.is_empty()),
        "insert errors: {:?}",
        inserted.insert_errors
    );

    let sql =
        format!("SELECT keyword, COUNT(*) AS n FROM `{project}.{dataset}.tweets` GROUP BY keyword ORDER BY keyword");
    let response = client
        .job()
        .query(&project, QueryRequest::new(sql))
        .await
        .expect("query");
    let mut result = ResultSet::new_from_query_response(response);
    let mut counts = BTreeMap::new();
    while result.next_row() {
        let keyword = result
            .get_string_by_name("keyword")
            .expect("keyword")
            .expect("non-null keyword");
        let n = result.get_i64_by_name("n").expect("n").expect("non-null n");
        counts.insert(keyword, n);
    }
    let expected: BTreeMap<String, i64> = [
        ("reksadana".to_owned(), 1),
        ("saham".to_owned(), 3),
        ("sukuk".to_owned(), 1),
    ]
    .into();
    assert_eq!(counts, expected);
}

#[tokio::test]
async fn search_server_bulk_indexes_and_aggregates() {
    use elasticsearch::{
        BulkParts, SearchParts,
        http::request::JsonBody,
        indices::{IndicesCreateParts, IndicesRefreshParts},
    };
    let url = service_env("CILVEST_ES_URL", "search");
    let es = cilvest_workers::search::client(&url, None, None).expect("search client");
    let index = unique("smoke");
    let created = es
        .indices()
        .create(IndicesCreateParts::Index(&index))
        .body(json!({"mappings": {"properties": {
            "keywords": {"type": "keyword"}, "created_at": {"type": "date"}, "text": {"type": "text"}
        }}}))
        .send()
        .await
        .expect("create index");
    assert!(
        created.status_code().is_success(),
        "create index: {}",
        created.status_code()
    );

    let docs = [
        ("1", "saham", "2026-11-01T03:00:00Z", "beli saham bbca"),
        ("2", "saham", "2026-11-01T05:00:00Z", "saham naik"),
        ("3", "sukuk", "2026-11-02T01:00:00Z", "sukuk ritel"),
        ("4", "reksadana", "2026-11-02T02:00:00Z", "reksa dana pasar uang"),
    ];
    let mut body: Vec<JsonBody<Value>> = Vec::new();
    for (id, keyword, at, text) in docs {
        body.push(json!({"index": {"_id": id}}).into());
        body.push(json!({"keywords": [keyword], "created_at": at, "text": text}).into());
    }
    let bulk: Value = es
        .bulk(BulkParts::Index(&index))
        .body(body)
        .send()
        .await
        .expect("bulk")
        .json()
        .await
        .expect("bulk json");
    assert_eq!(bulk["errors"], json!(false), "{bulk}");
    es.indices()
        .refresh(IndicesRefreshParts::Index(&[&index]))
        .send()
        .await
        .expect("refresh");

    let found: Value = es
        .search(SearchParts::Index(&[&index]))
        .body(json!({
            "size": 0,
            "aggs": {
                "per_keyword": {"terms": {"field": "keywords"}},
                "per_day": {"date_histogram": {"field": "created_at", "calendar_interval": "day"}}
            }
        }))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search json");
    let buckets = |agg: &str| -> Vec<(String, u64)> {
        found["aggregations"][agg]["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("no {agg} buckets in {found}"))
            .iter()
            .map(|b| {
                let key = b
                    .get("key_as_string")
                    .or_else(|| b.get("key"))
                    .map(|k| k.as_str().map_or(k.to_string(), str::to_owned));
                (key.unwrap_or_default(), b["doc_count"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    let mut per_keyword = buckets("per_keyword");
    per_keyword.sort();
    assert_eq!(
        per_keyword,
        [
            ("reksadana".to_owned(), 1),
            ("saham".to_owned(), 2),
            ("sukuk".to_owned(), 1)
        ]
    );
    let per_day: Vec<u64> = buckets("per_day").into_iter().map(|(_, n)| n).collect();
    assert_eq!(per_day, [2, 2], "{found}");
}

#[tokio::test]
async fn pubsub_emulator_round_trips_messages_with_attributes_and_redelivers_what_is_not_acknowledged() {
    let host = service_env("PUBSUB_EMULATOR_HOST", "pubsub");
    let api = format!("http://{host}/v1/projects/cilvest-smoke");
    let (topic, subscription) = (unique("smoke-topic"), unique("smoke-sub"));
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Value| {
        let request = http.request(method, format!("{api}/{path}")).json(&body);
        async move {
            let response = request.send().await.expect("pub/sub request");
            let status = response.status();
            let body: Value = response.json().await.expect("json answer");
            assert!(status.is_success(), "{status}: {body}");
            body
        }
    };
    call(reqwest::Method::PUT, format!("topics/{topic}"), json!({})).await;
    call(
        reqwest::Method::PUT,
        format!("subscriptions/{subscription}"),
        json!({"topic": format!("projects/cilvest-smoke/topics/{topic}"), "ackDeadlineSeconds": 10}),
    )
    .await;
    let messages: Vec<Value> = (0..20)
        .map(|i| {
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD.encode(format!("{{\"id\":\"{i}\"}}"));
            json!({"data": data, "attributes": {"tweet_id": i.to_string()}})
        })
        .collect();
    let published = call(
        reqwest::Method::POST,
        format!("topics/{topic}:publish"),
        json!({"messages": messages}),
    )
    .await;
    assert_eq!(published["messageIds"].as_array().map(Vec::len), Some(20));

    let mut received: BTreeMap<String, String> = BTreeMap::new();
    let mut ack_ids = Vec::new();
    while received.len() < 20 {
        let pulled = call(
            reqwest::Method::POST,
            format!("subscriptions/{subscription}:pull"),
            json!({"maxMessages": 20}),
        )
        .await;
        for message in pulled["receivedMessages"].as_array().into_iter().flatten() {
            let tweet_id = message["message"]["attributes"]["tweet_id"]
                .as_str()
                .expect("attribute");
            received.insert(tweet_id.to_owned(), message["message"]["messageId"].to_string());
            ack_ids.push(message["ackId"].clone());
        }
    }
    // Hand half back at once (deadline 0) and acknowledge the rest: only the half handed back comes again.
    let (back, done) = ack_ids.split_at(10);
    call(
        reqwest::Method::POST,
        format!("subscriptions/{subscription}:modifyAckDeadline"),
        json!({"ackIds": back, "ackDeadlineSeconds": 0}),
    )
    .await;
    call(
        reqwest::Method::POST,
        format!("subscriptions/{subscription}:acknowledge"),
        json!({"ackIds": done}),
    )
    .await;
    let mut again = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while again < 10 && std::time::Instant::now() < deadline {
        let pulled = call(
            reqwest::Method::POST,
            format!("subscriptions/{subscription}:pull"),
            json!({"maxMessages": 20}),
        )
        .await;
        again += pulled["receivedMessages"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(
        again, 10,
        "the messages handed back are delivered again, the acknowledged ones are not"
    );
}

#[test]
fn spark_runs_a_pyspark_job_in_local_mode() {
    let spark_submit = service_env("CILVEST_SPARK_SUBMIT", "spark");
    let dir = std::env::temp_dir().join(unique("smoke-spark"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("tweets.jsonl");
    let lines: Vec<String> = [("saham", 3), ("sukuk", 2)]
        .iter()
        .flat_map(|(k, n)| (0..*n).map(move |i| json!({"id": format!("{k}{i}"), "keyword": k}).to_string()))
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("input");
    let script = dir.join("count.py");
    std::fs::write(
        &script,
        "import json, sys\nfrom pyspark.sql import SparkSession\n\
         spark = SparkSession.builder.appName('cilvest-smoke').getOrCreate()\n\
         rows = spark.read.json(sys.argv[1]).groupBy('keyword').count().collect()\n\
         open(sys.argv[2], 'w').write(json.dumps({r['keyword']: r['count'] for r in rows}))\n\
         spark.stop()\n",
    )
    .expect("script");
    let output = dir.join("counts.json");
    let run = std::process::Command::new(&spark_submit)
        .args(["--master", "local[2]", "--conf", "spark.ui.enabled=false"])
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run spark-submit");
    assert!(
        run.status.success(),
        "spark-submit failed: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let counts: BTreeMap<String, u64> = serde_json::from_slice(&std::fs::read(&output).expect("output")).expect("json");
    assert_eq!(
        counts,
        BTreeMap::from([("saham".to_owned(), 3), ("sukuk".to_owned(), 2)])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
