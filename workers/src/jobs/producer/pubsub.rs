//! The producer's Pub/Sub sink: the publisher of `crate::bus::pubsub` and the checkpoint in the lake it resumes
//! from.
//!
//! # Resuming the producer without local state
//!
//! Pub/Sub cannot be read back like a Kafka topic, so the resume point is a small object in the lake: the newest
//! tweet id of the last poll whose messages Pub/Sub confirmed. A poll's tweets are published in chunks, and the
//! checkpoint is written only after every chunk's publish call returned message ids, so every tweet up to the
//! checkpoint is in the topic, and the subscription (created before the first publish) keeps it until the consumer
//! acknowledges it. A restart polls X for tweets newer than the checkpoint: if the process died after publishing
//! and before the checkpoint, those tweets are read and published again (duplicates, never a gap). The checkpoint
//! only moves forward, and a missing one means "start from the backfill". Duplicates are removed by tweet id in
//! the daily transform (rule 3 of the transform semantics).
//!

use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};

use crate::bus::{
    kafka::{BusMetrics, Record},
    pubsub::{Client, PubSubError, Publisher},
};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("failed to read the producer checkpoint {path}: {source}")]
    Read { path: String, source: object_store::Error },
    #[error("failed to write the producer checkpoint {path}: {source}")]
    Write { path: String, source: object_store::Error },
    #[error("the producer checkpoint {path} is not valid JSON: {source}")]
    Parse { path: String, source: serde_json::Error },
}

#[derive(Serialize, Deserialize)]
struct CheckpointBody {
    /// A string, as X writes ids: JSON numbers above 2^53 lose digits in many readers.
    newest_id: String,
    updated_at: DateTime<Utc>,
}

/// Where a producer without Kafka resumes: `checkpoints/<pipeline>/producer.json` in the lake.
pub struct Checkpoint {
    lake: Arc<dyn ObjectStore>,
    path: Path,
}

impl Checkpoint {
    pub fn new(lake: Arc<dyn ObjectStore>, pipeline: &str) -> Self {
        Self {
            lake,
            path: Path::from(format!("checkpoints/{pipeline}/producer.json")),
        }
    }

    /// The newest tweet id every older tweet of which is on the bus; `None` before the first publish.
    pub async fn read(&self) -> Result<Option<u64>, CheckpointError> {
        let bytes = match self.lake.get(&self.path).await {
            Ok(result) => result.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => Err(source),
        }
        .map_err(|source| CheckpointError::Read {
            path: self.path.to_string(),
            source,
        })?;
        let body: CheckpointBody = serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Parse {
            path: self.path.to_string(),
            source,
        })?;
        // An id that is not a number is as good as no checkpoint: start from the backfill, never skip.
        Ok(body.newest_id.parse().ok())
    }

    /// Record `newest_id` as published.
    pub async fn write(&self, newest_id: u64) -> Result<(), CheckpointError> {
        let body = CheckpointBody {
            newest_id: newest_id.to_string(),
            updated_at: Utc::now(),
        };
        // Serializing a struct of a string and a time cannot fail.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.lake
            .put(&self.path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| CheckpointError::Write {
                path: self.path.to_string(),
                source,
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    PubSub(#[from] PubSubError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::PubSub(err) => err.is_transient(),
            Self::Checkpoint(CheckpointError::Parse { .. }) | Self::Lake(_) => false,
            Self::Checkpoint(_) => true,
        }
    }
}

/// What the producer publishes to when the bus is Pub/Sub: the publisher and the checkpoint it resumes from.
pub struct PubSubSink {
    publisher: Publisher,
    checkpoint: Checkpoint,
}

impl PubSubSink {
    /// The client from the environment (emulator or Google), the checkpoint in the pipeline's lake
    /// (`CILVEST_GCS_ENDPOINT` names a GCS emulator, as for the consumer).
    pub fn open(
        config: &cilvest_crds::worker_config::PubSubConfig,
        pipeline: &str,
        lake_uri: &str,
        metrics: BusMetrics,
    ) -> Result<Self, SinkError> {
        let gcs_endpoint = std::env::var(crate::lake::GCS_ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.is_empty());
        let lake = crate::lake::open(lake_uri, gcs_endpoint.as_deref())?;
        Ok(Self {
            publisher: Publisher::new(Client::from_env()?, config.into(), config.ack_deadline_seconds, metrics),
            checkpoint: Checkpoint::new(lake, pipeline),
        })
    }

    /// `projects/<project>/topics/<topic>`, for logs.
    pub fn topic_path(&self) -> String {
        self.publisher.names().topic_path()
    }

    /// Make sure the topic and the subscription exist, then read the checkpoint.
    pub async fn resume_point(&self) -> Result<Option<u64>, SinkError> {
        match self.publisher.ensure().await {
            Ok(()) => {}
            // No permission to create: they are managed elsewhere (Config Connector); publishing tells the rest.
            Err(PubSubError::Api { code: 403, .. }) => {
                tracing::info!(topic = %self.publisher.names().topic_path(), "not allowed to create the pub/sub topic; assuming it exists");
            }
            Err(err) => return Err(err.into()),
        }
        Ok(self.checkpoint.read().await?)
    }

    /// Publish `records`, then move the checkpoint to the newest of them (see the module docs). A checkpoint
    /// that cannot be written is only logged: the next publish writes a newer one, and an older one costs
    /// duplicates after a restart, never a gap.
    pub async fn publish(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.publisher.publish(records).await?;
        if let Some(newest) = records.iter().map(|r| r.id).max()
            && let Err(err) = self.checkpoint.write(newest).await
        {
            tracing::warn!(error = %err, newest_id = newest, "failed to write the producer checkpoint");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoint_round_trips_and_is_absent_at_first() {
        let lake: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let checkpoint = Checkpoint::new(lake.clone(), "demo");
        assert_eq!(checkpoint.read().await.expect("read"), None);
        checkpoint.write(1_860_000_000_000_000_001).await.expect("write");
        assert_eq!(checkpoint.read().await.expect("read"), Some(1_860_000_000_000_000_001));
        lake.put(
            &Path::from("checkpoints/demo/producer.json"),
            PutPayload::from_static(b"{"),
        )
        .await
        .expect("put");
        assert!(matches!(checkpoint.read().await, Err(CheckpointError::Parse { .. })));
    }
}
