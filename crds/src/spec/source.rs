//! Where tweets come from: the X API v2 recent-search source, its read budget and its Secret.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::rules::{DURATION_PATTERN, duration_within};

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
// The same arithmetic as `values::budget_posts`, tolerance included.
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
