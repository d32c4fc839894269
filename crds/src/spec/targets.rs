//! Where the results go: the lake, BigQuery and the search target (ECK-managed or external).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// Where results land.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// The data lake: raw, curated and report objects.
    pub lake: Lake,
    /// The BigQuery warehouse and data marts.
    pub bigquery: BigQuery,
    /// The search index; omit for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<Search>,
}

/// The data lake.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Lake {
    /// `gs://bucket/prefix` URI under which `raw/`, `curated/`, `reports/` and `jobs/` live; the bucket is 3-63
    /// lowercase letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit.
    #[schemars(regex(pattern = r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$"))]
    pub uri: String,
}

/// The BigQuery warehouse.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BigQuery {
    /// Google Cloud project ID of the datasets (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Dataset of the `tweets` table: 1-1024 letters, digits or `_`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]+$"), length(min = 1, max = 1024))]
    pub dataset: String,
    /// Dataset of the data marts, as `dataset`; defaults to the warehouse dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]+$"), length(min = 1, max = 1024))]
    pub marts_dataset: Option<String>,
    /// Dataset location: a region such as `asia-southeast2`, or the multi-region `US` or `EU`.
    #[serde(default = "default_bq_location")]
    #[schemars(regex(pattern = r"^(US|EU|[a-z]+-[a-z]+[0-9]+)$"))]
    pub location: String,
}

/// The search target: exactly one of an ECK-managed cluster or an external one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("set exactly one of elasticsearch.managed and elasticsearch.external"))]
pub struct Search {
    /// An Elasticsearch (and optionally Kibana) managed by ECK in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSearch>,
    /// An Elasticsearch the pipeline does not manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSearch>,
    /// Index alias the daily job writes behind, lowercase (letters, digits, `-`, `_`; up to 201 characters); dated
    /// indices are named `<index>-YYYY.MM`.
    #[serde(default = "default_index")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,200}$"))]
    pub index: String,
}

/// An ECK-managed Elasticsearch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSearch {
    /// Elasticsearch (and Kibana) version, `major.minor.patch`.
    #[serde(default = "default_es_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// Number of Elasticsearch nodes, 1-9.
    #[serde(default = "default_es_nodes")]
    #[schemars(range(min = 1, max = 9))]
    pub nodes: i32,
    /// Persistent volume size per node, such as `10Gi`: a positive whole number of Mi, Gi or Ti.
    #[serde(default = "default_es_storage")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}(Mi|Gi|Ti)$"))]
    pub storage: String,
    /// Also deploy Kibana connected to this cluster.
    #[serde(default)]
    pub kibana: bool,
}

/// An external Elasticsearch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.username) == has(self.passwordSecretRef)").message("username and passwordSecretRef go together"))]
pub struct ExternalSearch {
    /// Base URL, such as `https://search.example.com:9200`: http(s), no query or fragment.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"), length(max = 2048))]
    pub url: String,
    /// Secret key holding the password of `username`; set both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// User name for basic authentication; set it together with `passwordSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,
    /// Secret key holding a PEM CA bundle to trust for this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}
