//! Google Cloud Pub/Sub as the bus, over its REST API (v1): the client both workers use and the producer's
//! publisher. The producer's resume checkpoint is `jobs/producer/pubsub.rs`; the consumer's side is
//! `jobs/consumer/pubsub.rs`.
//!
//! ```text
//!  producer ─publish (attribute tweet_id)─▶ topic ─▶ subscription ─pull─▶ consumer ─▶ lake ─▶ acknowledge
//!     │                                                                (deadline extended while a batch is open)
//!     └─ after every confirmed publish: <lake>/checkpoints/<pipeline>/producer.json {"newest_id": …}
//! ```
//!
//! With `PUBSUB_EMULATOR_HOST` set, every call goes to `http://$PUBSUB_EMULATOR_HOST/v1` without OAuth; otherwise
//! to `https://pubsub.googleapis.com/v1` with application default credentials (Workload Identity on GKE).
//!
//! No ordering key is set: nothing downstream depends on delivery order (resume uses the checkpoint, and the
//! lake's objects are per day), and one key would cap the topic at Pub/Sub's per-key throughput limit.

mod error;
#[cfg(test)]
mod tests;

pub use error::PubSubError;

use std::{collections::BTreeMap, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    bus::kafka::{BusMetrics, Record},
    google::auth::GoogleToken,
    retry::Backoff,
};

/// Environment variable naming a Pub/Sub emulator `host:port`, as Google's own client libraries read it.
pub const EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// The message attribute carrying the tweet id.
pub const TWEET_ID_ATTRIBUTE: &str = "tweet_id";
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
const API: &str = "https://pubsub.googleapis.com/v1";
/// Pub/Sub takes at most 1,000 messages and 10 MB per publish request; stay below both.
const MAX_PUBLISH_MESSAGES: usize = 1000;
const MAX_PUBLISH_BYTES: usize = 7 << 20;
/// Ack ids per acknowledge or modifyAckDeadline request (the request is limited to 512 KiB).
const ACK_IDS_PER_REQUEST: usize = 1000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Project, topic and subscription IDs of one pipeline's bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub project: String,
    pub topic: String,
    pub subscription: String,
}

impl Names {
    pub fn topic_path(&self) -> String {
        format!("projects/{}/topics/{}", self.project, self.topic)
    }

    pub fn subscription_path(&self) -> String {
        format!("projects/{}/subscriptions/{}", self.project, self.subscription)
    }
}

impl From<&cilvest_crds::worker_config::PubSubConfig> for Names {
    fn from(config: &cilvest_crds::worker_config::PubSubConfig) -> Self {
        Self {
            project: config.project.clone(),
            topic: config.topic.clone(),
            subscription: config.subscription.clone(),
        }
    }
}

/// A Pub/Sub REST client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// None for the emulator, which takes no OAuth.
    token: Option<GoogleToken>,
}

impl std::fmt::Debug for Client {
    // Tokens never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing<'a> {
    pub data: &'a [u8],
    pub attributes: BTreeMap<&'static str, String>,
}

/// One pulled message, data decoded.
#[derive(Clone, Debug)]
pub struct Received {
    pub ack_id: String,
    pub message_id: String,
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    #[serde(default)]
    message_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<ReceivedJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedJson {
    ack_id: String,
    message: MessageJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    publish_time: Option<DateTime<Utc>>,
}

impl Client {
    /// The emulator named by `PUBSUB_EMULATOR_HOST`, or Pub/Sub itself with application default credentials.
    pub fn from_env() -> Result<Self, PubSubError> {
        match std::env::var(EMULATOR_HOST_ENV) {
            Ok(host) if !host.trim().is_empty() => Self::emulator(host.trim()),
            _ => Ok(Self {
                http: http_client()?,
                base: API.to_owned(),
                token: Some(GoogleToken::from_env()),
            }),
        }
    }

    /// The emulator at `host:port`, without OAuth.
    pub fn emulator(host: &str) -> Result<Self, PubSubError> {
        Ok(Self {
            http: http_client()?,
            base: format!("http://{host}/v1"),
            token: None,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        what: &str,
        timeout: Duration,
    ) -> Result<T, PubSubError> {
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .timeout(timeout)
            .json(body);
        if let Some(token) = &self.token {
            let token = token
                .token(SCOPE)
                .await
                .map_err(|e| PubSubError::Token(e.to_string()))?;
            request = request.bearer_auth(token);
        }
        let http_err = |source| PubSubError::Http {
            what: what.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http_err)?;
        let code = response.status();
        let bytes = response.bytes().await.map_err(http_err)?;
        if !code.is_success() {
            let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(PubSubError::Api {
                what: what.to_owned(),
                code: code.as_u16(),
                status: error["error"]["status"].as_str().unwrap_or_default().to_owned(),
                message: error["error"]["message"].as_str().map_or_else(
                    || String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    str::to_owned,
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| PubSubError::Body {
            what: what.to_owned(),
            source,
        })
    }

    /// Create the topic; `Ok(false)` when it exists already.
    pub async fn create_topic(&self, names: &Names) -> Result<bool, PubSubError> {
        let path = names.topic_path();
        let what = format!("create topic {path}");
        match self
            .call::<Value>(reqwest::Method::PUT, &path, &json!({}), &what, REQUEST_TIMEOUT)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.is_already_exists() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Create the subscription on the topic, never expiring; `Ok(false)` when it exists already (its settings are
    /// then left as they are).
    pub async fn create_subscription(&self, names: &Names, ack_deadline_seconds: i32) -> Result<bool, PubSubError> {
        let path = names.subscription_path();
        let what = format!("create subscription {path}");
        let body = json!({
            "topic": names.topic_path(),
            "ackDeadlineSeconds": ack_deadline_seconds,
            // Without a policy, Pub/Sub deletes a subscription after 31 days without a pull, and with it every
            // message published while no consumer ran.
            "expirationPolicy": {},
            "messageRetentionDuration": "604800s",
        });
        match self
            .call::<Value>(reqwest::Method::PUT, &path, &body, &what, REQUEST_TIMEOUT)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.is_already_exists() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Create the topic and the subscription when missing. A message published to a topic without a
    /// subscription is dropped, so the producer calls this before its first publish.
    pub async fn ensure(&self, names: &Names, ack_deadline_seconds: i32) -> Result<(), PubSubError> {
        if self.create_topic(names).await? {
            tracing::info!(topic = %names.topic_path(), "created the pub/sub topic");
        }
        if self.create_subscription(names, ack_deadline_seconds).await? {
            tracing::info!(subscription = %names.subscription_path(), "created the pub/sub subscription");
        }
        Ok(())
    }

    /// Publish `messages` in one request (at most 1,000 and 10 MB); returns their message ids.
    pub async fn publish(&self, names: &Names, messages: &[Outgoing<'_>]) -> Result<Vec<String>, PubSubError> {
        let path = format!("{}:publish", names.topic_path());
        let body = json!({
            "messages": messages
                .iter()
                .map(|m| json!({"data": BASE64.encode(m.data), "attributes": m.attributes}))
                .collect::<Vec<_>>(),
        });
        let what = format!("publish to {}", names.topic_path());
        let response: PublishResponse = self
            .call(reqwest::Method::POST, &path, &body, &what, REQUEST_TIMEOUT)
            .await?;
        Ok(response.message_ids)
    }

    /// Pull up to `max` messages, waiting up to `wait` for the first one.
    ///
    /// Pub/Sub holds a pull open until messages arrive or it gives up (about 90 s on the emulator). Keep `wait`
    /// above that: a pull the client stops waiting for stays open on the server, and the messages it is handed
    /// are lost to this client until their ack deadline passes (delayed and delivered again, never dropped).
    pub async fn pull(&self, names: &Names, max: usize, wait: Duration) -> Result<Vec<Received>, PubSubError> {
        self.pull_request(names, max, false, wait).await
    }

    /// Pull what is available right now, without waiting (`returnImmediately`, which Google discourages for
    /// steady consumption; tests and tools use it to drain a subscription).
    pub async fn pull_now(&self, names: &Names, max: usize) -> Result<Vec<Received>, PubSubError> {
        self.pull_request(names, max, true, REQUEST_TIMEOUT).await
    }

    async fn pull_request(
        &self,
        names: &Names,
        max: usize,
        return_immediately: bool,
        wait: Duration,
    ) -> Result<Vec<Received>, PubSubError> {
        let subscription = names.subscription_path();
        let path = format!("{subscription}:pull");
        let what = format!("pull from {subscription}");
        let body = json!({"maxMessages": max.clamp(1, 1000), "returnImmediately": return_immediately});
        let response: PullResponse = match self.call(reqwest::Method::POST, &path, &body, &what, wait).await {
            Ok(response) => response,
            // A long poll that found nothing: Pub/Sub would answer empty after a while; we stop waiting first.
            Err(PubSubError::Http { source, .. }) if source.is_timeout() => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        response
            .received_messages
            .into_iter()
            .map(|r| {
                let data = BASE64
                    .decode(r.message.data.as_bytes())
                    .map_err(|source| PubSubError::Data {
                        subscription: subscription.clone(),
                        message_id: r.message.message_id.clone(),
                        source,
                    })?;
                Ok(Received {
                    ack_id: r.ack_id,
                    message_id: r.message.message_id,
                    data,
                    attributes: r.message.attributes,
                    publish_time: r.message.publish_time,
                })
            })
            .collect()
    }

    /// Set the ack deadline of `ack_ids` to `seconds` from now (0 hands them back for redelivery at once).
    pub async fn modify_ack_deadline(
        &self,
        names: &Names,
        ack_ids: &[String],
        seconds: i32,
    ) -> Result<(), PubSubError> {
        let subscription = names.subscription_path();
        let path = format!("{subscription}:modifyAckDeadline");
        let what = format!("modify ack deadlines on {subscription}");
        for chunk in ack_ids.chunks(ACK_IDS_PER_REQUEST) {
            let body = json!({"ackIds": chunk, "ackDeadlineSeconds": seconds});
            self.call::<Value>(reqwest::Method::POST, &path, &body, &what, REQUEST_TIMEOUT)
                .await?;
        }
        Ok(())
    }

    /// Acknowledge `ack_ids`: Pub/Sub will not deliver them again.
    pub async fn acknowledge(&self, names: &Names, ack_ids: &[String]) -> Result<(), PubSubError> {
        let subscription = names.subscription_path();
        let path = format!("{subscription}:acknowledge");
        let what = format!("acknowledge on {subscription}");
        for chunk in ack_ids.chunks(ACK_IDS_PER_REQUEST) {
            self.call::<Value>(
                reqwest::Method::POST,
                &path,
                &json!({"ackIds": chunk}),
                &what,
                REQUEST_TIMEOUT,
            )
            .await?;
        }
        Ok(())
    }
}

fn http_client() -> Result<reqwest::Client, PubSubError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(PubSubError::Client)
}

/// Split records into publish requests under Pub/Sub's limits, in order.
fn publish_chunks(records: &[Record]) -> Vec<&[Record]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        // base64 grows data by a third; attributes and JSON framing add a little.
        let size = record.value.len() * 4 / 3 + 64;
        if i > start && (i - start == MAX_PUBLISH_MESSAGES || bytes + size > MAX_PUBLISH_BYTES) {
            chunks.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// The producer's side: publishes tweets, oldest first, retrying until Pub/Sub takes them.
pub struct Publisher {
    client: Client,
    names: Names,
    ack_deadline_seconds: i32,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: BusMetrics,
}

impl Publisher {
    pub fn new(client: Client, names: Names, ack_deadline_seconds: i32, metrics: BusMetrics) -> Self {
        Self {
            client,
            names,
            ack_deadline_seconds,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            metrics,
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Create the topic and the subscription when missing (see [`Client::ensure`]).
    pub async fn ensure(&self) -> Result<(), PubSubError> {
        self.client.ensure(&self.names, self.ack_deadline_seconds).await
    }

    /// Publish `records` (oldest first), each with its tweet id as the `tweet_id` attribute. Returns once Pub/Sub
    /// confirmed every one. A failed request is sent again, which may duplicate the messages Pub/Sub took before
    /// it failed; the daily transform keeps one copy per tweet id.
    pub async fn publish(&mut self, records: &[Record]) -> Result<(), PubSubError> {
        for chunk in publish_chunks(records) {
            let messages: Vec<Outgoing<'_>> = chunk
                .iter()
                .map(|r| Outgoing {
                    data: &r.value,
                    attributes: BTreeMap::from([(TWEET_ID_ATTRIBUTE, r.id.to_string())]),
                })
                .collect();
            let mut attempt = 0u32;
            loop {
                match self.client.publish(&self.names, &messages).await {
                    Ok(ids) if ids.len() == messages.len() => break,
                    Ok(ids) => tracing::warn!(
                        sent = messages.len(),
                        confirmed = ids.len(),
                        "pub/sub confirmed fewer messages than were sent; publishing them again"
                    ),
                    Err(error) => tracing::warn!(
                        error = %error,
                        transient = error.is_transient(),
                        "failed to publish to pub/sub; publishing again"
                    ),
                }
                self.metrics.count_delivery_failures(messages.len() as u64);
                attempt += 1;
                tokio::time::sleep(Backoff::new(self.retry_initial, self.retry_max).wait(attempt)).await;
            }
            self.metrics.count_published(chunk.len() as u64);
            if let Some(last) = chunk.last() {
                self.metrics.set_newest(last.id);
            }
        }
        Ok(())
    }
}
