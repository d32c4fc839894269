//! The `CilvestPipeline` custom resource: what a pipeline declares (spec) and what the operator reports (status).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::TERM_PATTERN;

mod bus;
mod defaults;
mod run;
mod source;
mod status;
mod targets;

pub use bus::*;
use defaults::*;
pub use run::*;
pub use source::*;
pub use status::*;
pub use targets::*;

/// Milliseconds per second, minute, ... for the duration bounds below.
pub(crate) const SECOND: i64 = 1000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const DAY: i64 = 24 * 60 * MINUTE;

/// Language code X's `lang:` operator accepts for Indonesian; responses still say `in`.
pub const INDONESIAN: &str = "id";

/// A social-listening pipeline: X recent search -> Kafka -> data lake -> daily transform -> BigQuery marts and search.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cilvest.io",
    version = "v1alpha1",
    kind = "CilvestPipeline",
    namespaced,
    shortname = "cvp",
    category = "cilvest",
    status = "CilvestPipelineStatus",
    printcolumn = r#"{"name":"Keywords","type":"string","jsonPath":".status.keywords"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.transform.engine"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].reason"}"#,
    printcolumn = r#"{"name":"Last Run","type":"string","jsonPath":".status.lastRun.date"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.transform.engine != 'dataproc' || has(self.transform.dataproc)").message("transform.dataproc is required when transform.engine is dataproc").field_path(".transform.dataproc"))]
#[x_kube(validation = Rule::new("self.transform.engine != 'dataprocServerless' || has(self.transform.dataprocServerless)").message("transform.dataprocServerless is required when transform.engine is dataprocServerless").field_path(".transform.dataprocServerless"))]
#[x_kube(validation = Rule::new("self.bus != 'pubsub' || has(self.pubsub)").message("pubsub is required when bus is pubsub").field_path(".pubsub"))]
// The same length as `query::x_query` renders without de-duplication, summed per term so that the API server's
// CEL cost estimate stays within budget (string building over nested lists does not).
#[x_kube(validation = Rule::new("self.keywords.map(k, k.terms.map(t, size(t) + (t.contains(' ') ? 6 : 4)).sum()).sum() + 4 + size(self.language) + (self.dropRetweets ? 12 : 0) <= 512").message("the X search query built from the keywords' terms is over X's limit of 512 characters: use fewer or shorter terms").field_path(".keywords"))]
pub struct CilvestPipelineSpec {
    /// The instruments to measure, 1-20, names unique. Each keyword counts the tweets whose cleaned text matches any
    /// of its terms; one tweet may count for several keywords.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub keywords: Vec<Keyword>,

    /// How terms are matched against the cleaned tweet text.
    #[serde(default)]
    pub matching: Matching,

    /// Language of the tweets to keep, as a 2- or 3-letter lowercase code. Indonesian may be written `id` (what
    /// X's query operator accepts) or `in` (what X's responses carry); both mean the same language.
    #[serde(default = "default_language")]
    #[schemars(regex(pattern = r"^[a-z]{2,3}$"))]
    pub language: String,

    /// Drop retweets before counting: they repeat someone else's words and would inflate demand.
    #[serde(default = "default_true")]
    pub drop_retweets: bool,

    /// Where tweets come from.
    #[serde(default)]
    pub source: Source,

    /// Which Kafka cluster carries the raw tweets.
    #[serde(default)]
    pub kafka: Kafka,

    /// What carries raw tweets from the producer to the consumer: `kafka` (default; `kafka` and `topics` apply)
    /// or `pubsub` (Google Cloud Pub/Sub; `pubsub` applies and no Kafka or Strimzi is needed).
    #[serde(default)]
    pub bus: Bus,

    /// The Pub/Sub topic and subscription; required when bus is `pubsub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSub>,

    /// The Kafka topics the pipeline owns.
    #[serde(default)]
    pub topics: Topics,

    /// When the daily transform runs.
    #[serde(default)]
    pub schedule: Schedule,

    /// Which engine runs the daily transform.
    #[serde(default)]
    pub transform: Transform,

    /// Where the results land.
    pub targets: Targets,

    /// Settings of the worker pods (producer, consumer and daily job).
    #[serde(default, skip_serializing_if = "Workers::is_empty")]
    pub workers: Workers,

    /// NetworkPolicies for the worker pods: deny by default, then allow each worker only the ports it uses.
    #[serde(default)]
    pub network_policies: NetworkPolicies,
}

/// The pipeline's NetworkPolicies (enforced only where the cluster's network plugin enforces them, as GKE Dataplane
/// V2 and Calico do).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicies {
    /// Create them (default). Turn off to manage the pods' network access yourself, or when the workers need ports
    /// the policies do not open (an egress proxy or emulators set through `workers.env`).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPolicies {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Settings every worker pod shares.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.env) || self.env.all(e, !e.name.startsWith('CILVEST_X_') && !(e.name in ['CILVEST_CONFIG', 'CILVEST_ES_PASSWORD', 'CILVEST_LOG_FORMAT', 'CILVEST_KAFKA_USERNAME', 'CILVEST_KAFKA_PASSWORD', 'CILVEST_KAFKA_CA_FILE', 'CILVEST_KAFKA_CERT_FILE', 'CILVEST_KAFKA_KEY_FILE']))").message("workers.env may not set CILVEST_CONFIG, CILVEST_ES_PASSWORD, CILVEST_LOG_FORMAT, the Kafka credentials (CILVEST_KAFKA_USERNAME, _PASSWORD, _CA_FILE, _CERT_FILE, _KEY_FILE) or CILVEST_X_*: the operator sets them from the spec").field_path(".env"))]
pub struct Workers {
    /// Extra environment variables for every worker container, such as `HTTPS_PROXY` for an egress proxy, or the
    /// emulator endpoints of a test environment (`CILVEST_GCS_ENDPOINT`, `CILVEST_BQ_ENDPOINT`). Take anything secret
    /// from a Secret with `valueFrom.secretKeyRef`, never as a literal `value`. At most 32; names unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // A list keyed by name, as a Pod's env is: the API server refuses a name twice, and server-side apply merges
    // entries by name.
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// Workload Identity: the Google service account each worker acts as, written as the
    /// `iam.gke.io/gcp-service-account` annotation of its Kubernetes ServiceAccount, so that GitOps holds it
    /// (`docs/gke.md` lists the IAM roles each one needs).
    #[serde(default, skip_serializing_if = "GoogleServiceAccounts::is_empty")]
    pub google_service_accounts: GoogleServiceAccounts,
}

impl Workers {
    /// Nothing set: the field is left out of what the operator writes.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.google_service_accounts.is_empty()
    }
}

/// A user-managed Google service account's email, `name@project.iam.gserviceaccount.com`.
pub(crate) const GSA_PATTERN: &str =
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$";

/// One Google service account per worker role; a role left out runs as the node's identity (no annotation).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleServiceAccounts {
    /// The producer's (Pub/Sub publisher and the lake checkpoint on the Pub/Sub bus; nothing Google on Kafka).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GSA_PATTERN))]
    pub producer: Option<String>,
    /// The consumer's (writes the lake; Pub/Sub subscriber on the Pub/Sub bus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GSA_PATTERN))]
    pub consumer: Option<String>,
    /// The daily job's and the Dataproc clean-up's (lake, BigQuery, Dataproc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GSA_PATTERN))]
    pub daily: Option<String>,
}

impl GoogleServiceAccounts {
    pub fn is_empty(&self) -> bool {
        self.producer.is_none() && self.consumer.is_none() && self.daily.is_none()
    }

    /// The account of `component` (`producer`, `consumer`, `daily`).
    pub fn of(&self, component: &str) -> Option<&str> {
        match component {
            "producer" => self.producer.as_deref(),
            "consumer" => self.consumer.as_deref(),
            "daily" => self.daily.as_deref(),
            _ => None,
        }
    }
}

/// One instrument and the terms that mention it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Keyword {
    /// The instrument's name as it appears in the marts, e.g. `saham`, `reksadana`, `sukuk`: 1-63 lowercase
    /// letters, digits, `-` or `_`, starting with a letter or digit.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$"))]
    pub name: String,
    /// Aliases and hashtags that mention the instrument, e.g. `reksadana`, `reksa dana`, `#reksadana`: 1-20
    /// distinct terms of 2-64 characters. A term is letters, digits and `_`, with inner spaces, `'`, `.`, `&` or
    /// `-`, optionally after one `#`, `$` or `@`: nothing the X query would read as an operator (quotes, brackets,
    /// a leading `-`, `:`), and not `OR` or `AND`. Matching is case-insensitive; a hashtag also matches the bare
    /// word because cleaning turns `#` into a space.
    #[schemars(length(min = 1, max = 20), inner(length(min = 2, max = 64), regex(pattern = TERM_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[x_kube(validation = Rule::new("self.all(t, !(t in ['OR', 'AND']))").message("OR and AND are X query operators, not terms"))]
    pub terms: Vec<String>,
    /// How the keyword is measured: `posts` (default) reads every matching post through recent search;
    /// `counts` asks X only for hourly volumes (`GET /2/tweets/counts/recent`), billed per request instead of
    /// per post; `both` does both.
    #[serde(default)]
    pub mode: KeywordMode,
}

/// How a keyword is measured.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeywordMode {
    #[default]
    Posts,
    Counts,
    Both,
}

impl KeywordMode {
    /// The keyword's posts are read through recent search.
    pub fn reads_posts(self) -> bool {
        matches!(self, Self::Posts | Self::Both)
    }

    /// The keyword's hourly volumes are fetched from the counts endpoint.
    pub fn counts(self) -> bool {
        matches!(self, Self::Counts | Self::Both)
    }
}

/// How terms are matched.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Matching {
    /// `substring` (default) matches a term anywhere in the cleaned text, which catches Indonesian suffixes
    /// such as `sahamnya` and is what the original data marts did; `wholeWord` matches only whole words.
    #[serde(default)]
    pub mode: MatchMode,
}

/// Term matching mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum MatchMode {
    #[default]
    Substring,
    WholeWord,
}
