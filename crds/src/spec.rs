//! The `CilvestPipeline` custom resource: what a pipeline declares (spec) and what the operator reports (status).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::{DURATION_PATTERN, TERM_PATTERN, cron_field, cron_shape, duration_within};

/// Milliseconds per second, minute, ... for the duration bounds below.
const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const DAY: i64 = 24 * 60 * MINUTE;

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
    printcolumn = r#"{"name":"Last Run","type":"string","jsonPath":".status.lastRun.date"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.transform.engine != 'dataproc' || has(self.transform.dataproc)").message("transform.dataproc is required when transform.engine is dataproc").field_path(".transform.dataproc"))]
#[x_kube(validation = Rule::new("self.transform.engine != 'dataprocServerless' || has(self.transform.dataprocServerless)").message("transform.dataprocServerless is required when transform.engine is dataprocServerless").field_path(".transform.dataprocServerless"))]
#[x_kube(validation = Rule::new("self.bus != 'pubsub' || has(self.pubsub)").message("pubsub is required when bus is pubsub").field_path(".pubsub"))]
// The same length as `validate::x_query` renders without de-duplication, summed per term so that the API server's
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
}

/// Settings every worker pod shares.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.env.all(e, !e.name.startsWith('CILVEST_X_') && !(e.name in ['CILVEST_CONFIG', 'CILVEST_ES_PASSWORD', 'CILVEST_LOG_FORMAT']))").message("workers.env may not set CILVEST_CONFIG, CILVEST_ES_PASSWORD, CILVEST_LOG_FORMAT or CILVEST_X_*: the operator sets them from the spec").field_path(".env"))]
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
}

impl Workers {
    /// Nothing set: the field is left out of what the operator writes.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
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

/// The tweet source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The X API v2 recent-search source.
    #[serde(default)]
    pub x: XSource,
}

/// X API v2 recent search (`GET /2/tweets/search/recent`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// The same arithmetic as `validate::budget_posts`, tolerance included.
#[x_kube(validation = Rule::new("!has(self.monthlyReadBudget) || !has(self.monthlyReadBudget.usd) || (double(self.pricePerReadUSD) > 0.0 && double(self.monthlyReadBudget.usd) / double(self.pricePerReadUSD) + 0.000000001 >= 1.0)").message("monthlyReadBudget.usd buys no post at pricePerReadUSD").field_path(".monthlyReadBudget.usd"))]
pub struct XSource {
    /// The Secret key holding the X API bearer token. The token is read by the producer at run time and is
    /// never copied into this resource, a ConfigMap or a log.
    #[serde(default = "default_bearer_token_ref")]
    pub bearer_token_secret_ref: SecretKeyRef,
    /// How often to poll, as a duration such as `60s` or `5m`; at least 1s. Durations are units in the order d, h,
    /// m, s, ms, each at most once: `7d`, `1h30m`, `90s`, `250ms`.
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(SECOND, None, "pollInterval must be at least 1s"))]
    pub poll_interval: String,
    /// How far back to start when the raw topic is empty, such as `24h`: more than 0 and at most 7d, all that
    /// recent search covers. Omit it to start from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(1, Some(7 * DAY), "backfill must be more than 0 and at most 7d (recent search reaches 7 days back)"))]
    pub backfill: Option<String>,
    /// The most the producer may read in one calendar month (UTC, as X bills), in posts or in US dollars at
    /// `pricePerReadUSD`. From 80% on polling slows to a quarter of its rate; at 100% reads stop until the month
    /// turns. Unread posts are read later, within recent search's 7-day reach. Omit for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_read_budget: Option<ReadBudget>,
    /// What X charges per post read, in US dollars (pay-per-use, read from docs.x.com on 2026-11-28): up to 12
    /// digits, optionally a point and up to 12 more.
    #[serde(default = "default_price_per_read", rename = "pricePerReadUSD")]
    #[schemars(regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"))]
    pub price_per_read_usd: String,
    /// What X charges per counts request, in US dollars (`Counts: Recent`, read from docs.x.com on 2026-11-28).
    #[serde(default = "default_price_per_count_request", rename = "pricePerCountRequestUSD")]
    #[schemars(regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"))]
    pub price_per_count_request_usd: String,
    /// How often keywords in `counts` or `both` mode ask for their hourly volumes; at least 1m.
    #[serde(default = "default_counts_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(MINUTE, None, "countsInterval must be at least 1m"))]
    pub counts_interval: String,
    /// Base URL of the X API. Change it only for an egress proxy that forwards to X, or to point a test environment
    /// at a fake: the bearer token is sent there.
    #[serde(default = "default_x_api_url")]
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"), length(max = 2048))]
    pub api_url: String,
}

impl Default for XSource {
    fn default() -> Self {
        Self {
            bearer_token_secret_ref: default_bearer_token_ref(),
            poll_interval: default_poll_interval(),
            backfill: None,
            monthly_read_budget: None,
            price_per_read_usd: default_price_per_read(),
            price_per_count_request_usd: default_price_per_count_request(),
            counts_interval: default_counts_interval(),
            api_url: default_x_api_url(),
        }
    }
}

/// A monthly read budget: exactly one of a number of posts or an amount of US dollars.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.posts) != has(self.usd)").message("set exactly one of monthlyReadBudget.posts and monthlyReadBudget.usd"))]
pub struct ReadBudget {
    /// Posts per calendar month, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub posts: Option<i64>,
    /// US dollars per calendar month, turned into posts at `pricePerReadUSD`, such as `50` or `12.5`; enough for
    /// at least one post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"))]
    pub usd: Option<String>,
}

/// A reference to one key of a Secret in the pipeline's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS subdomain: dot-separated labels of lowercase letters, digits and `-`).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub name: String,
    /// Key inside the Secret: letters, digits, `-`, `_` or `.`, at most 253.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub key: String,
}

/// The bus between producer and consumer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Bus {
    #[default]
    Kafka,
    Pubsub,
}

/// Google Cloud Pub/Sub as the bus. The producer and the consumer create the topic and the subscription when
/// they are missing (or create them beforehand, e.g. with Config Connector, and grant only publish and consume).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PubSub {
    /// Google Cloud project ID of the topic and the subscription (6-30 lowercase letters, digits or `-`, starting
    /// with a letter; not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Topic ID: 3-255 letters, digits or `- . _ ~ + %`, starting with a letter, not with `goog`. Defaults to
    /// `cilvest-<pipeline>-raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"))]
    #[x_kube(validation = Rule::new("!self.lowerAscii().startsWith('goog')").message("Pub/Sub names may not start with goog"))]
    pub topic: Option<String>,
    /// Subscription ID the consumer pulls from, as for `topic`. Defaults to `cilvest-<pipeline>-lake`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"))]
    #[x_kube(validation = Rule::new("!self.lowerAscii().startsWith('goog')").message("Pub/Sub names may not start with goog"))]
    pub subscription: Option<String>,
    /// Acknowledgement deadline of the subscription in seconds, 10-600. The consumer extends it while a batch is
    /// open, so it only bounds how soon a crashed consumer's messages are delivered again.
    #[serde(default = "default_ack_deadline_seconds")]
    #[schemars(range(min = 10, max = 600))]
    pub ack_deadline_seconds: i32,
}

/// Which Kafka cluster to use: a Strimzi-managed cluster in this namespace, or external bootstrap servers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.strimziCluster) != has(self.bootstrapServers)").message("set exactly one of kafka.strimziCluster and kafka.bootstrapServers"))]
pub struct Kafka {
    /// Name of a Strimzi `Kafka` cluster in this namespace. The operator then creates `KafkaTopic`s labelled
    /// `strimzi.io/cluster` and the workers connect to `<cluster>-kafka-bootstrap:9092`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub strimzi_cluster: Option<String>,
    /// Comma-separated `host:port` list of an external Kafka, such as `kafka-0.example:9092,kafka-1.example:9092`.
    /// Topics must then exist already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[^\s,]+:[0-9]{1,5}(,[^\s,]+:[0-9]{1,5})*$"),
        length(min = 1, max = 1024)
    )]
    pub bootstrap_servers: Option<String>,
    /// The Strimzi `KafkaTopic` API version: `v1` (Strimzi 0.49 and later, required from 1.0) or `v1beta2` for
    /// older installs.
    #[serde(default)]
    pub topic_api_version: StrimziTopicVersion,
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            strimzi_cluster: Some("cilvest".to_owned()),
            bootstrap_servers: None,
            topic_api_version: StrimziTopicVersion::default(),
        }
    }
}

/// Strimzi `KafkaTopic` API versions the operator can write.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StrimziTopicVersion {
    #[default]
    V1,
    V1beta2,
}

/// The Kafka topics of a pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Topics {
    /// The topic that carries raw tweets from the producer to the consumer.
    #[serde(default)]
    pub raw: Topic,
}

/// One Kafka topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.partitions) || self.partitions >= oldSelf.partitions").message("partitions can only be increased: Kafka cannot remove partitions").field_path(".partitions"))]
pub struct Topic {
    /// Kafka topic name: 1-249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`. Defaults to `cilvest.<pipeline>.raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 249))]
    #[x_kube(validation = Rule::new("!(self in ['.', '..'])").message("a Kafka topic may not be named . or .."))]
    pub name: Option<String>,
    /// Number of partitions, 1-1000; the consumer Deployment runs at most this many useful replicas. Can only grow.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    /// Replication factor, 1-10.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    /// How long Kafka keeps records, such as `7d`; at least 1m. The lake is the durable copy; Kafka only needs to
    /// cover outages.
    #[serde(default = "default_retention")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(MINUTE, None, "retention must be at least 1m"))]
    pub retention: String,
}

impl Default for Topic {
    fn default() -> Self {
        Self {
            name: None,
            partitions: default_partitions(),
            replicas: default_replicas(),
            retention: default_retention(),
        }
    }
}

/// When the daily job runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// When the daily transform of the previous local day runs, as the CronJob controller reads it: 5 fields
    /// separated by single spaces (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week
    /// 0-6 or sun-sat; each `*`, a value, a range `a-b` with a <= b, or a comma list of those, with an optional
    /// `/step`), or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. At most 64
    /// characters. The time zone is `timeZone`'s, never a `TZ=` prefix.
    #[serde(default = "default_daily_cron")]
    #[schemars(regex(pattern = r"^[ -~]+$"), length(min = 1, max = 64))]
    #[x_kube(validation = cron_shape())]
    #[x_kube(validation = cron_field(0))]
    #[x_kube(validation = cron_field(1))]
    #[x_kube(validation = cron_field(2))]
    #[x_kube(validation = cron_field(3))]
    #[x_kube(validation = cron_field(4))]
    pub daily: String,
    /// IANA time zone for the schedule and for the local day and hour of every tweet, such as `Asia/Jakarta`
    /// (one of the names of the IANA database).
    #[serde(default = "default_time_zone")]
    #[schemars(schema_with = "crate::rules::time_zone_schema")]
    pub time_zone: String,
    /// Suspend the daily job and the producer. Existing data stays.
    #[serde(default)]
    pub suspend: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            daily: default_daily_cron(),
            time_zone: default_time_zone(),
            suspend: false,
        }
    }
}

/// The daily transform engine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// `native` (default) runs in the daily Job's own process; `dataproc` creates an ephemeral Dataproc cluster
    /// that is always deleted; `dataprocServerless` submits a Dataproc Serverless batch.
    #[serde(default)]
    pub engine: Engine,
    /// Settings of the ephemeral Dataproc cluster; required when engine is `dataproc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataproc: Option<Dataproc>,
    /// Settings of the Dataproc Serverless batch; required when engine is `dataprocServerless`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataproc_serverless: Option<DataprocServerless>,
}

/// Transform engines.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Engine {
    #[default]
    Native,
    Dataproc,
    DataprocServerless,
}

/// An ephemeral Dataproc cluster, created for one run and always deleted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.workers != 1").message("Dataproc needs 0 workers (a single-node cluster) or at least 2").field_path(".workers"))]
pub struct Dataproc {
    /// Google Cloud project ID that runs the cluster (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Compute region, such as `asia-southeast2` (Jakarta); a region, not a zone such as `asia-southeast2-a`.
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"))]
    pub region: String,
    /// Machine type of the master node, such as `n2-standard-2`.
    #[serde(default = "default_machine_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"), length(max = 63))]
    pub master_machine_type: String,
    /// Machine type of the worker nodes.
    #[serde(default = "default_machine_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"), length(max = 63))]
    pub worker_machine_type: String,
    /// Number of primary workers: 0 (a single-node cluster) or 2-100.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 0, max = 100))]
    pub workers: i32,
    /// Dataproc image version, such as `2.2-debian12` or `2.2.30-debian12`.
    #[serde(default = "default_image_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z0-9]+)*$"), length(max = 63))]
    pub image_version: String,
    /// Hard upper bound on the cluster's life (`lifecycleConfig.autoDeleteTtl`): even a crashed run cannot
    /// leave a cluster running longer. 10m to 14d, the range Dataproc accepts.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(10 * MINUTE, Some(14 * DAY), "maxLifetime must be between 10m and 14d, the range Dataproc accepts"))]
    pub max_lifetime: String,
}

/// A Dataproc Serverless batch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataprocServerless {
    /// Google Cloud project ID that runs the batch (not the project number).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"))]
    pub project: String,
    /// Compute region, such as `asia-southeast2`; a region, not a zone.
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"))]
    pub region: String,
    /// Upper bound on the batch's run time (`environmentConfig.executionConfig.ttl`): 10m to 14d.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = duration_within(10 * MINUTE, Some(14 * DAY), "maxLifetime must be between 10m and 14d, the range Dataproc accepts"))]
    pub max_lifetime: String,
}

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

/// What the operator observed; written only through the status subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CilvestPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary phase: Pending, Progressing, Ready, Degraded or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The keyword names, comma-separated, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
    /// Ready, Progressing and Degraded conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Health of each child, copied in because Argo CD does not look at children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildStatus>,
    /// The most recent daily run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DailyRun>,
    /// What the producer read from X this month, and what that costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_usage: Option<XUsage>,
}

/// The X API usage of one calendar month (UTC), as the producer counted it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct XUsage {
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Posts returned by recent search: what X bills per read.
    #[serde(default)]
    pub posts_read: i64,
    /// Recent search requests made.
    #[serde(default)]
    pub requests: i64,
    /// Counts requests made: what X bills per request.
    #[serde(default)]
    pub count_requests: i64,
    /// Estimated spend this month in US dollars at the spec's prices, such as `12.35`.
    #[serde(default, rename = "estimatedSpendUSD")]
    pub estimated_spend_usd: String,
    /// The monthly read budget in posts, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_posts: Option<i64>,
}

/// Health of one child object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChildStatus {
    /// Kind of the child, such as `KafkaTopic` or `Deployment`.
    pub kind: String,
    /// Name of the child.
    pub name: String,
    /// Whether the child reports itself ready.
    pub ready: bool,
    /// Why it is not ready, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Summary of one daily run, taken from the daily Job's termination message.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DailyRun {
    /// The local day that was processed, `YYYY-MM-DD`.
    pub date: String,
    /// `Succeeded` or `Failed`.
    pub result: String,
    /// Tweets read from the lake for that day.
    #[serde(default)]
    pub tweets_in: i64,
    /// Tweets kept after language, retweet and duplicate filtering.
    #[serde(default)]
    pub tweets_kept: i64,
    /// Lines that were not valid tweet envelopes.
    #[serde(default)]
    pub rejected: i64,
    /// Run time in seconds.
    #[serde(default)]
    pub duration_seconds: f64,
    /// Error message of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_language() -> String {
    INDONESIAN.to_owned()
}
fn default_bearer_token_ref() -> SecretKeyRef {
    SecretKeyRef {
        name: "cilvest-x-api".to_owned(),
        key: "bearerToken".to_owned(),
    }
}
fn default_poll_interval() -> String {
    "60s".to_owned()
}
fn default_price_per_read() -> String {
    "0.005".to_owned()
}
fn default_price_per_count_request() -> String {
    "0.005".to_owned()
}
fn default_x_api_url() -> String {
    "https://api.x.com".to_owned()
}
fn default_counts_interval() -> String {
    "1h".to_owned()
}
fn default_partitions() -> i32 {
    3
}
fn default_replicas() -> i32 {
    1
}
fn default_retention() -> String {
    "7d".to_owned()
}
fn default_daily_cron() -> String {
    "30 1 * * *".to_owned()
}
fn default_time_zone() -> String {
    "Asia/Jakarta".to_owned()
}
fn default_machine_type() -> String {
    "n2-standard-2".to_owned()
}
fn default_workers() -> i32 {
    2
}
fn default_image_version() -> String {
    "2.2-debian12".to_owned()
}
fn default_max_lifetime() -> String {
    "2h".to_owned()
}
fn default_bq_location() -> String {
    "asia-southeast2".to_owned()
}
fn default_ack_deadline_seconds() -> i32 {
    60
}
fn default_index() -> String {
    "cilvest-tweets".to_owned()
}
fn default_es_version() -> String {
    "8.17.0".to_owned()
}
fn default_es_nodes() -> i32 {
    1
}
fn default_es_storage() -> String {
    "10Gi".to_owned()
}
