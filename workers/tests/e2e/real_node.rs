//! The one end-to-end scenario: helm install, a pipeline applied, tweets to the lake, BigQuery and search, then pod
//! kills, an upgrade and the delete.

use std::collections::BTreeSet;

use chrono::{Duration as Days, TimeZone, Utc};
use chrono_tz::Asia::Jakarta;
use k8s_openapi::api::{apps::v1::Deployment, batch::v1::CronJob};
use kube::{Api, Client, api::ListParams};
use serde_json::{Value, json};

use super::{
    CHART, Env, TODAYS, TOKEN, YESTERDAYS, bigquery_count, container_image, create_bucket, demo_pod,
    deployment_available, eventually, lease_holder, pipeline_yaml, raw_ids, running_pod, search_count,
};
use crate::support;
use crate::support::{create_topic, fake_x::FakeX, service_env, topic_records, unique};

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_to_data_on_a_real_node() {
    support::init_test_logs();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = Env::from_env();
    let client = Client::try_default().await.expect("kube client from KUBECONFIG");
    let release_ns = unique("e2e-system");
    let ns = unique("e2e");
    // Its cluster-wide objects (ClusterRoles, bindings) carry the release's name: unique, so that a failed run left
    // for inspection (CILVEST_KEEP_ENV=1) never blocks the next.
    let release = &unique("cilvest");
    let pipeline = "e2e";

    // The outside world: X with yesterday's posts (Jakarta), an external Kafka topic, a bucket.
    let fake_x = FakeX::start_on(TOKEN, "0.0.0.0:0").await;
    let today = Utc::now().with_timezone(&Jakarta).date_naive();
    let yesterday = today - Days::days(1);
    let mut expected_yesterday = BTreeSet::new();
    for (batch, hour) in [8, 11, 14, 17, 20].into_iter().enumerate() {
        let at = Jakarta
            .from_local_datetime(&yesterday.and_hms_opt(hour, batch as u32, 0).expect("time"))
            .single()
            .expect("a Jakarta time")
            .with_timezone(&Utc);
        expected_yesterday.extend(fake_x.add_tweets_at(YESTERDAYS / 5, at));
    }
    fake_x.add_noise(30);
    let topic = unique("e2e-raw");
    create_topic(&service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka"), &topic, 3).await;
    let bucket = unique("e2e-lake");
    create_bucket(&bucket).await;
    let dataset = unique("e2e").replace('-', "_");
    let index = unique("e2e-tweets");

    // 1. helm install, images by digest from the registry; the operator pod must become Ready on its own probe.
    for namespace in [&release_ns, &ns] {
        env.kubectl(&["create", "namespace", namespace], None);
        env.kubectl(
            &[
                "label",
                "namespace",
                namespace,
                "pod-security.kubernetes.io/enforce=restricted",
            ],
            None,
        );
    }
    let operator_repo = format!("{}/cilvest-operator", env.registry);
    let worker_repo = format!("{}/cilvest", env.registry);
    env.helm(&[
        "install",
        release,
        CHART,
        "--namespace",
        &release_ns,
        "--wait",
        "--timeout",
        "180s",
        "--set",
        &format!("image.repository={operator_repo}"),
        "--set",
        &format!("image.digest={}", env.operator_digest),
        "--set",
        &format!("workerImage.repository={worker_repo}"),
        "--set",
        &format!("workerImage.digest={}", env.worker_digest),
    ]);
    let operator_selector = "app.kubernetes.io/component=operator";
    let operator_pod = eventually("the operator pod to be Ready", 120, || {
        running_pod(&client, &release_ns, operator_selector)
    })
    .await;
    let operator_name = operator_pod.metadata.name.clone().expect("pod name");
    support::startup::record(&client, "operator (first pull)", &release_ns, operator_selector).await;
    eventually("the operator to hold its Lease", 60, || async {
        (lease_holder(&client, &release_ns).await.as_deref() == Some(operator_name.as_str())).then_some(())
    })
    .await;

    // The workers image on its own, as a newcomer would try it: `cilvest demo` as a restricted pod whose only
    // writable place is an emptyDir at /tmp.
    env.kubectl(
        &["-n", &ns, "apply", "-f", "-"],
        Some(&demo_pod(&worker_repo, &env.worker_digest)),
    );
    let demo_log = eventually("the demo pod to finish", 180, || async {
        let phase = env.kubectl(
            &["-n", &ns, "get", "pod", "demo", "-o", "jsonpath={.status.phase}"],
            None,
        );
        match phase.as_str() {
            "Succeeded" => Some(env.kubectl(&["-n", &ns, "logs", "demo"], None)),
            "Failed" => panic!(
                "the demo pod failed: {}",
                env.kubectl(&["-n", &ns, "logs", "demo"], None)
            ),
            _ => None,
        }
    })
    .await;
    support::startup::record(
        &client,
        "demo (first pull, to completion)",
        &ns,
        "app.kubernetes.io/name=cilvest-demo",
    )
    .await;
    for keyword in ["saham", "reksadana", "sukuk"] {
        assert!(
            demo_log.contains(keyword),
            "the demo report names {keyword}: {demo_log}"
        );
    }

    // 2. A pipeline, its token in a Secret, applied with kubectl.
    env.kubectl(
        &[
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "x-api",
            &format!("--from-literal=bearerToken={TOKEN}"),
        ],
        None,
    );
    let manifest = pipeline_yaml(
        pipeline,
        &fake_x.url_via(&env.node_ip),
        &topic,
        &bucket,
        &dataset,
        &index,
    );
    env.kubectl(&["-n", &ns, "apply", "-f", "-"], Some(&manifest));

    // 3. Real producer and consumer pods under the restricted profile; tweets reach Kafka.
    for component in ["producer", "consumer"] {
        let name = format!("{pipeline}-{component}");
        let deployment = eventually(&format!("{name} to be available"), 240, || {
            deployment_available(&client, &ns, &name)
        })
        .await;
        assert_eq!(
            container_image(&deployment),
            format!("{worker_repo}@{}", env.worker_digest)
        );
        let selector = format!("app.kubernetes.io/component={component}");
        support::startup::record(&client, &format!("{component} (image present)"), &ns, &selector).await;
    }
    let bootstrap = service_env("CILVEST_KAFKA_BOOTSTRAP", "kafka");
    eventually("the producer to publish yesterday's posts", 120, || async {
        (topic_records(&bootstrap, &topic).await.len() >= YESTERDAYS).then_some(())
    })
    .await;

    // 4. Faults on real pods, mid-stream: new posts arrive, the consumer is force-deleted before its batch lands
    //    (it flushes every 60 s), then the operator; nothing may be lost or landed twice.
    let todays: BTreeSet<u64> = fake_x.add_tweets(TODAYS).into_iter().collect();
    env.kubectl(
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            "-l",
            "app.kubernetes.io/component=consumer",
            "--force",
            "--grace-period=0",
        ],
        None,
    );
    env.kubectl(
        &[
            "-n",
            &release_ns,
            "delete",
            "pod",
            "-l",
            operator_selector,
            "--force",
            "--grace-period=0",
        ],
        None,
    );
    let successor = eventually("a new operator pod to take the Lease", 180, || async {
        let pod = running_pod(&client, &release_ns, operator_selector).await?;
        let name = pod.metadata.name?;
        (name != operator_name && lease_holder(&client, &release_ns).await.as_deref() == Some(name.as_str()))
            .then_some(name)
    })
    .await;
    tracing::info!(%successor, "the operator's replacement holds the Lease");
    support::startup::record(
        &client,
        "operator (replacement, image present)",
        &release_ns,
        operator_selector,
    )
    .await;

    let lake = cilvest_workers::lake::open(
        &format!("gs://{bucket}/lake"),
        Some(&service_env("CILVEST_GCS_URL", "gcs")),
    )
    .expect("open the lake");
    let every_id: BTreeSet<u64> = expected_yesterday.union(&todays).copied().collect();
    let landed = eventually("every post to land in the lake", 300, || async {
        let ids = raw_ids(lake.as_ref()).await;
        every_id.iter().all(|id| ids.contains_key(id)).then_some(ids)
    })
    .await;
    let twice: Vec<_> = landed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "landed more than once: {twice:?}");
    let strangers: Vec<_> = landed.keys().filter(|id| !every_id.contains(id)).collect();
    assert!(
        strangers.is_empty(),
        "in the lake but never served as a match: {strangers:?}"
    );

    // 5. The daily job, started as a user would; its real termination message becomes status.lastRun.
    env.kubectl(
        &[
            "-n",
            &ns,
            "create",
            "job",
            "--from",
            &format!("cronjob/{pipeline}-daily"),
            "daily-now",
        ],
        None,
    );
    let last_run = eventually("status.lastRun for yesterday", 300, || async {
        let cvp: Value =
            serde_json::from_str(&env.kubectl(&["-n", &ns, "get", "cvp", pipeline, "-o", "json"], None)).ok()?;
        let run = cvp["status"]["lastRun"].clone();
        (run["date"] == yesterday.to_string()).then_some(run)
    })
    .await;
    assert_eq!(last_run["result"], "Succeeded", "{last_run}");
    assert_eq!(last_run["tweetsKept"], json!(YESTERDAYS), "{last_run}");
    assert_eq!(bigquery_count(&dataset, yesterday).await, YESTERDAYS as i64);
    assert_eq!(search_count(&index).await, YESTERDAYS as u64);
    let table = env.kubectl(&["-n", &ns, "get", "cvp", pipeline], None);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().any(|cell| cell == "True")),
        "kubectl get cvp shows Ready: {table}"
    );

    // 6. helm upgrade to another tag: the operator rolls, and passes the new worker image on.
    env.helm(&[
        "upgrade",
        release,
        CHART,
        "--namespace",
        &release_ns,
        "--reuse-values",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "image.digest=",
        "--set",
        &format!("image.tag={}", env.upgrade_tag),
        "--set",
        "workerImage.digest=",
        "--set",
        &format!("workerImage.tag={}", env.upgrade_tag),
    ]);
    // The chart names the Deployment after the release.
    let operator_deployment = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .expect("list the release's Deployments")
        .items
        .first()
        .and_then(|d| d.metadata.name.clone())
        .expect("the operator Deployment");
    let operator = eventually("the upgraded operator", 180, || {
        deployment_available(&client, &release_ns, &operator_deployment)
    })
    .await;
    assert_eq!(
        container_image(&operator),
        format!("{operator_repo}:{}", env.upgrade_tag)
    );
    for component in ["producer", "consumer"] {
        let name = format!("{pipeline}-{component}");
        eventually(&format!("{name} on the new worker image"), 240, || async {
            let deployment = deployment_available(&client, &ns, &name).await?;
            (container_image(&deployment) == format!("{worker_repo}:{}", env.upgrade_tag)).then_some(())
        })
        .await;
    }
    let cron = Api::<CronJob>::namespaced(client.clone(), &ns)
        .get(&format!("{pipeline}-daily"))
        .await
        .expect("cron job");
    let cron_image = cron
        .spec
        .and_then(|s| s.job_template.spec)
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].image.clone());
    assert_eq!(cron_image.flatten(), Some(format!("{worker_repo}:{}", env.upgrade_tag)));

    // 7. Deleting the pipeline garbage-collects its children; uninstalling leaves no pods.
    env.kubectl(
        &["-n", &ns, "delete", "cvp", pipeline, "--wait=true", "--timeout=120s"],
        None,
    );
    eventually("the pipeline's children to be collected", 180, || async {
        let left = env.kubectl(
            &[
                "-n",
                &ns,
                "get",
                "deployments,cronjobs,configmaps,pods",
                "-l",
                &format!("cilvest.io/pipeline={pipeline}"),
                "-o",
                "name",
            ],
            None,
        );
        left.trim().is_empty().then_some(())
    })
    .await;
    env.helm(&[
        "uninstall",
        release,
        "--namespace",
        &release_ns,
        "--wait",
        "--timeout",
        "120s",
    ]);
    eventually("no pods left in the release namespace", 120, || async {
        env.kubectl(&["-n", &release_ns, "get", "pods", "-o", "name"], None)
            .trim()
            .is_empty()
            .then_some(())
    })
    .await;
    for namespace in [&ns, &release_ns] {
        env.kubectl(&["delete", "namespace", namespace, "--wait=false"], None);
    }
}
