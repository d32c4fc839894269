//! The message buses between the producer and the consumer: Kafka (`kafka`, the default) and Google Cloud Pub/Sub
//! (`pubsub`).

pub mod brokers;
pub mod kafka;
pub mod pubsub;
pub mod resume;
