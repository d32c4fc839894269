//! A full pipeline from create to delete, and a missing secret that degrades the pipeline, named, until it exists.

use k8s_openapi::api::{apps::v1::Deployment, batch::v1::CronJob};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{full_pipeline, resource, setup, versions};
use crate::common;
use crate::common::{Operator, condition, create_token_secret, delete_namespace, wait_until};

#[tokio::test]
async fn full_pipeline_lifecycle() {
    let (client, ns, pipelines) = setup("op-full").await;
    create_token_secret(&client, &ns).await;
    let mut operator = Operator::start(&ns, None);
    let created_at = std::time::Instant::now();
    pipelines
        .create(&PostParams::default(), &full_pipeline())
        .await
        .expect("create pipeline");

    // Every child exists, owned by the pipeline.
    let topics: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("kafka.strimzi.io", "v1", "KafkaTopic"));
    let es: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("elasticsearch.k8s.elastic.co", "v1", "Elasticsearch"),
    );
    let kibana: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("kibana.k8s.elastic.co", "v1", "Kibana"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    wait_until("every child to exist", 60, || async {
        let all = topics.get_opt("cilvest-raw").await.ok()??;
        es.get_opt("cilvest").await.ok()??;
        kibana.get_opt("cilvest").await.ok()??;
        deployments.get_opt("cilvest-producer").await.ok()??;
        deployments.get_opt("cilvest-consumer").await.ok()??;
        cronjobs.get_opt("cilvest-daily").await.ok()??;
        Some(all)
    })
    .await;
    eprintln!(
        "reconcile latency (CR created -> all children exist): {:?}",
        created_at.elapsed()
    );
    let pipeline = pipelines.get("cilvest").await.expect("pipeline");
    let uid = pipeline.uid().expect("uid");
    let producer = deployments.get("cilvest-producer").await.expect("producer");
    let owner = producer.owner_references().first().cloned().expect("owner reference");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("CilvestPipeline", uid.as_str(), Some(true))
    );
    let pod = producer.spec.and_then(|s| s.template.spec).expect("pod spec");
    let sc = pod.containers[0].security_context.clone().expect("security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
    assert_eq!(pod.security_context.and_then(|s| s.run_as_non_root), Some(true));
    let topic = topics.get("cilvest-raw").await.expect("topic");
    assert_eq!(
        topic.labels().get("strimzi.io/cluster").map(String::as_str),
        Some("cilvest")
    );
    assert_eq!(topic.data["spec"]["partitions"], 3);

    // Play Strimzi and ECK: mark the topic and the search cluster healthy; the pipeline becomes Ready once the
    // Deployments are available too (kwok runs their pods).
    let ready_topic = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    topics
        .patch_status("cilvest-raw", &PatchParams::default(), &Patch::Merge(&ready_topic))
        .await
        .expect("topic status");
    let green = json!({"status": {"health": "green"}});
    es.patch_status("cilvest", &PatchParams::default(), &Patch::Merge(&green))
        .await
        .expect("es status");
    kibana
        .patch_status("cilvest", &PatchParams::default(), &Patch::Merge(&green))
        .await
        .expect("kibana status");
    wait_until("the pipeline to become Ready", 90, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Ready")?.0 == "True").then_some(p)
    })
    .await;
    // Children keep settling for a moment (ReplicaSet and pod status); wait until nothing moves for 3 s.
    let ready = wait_until("the pipeline and its children to settle", 60, || {
        let (client, ns, pipelines) = (client.clone(), ns.clone(), pipelines.clone());
        async move {
            let p = pipelines.get("cilvest").await.ok()?;
            let snapshot = (versions(&client, &ns).await, p.resource_version());
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            let again = (
                versions(&client, &ns).await,
                pipelines.get("cilvest").await.ok()?.resource_version(),
            );
            (snapshot == again).then_some(p)
        }
    })
    .await;
    eprintln!(
        "operator resident memory with 1 pipeline, idle: {:.1} MiB",
        operator.rss_mib()
    );
    let status = ready.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(status.keywords.as_deref(), Some("saham,reksadana,sukuk"));

    // The daily job's own search user (ECK file realm), not the superuser: a basic-auth Secret with a random
    // password, and its role on the pipeline's indices only.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let writer = secrets.get("cilvest-search-writer").await.expect("the writer Secret");
    assert_eq!(writer.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let data = writer.data.clone().expect("data");
    assert_eq!(data["username"].0, b"cilvest-daily");
    assert_eq!(data["password"].0.len(), 32, "a 24-byte random password, base64");
    assert_eq!(writer.owner_references().len(), 1, "owned by the pipeline");
    let roles = secrets.get("cilvest-search-roles").await.expect("the roles Secret");
    let roles_yml = String::from_utf8_lossy(&roles.data.expect("data")["roles.yml"].0).into_owned();
    assert!(
        roles_yml.contains("cilvest-tweets-*") && roles_yml.contains("cilvest-cilvest-writer"),
        "{roles_yml}"
    );
    // With Kibana, the dashboard import: its own user and role, and a Job (owned, named by its hash) that runs
    // `cilvest kibana-setup` as that user.
    let setup_user = secrets
        .get("cilvest-kibana-setup")
        .await
        .expect("the Kibana import's Secret");
    let setup_data = setup_user.data.clone().expect("data");
    assert_eq!(setup_data["username"].0, b"cilvest-kibana-setup");
    assert_eq!(setup_data["roles"].0, b"cilvest-cilvest-dashboards");
    assert!(roles_yml.contains("cilvest-cilvest-dashboards:"), "{roles_yml}");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    let setup_jobs = || async {
        jobs.list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=kibana-setup"))
            .await
            .expect("list Jobs")
            .items
    };
    let imports = setup_jobs().await;
    assert_eq!(imports.len(), 1, "one import Job");
    let import = &imports[0];
    assert!(
        import.name_any().starts_with("cilvest-kibana-setup-"),
        "{}",
        import.name_any()
    );
    assert_eq!(
        import.owner_references().first().map(|o| o.uid.as_str()),
        Some(uid.as_str())
    );
    let import_pod = import.spec.clone().and_then(|s| s.template.spec).expect("pod");
    assert_eq!(import_pod.service_account_name.as_deref(), Some("cilvest-kibana-setup"));
    let secret_versions = || async {
        let mut out = Vec::new();
        for name in ["cilvest-search-writer", "cilvest-search-roles", "cilvest-kibana-setup"] {
            out.push(secrets.get(name).await.expect("secret").resource_version());
        }
        out
    };
    let secrets_before = secret_versions().await;

    // An unchanged pipeline is not written again: a fresh operator's full resync leaves every resourceVersion.
    operator.kill();
    let before = versions(&client, &ns).await;
    let before_pipeline = pipelines.get("cilvest").await.expect("pipeline");
    let operator = Operator::start(&ns, None);
    wait_until("the new operator to reconcile", 60, || async {
        (operator.metric("cilvest_operator_reconciles_total").await >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        versions(&client, &ns).await,
        before,
        "a resync of an unchanged pipeline wrote children"
    );
    assert_eq!(
        secret_versions().await,
        secrets_before,
        "the search user's Secrets were rewritten"
    );
    let writer_after = secrets.get("cilvest-search-writer").await.expect("writer");
    assert_eq!(writer_after.data, writer.data, "the password stays what it was");
    let after_pipeline = pipelines.get("cilvest").await.expect("pipeline");
    assert_eq!(
        after_pipeline.resource_version(),
        before_pipeline.resource_version(),
        "status rewritten from {:?} to {:?}",
        before_pipeline.status,
        after_pipeline.status
    );

    // A spec change re-applies: more partitions reach the KafkaTopic.
    let more = json!({"spec": {"topics": {"raw": {"partitions": 6}}}});
    pipelines
        .patch("cilvest", &PatchParams::default(), &Patch::Merge(&more))
        .await
        .expect("patch partitions");
    wait_until("the KafkaTopic to get 6 partitions", 30, || async {
        (topics.get("cilvest-raw").await.ok()?.data["spec"]["partitions"] == 6).then_some(())
    })
    .await;

    // Removing the search target deletes the ECK objects (labelled orphans).
    let no_search = json!({"spec": {"targets": {"elasticsearch": null}}});
    pipelines
        .patch("cilvest", &PatchParams::default(), &Patch::Merge(&no_search))
        .await
        .expect("remove search");
    wait_until(
        "the ECK objects and the Kibana import Job to be deleted",
        30,
        || async {
            let gone = es.get_opt("cilvest").await.ok()?.is_none() && kibana.get_opt("cilvest").await.ok()?.is_none();
            (gone && setup_jobs().await.is_empty()).then_some(())
        },
    )
    .await;

    // Switching the bus to Pub/Sub deletes the KafkaTopic (a labelled orphan) and tells the workers the names.
    let to_pubsub = json!({"spec": {"bus": "pubsub", "pubsub": {"project": "cilvest-demo"}}});
    pipelines
        .patch("cilvest", &PatchParams::default(), &Patch::Merge(&to_pubsub))
        .await
        .expect("switch to pub/sub");
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    wait_until(
        "the KafkaTopic to be deleted and the workers told about Pub/Sub",
        30,
        || async {
            let gone = topics.get_opt("cilvest-raw").await.ok()?.is_none();
            let config = config_maps.get("cilvest-config").await.ok()?;
            let told = config
                .data?
                .get("pipeline.json")?
                .contains("\"subscription\": \"cilvest-cilvest-lake\"");
            (gone && told).then_some(())
        },
    )
    .await;

    // Deleting the pipeline garbage-collects every child (the controller manager's garbage collector).
    drop(operator);
    pipelines
        .delete("cilvest", &DeleteParams::foreground())
        .await
        .expect("delete pipeline");
    wait_until("every child to be garbage-collected", 60, || async {
        let left = versions(&client, &ns).await;
        left.is_empty().then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn missing_secret_degrades_naming_it_then_recovers() {
    let (client, ns, pipelines) = setup("op-secret").await;
    let operator = Operator::start(&ns, None);
    pipelines
        .create(&PostParams::default(), &full_pipeline())
        .await
        .expect("create pipeline");
    let (_, reason, message) = wait_until("a Degraded condition", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        condition(&p, "Degraded").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(reason, "SecretMissing");
    assert!(message.contains("cilvest-x-api"), "{message}");
    let p = pipelines.get("cilvest").await.expect("pipeline");
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Degraded"));

    create_token_secret(&client, &ns).await;
    wait_until("Degraded to clear once the Secret exists", 60, || async {
        let p = pipelines.get("cilvest").await.ok()?;
        (condition(&p, "Degraded")?.0 == "False").then_some(())
    })
    .await;
    let events = common::events(&ns, "events");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"SecretMissing") && reasons.contains(&"Applied"),
        "events: {reasons:?}"
    );
    assert!(
        !operator.logs().contains("test-token-not-real"),
        "the token leaked into the operator log"
    );
    delete_namespace(&client, &ns).await;
}
