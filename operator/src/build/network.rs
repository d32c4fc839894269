//! The pipeline's NetworkPolicies: every pod of the pipeline denied all traffic, then each worker allowed what it
//! uses. NetworkPolicy has no host names, so Google's and X's APIs are "TCP 443 to anywhere"; what the policies do
//! take away is every other port, every other destination inside the cluster, and all ingress but the probe and
//! metrics port.
//!
//! | worker | ingress | egress |
//! | --- | --- | --- |
//! | producer | 8080 (probes, metrics) | DNS; 443 (X API, Pub/Sub, the Kubernetes API for its usage ConfigMap; also 6443); Kafka ports |
//! | consumer | 8080 | DNS; 443 (GCS, Pub/Sub); Kafka ports |
//! | daily | none | DNS; 443 (GCS, BigQuery, Dataproc); the search port (ECK: to the cluster's pods only) |
//! | kibana-setup (with Kibana) | none | DNS; 5601 to the pipeline's Kibana pods only |

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::ResourceExt;

use cilvest_crds::{CilvestPipeline, Pipeline};

use crate::meta::{PIPELINE_LABEL, object_meta};

/// The workers' probe and metrics port (`workers::worker_container`).
const HTTP_PORT: i32 = 8080;
/// HTTPS, and the port some clusters serve the Kubernetes API on.
const HTTPS_PORTS: [i32; 2] = [443, 6443];

/// Every policy of the pipeline; none when `spec.networkPolicies.enabled` is false (then the old ones are deleted as
/// orphans).
pub(super) fn network_policies(pipeline: &CilvestPipeline, parsed: &Pipeline) -> Vec<NetworkPolicy> {
    let spec = parsed.spec();
    if !spec.network_policies.enabled {
        return Vec::new();
    }
    let name = pipeline.name_any();
    let kafka = tcp(&parsed.kafka_ports.iter().map(|p| i32::from(*p)).collect::<Vec<_>>());
    let https = tcp(&HTTPS_PORTS);
    let search = parsed.search_port.map(|port| {
        let managed = spec.targets.elasticsearch.as_ref().is_some_and(|s| s.managed.is_some());
        NetworkPolicyEgressRule {
            ports: Some(tcp_ports(&[i32::from(port)])),
            // ECK's pods are labelled with their cluster's name, which is the pipeline's (`search::elasticsearch`).
            to: managed.then(|| {
                vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(&[("elasticsearch.k8s.elastic.co/cluster-name", &name)])),
                    ..NetworkPolicyPeer::default()
                }]
            }),
        }
    });
    let mut producer_egress = vec![dns(), https.clone()];
    let mut consumer_egress = vec![dns(), https.clone()];
    if !parsed.kafka_ports.is_empty() {
        producer_egress.push(kafka.clone());
        consumer_egress.push(kafka);
    }
    let mut daily_egress = vec![dns(), https];
    daily_egress.extend(search);
    let kibana_setup = super::kibana::wanted(pipeline).then(|| {
        let to_kibana = NetworkPolicyEgressRule {
            ports: Some(tcp_ports(&[super::kibana::KIBANA_PORT])),
            // ECK labels Kibana's pods with the Kibana's name, which is the pipeline's (`search::kibana`).
            to: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(selector(&[("kibana.k8s.elastic.co/name", &name)])),
                ..NetworkPolicyPeer::default()
            }]),
        };
        worker(pipeline, super::kibana::COMPONENT, false, vec![dns(), to_kibana])
    });
    let mut policies = vec![
        policy(
            pipeline,
            &format!("{name}-default-deny"),
            "network",
            selector(&[(PIPELINE_LABEL, &name)]),
            Vec::new(),
            Vec::new(),
        ),
        worker(pipeline, "producer", true, producer_egress),
        worker(pipeline, "consumer", true, consumer_egress),
        worker(pipeline, "daily", false, daily_egress),
    ];
    policies.extend(kibana_setup);
    policies
}

fn worker(
    pipeline: &CilvestPipeline,
    component: &str,
    serves_http: bool,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    let name = pipeline.name_any();
    let ingress = if serves_http {
        vec![NetworkPolicyIngressRule {
            ports: Some(tcp_ports(&[HTTP_PORT])),
            from: None,
        }]
    } else {
        Vec::new()
    };
    policy(
        pipeline,
        &format!("{name}-{component}"),
        component,
        selector(&[(PIPELINE_LABEL, &name), ("app.kubernetes.io/component", component)]),
        ingress,
        egress,
    )
}

fn policy(
    pipeline: &CilvestPipeline,
    name: &str,
    component: &str,
    pods: LabelSelector,
    ingress: Vec<NetworkPolicyIngressRule>,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: object_meta(pipeline, name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        ..LabelSelector::default()
    }
}

/// Name resolution, to whatever DNS server the pod uses (kube-dns, NodeLocal DNSCache).
fn dns() -> NetworkPolicyEgressRule {
    let mut ports = Vec::new();
    for protocol in ["UDP", "TCP"] {
        ports.push(NetworkPolicyPort {
            port: Some(IntOrString::Int(53)),
            protocol: Some(protocol.to_owned()),
            ..NetworkPolicyPort::default()
        });
    }
    NetworkPolicyEgressRule {
        ports: Some(ports),
        to: None,
    }
}

/// TCP to `ports` on any destination.
fn tcp(ports: &[i32]) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(tcp_ports(ports)),
        to: None,
    }
}

fn tcp_ports(ports: &[i32]) -> Vec<NetworkPolicyPort> {
    ports
        .iter()
        .map(|port| NetworkPolicyPort {
            port: Some(IntOrString::Int(*port)),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}
