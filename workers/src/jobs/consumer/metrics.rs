//! The consumer's metrics, served on `/metrics` with the `cilvest_consumer_` prefix.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

use std::collections::BTreeMap;

use crate::lake::record::RejectKind;
use crate::telemetry::Telemetry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Counters move when records become durable (written and committed), so replays after a crash are not counted
/// twice by the process that commits them; `records_in` counts every record read, replays included.
#[derive(Clone)]
pub struct Metrics {
    pub records_in: Counter,
    pub bytes_in: Counter,
    pub records_out: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub objects_written: Counter,
    pub bytes_out: Counter,
    pub batch_latency: Histogram,
    pub lake_errors: Counter,
    pub commit_errors: Counter,
    pub lag: Family<PartitionLabel, Gauge>,
    pub assigned_partitions: Gauge,
    pub paused: Gauge,
}

impl Metrics {
    pub fn register(telemetry: &Telemetry) -> Self {
        let metrics = Self {
            records_in: Counter::default(),
            bytes_in: Counter::default(),
            records_out: Counter::default(),
            rejected: Family::default(),
            objects_written: Counter::default(),
            bytes_out: Counter::default(),
            // 50 ms to about 27 minutes: a batch waits up to the flush interval and, in an outage, much longer.
            batch_latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.05, 2.0, 16,
            )),
            lake_errors: Counter::default(),
            commit_errors: Counter::default(),
            lag: Family::default(),
            assigned_partitions: Gauge::default(),
            paused: Gauge::default(),
        };
        let m = metrics.clone();
        telemetry.register(move |r| {
            r.register("records_in", "Records read from the raw topic", m.records_in);
            r.register("bytes_in", "Bytes of record values read from the raw topic", m.bytes_in);
            r.register("records_out", "Tweets written to raw/ and committed", m.records_out);
            r.register(
                "rejected",
                "Records written to rejected/ and committed, by reason",
                m.rejected,
            );
            r.register("objects_written", "Objects written to the lake", m.objects_written);
            r.register("bytes_out", "Compressed bytes written to the lake", m.bytes_out);
            r.register(
                "batch_latency_seconds",
                "Time from a batch's first record arriving to its offsets being committed",
                m.batch_latency,
            );
            r.register("lake_errors", "Failed lake writes (each is retried)", m.lake_errors);
            r.register("commit_errors", "Failed offset commits", m.commit_errors);
            r.register(
                "lag",
                "Records on the topic after the committed offset, per partition",
                m.lag,
            );
            r.register(
                "assigned_partitions",
                "Partitions this consumer owns",
                m.assigned_partitions,
            );
            r.register(
                "paused",
                "1 while consumption is paused because the lake is behind (backpressure)",
                m.paused,
            );
        });
        metrics
    }

    /// A batch is durable (written, and committed or acknowledged): count its records and rejections, and how long
    /// it took from its first record.
    pub fn batch_landed(&self, records: u64, rejected: &BTreeMap<RejectKind, u64>, since: std::time::Instant) {
        self.records_out.inc_by(records);
        for (reason, n) in rejected {
            let label = ReasonLabel {
                reason: (*reason).to_owned(),
            };
            self.rejected.get_or_create(&label).inc_by(*n);
        }
        self.batch_latency.observe(since.elapsed().as_secs_f64());
    }

    pub fn partition(partition: i32) -> PartitionLabel {
        PartitionLabel {
            partition: partition.to_string(),
        }
    }
}
