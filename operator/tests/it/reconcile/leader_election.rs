//! Two replicas: the second stays passive while the first holds the lease, and takes over when it goes.

use kube::{Api, api::PostParams};

use super::{full_pipeline, setup};
use crate::common::{Operator, create_token_secret, delete_namespace, wait_until};

#[tokio::test]
async fn second_replica_stays_passive_while_the_first_holds_the_lease() {
    let (client, ns, pipelines) = setup("op-lease").await;
    create_token_secret(&client, &ns).await;
    let first = Operator::start(&ns, Some((&ns, "first")));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
    wait_until("the first replica to hold the lease", 30, || async {
        let lease = leases.get_opt("cilvest-operator").await.ok()??;
        (lease.spec?.holder_identity? == "first").then_some(())
    })
    .await;
    let second = Operator::start(&ns, Some((&ns, "second")));
    pipelines
        .create(&PostParams::default(), &full_pipeline())
        .await
        .expect("create pipeline");
    wait_until("the leader to reconcile", 60, || async {
        (first.metric("cilvest_operator_reconciles_total").await >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(
        second.metric("cilvest_operator_reconciles_total").await,
        0.0,
        "the standby reconciled"
    );
    assert!(second.logs().contains("standing by"), "standby log: {}", second.logs());
    let lease = leases.get("cilvest-operator").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("first"));

    // When the leader goes, the standby takes over (the leader releases the lease on SIGTERM; a kill waits for expiry).
    drop(first);
    wait_until("the standby to take the lease", 40, || async {
        let lease = leases.get_opt("cilvest-operator").await.ok()??;
        (lease.spec?.holder_identity? == "second").then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}
