//! A pipeline spec, parsed once. [`Pipeline::new`] runs every rule of [`validate`] and turns the spec's text values
//! (durations, the time zone) into typed ones; the operator's builders and the workers read these, and no other
//! code parses a duration or a time zone of the spec. A spec that `validate()` refuses never becomes a `Pipeline`,
//! and the errors are the same list, naming each field.

use std::time::Duration;

use chrono_tz::Tz;

use crate::{
    spec::CilvestPipelineSpec,
    validate::{FieldError, InvalidSpec, validate},
    values::{bootstrap_ports, parse_duration, url_port},
};

/// A valid spec and its typed values.
#[derive(Clone, Debug)]
pub struct Pipeline {
    spec: CilvestPipelineSpec,
    /// `spec.schedule.timeZone`: the local day of the lake's folders, the marts and the schedule.
    pub time_zone: Tz,
    /// `spec.topics.raw.retention`.
    pub raw_retention: Duration,
    /// `spec.source.x.pollInterval`.
    pub poll_interval: Duration,
    /// `spec.source.x.backfill`, when set.
    pub backfill: Option<Duration>,
    /// `spec.source.x.countsInterval`.
    pub counts_interval: Duration,
    /// `maxLifetime` of the Dataproc cluster or the Dataproc Serverless batch, for the engine the spec chooses.
    pub dataproc_max_lifetime: Option<Duration>,
    /// The Kafka ports the producer and the consumer connect to (the Strimzi listener's, 9092 by default, or those
    /// of `spec.kafka.bootstrapServers`); empty on the Pub/Sub bus.
    pub kafka_ports: Vec<u16>,
    /// The port the daily job indexes to: the external search URL's, or ECK's 9200; `None` without search.
    pub search_port: Option<u16>,
}

impl Pipeline {
    /// Check `spec` with every rule of [`validate`], then parse it: the operator and the CLI.
    pub fn new(spec: &CilvestPipelineSpec) -> Result<Self, InvalidSpec> {
        validate(spec, None)?;
        Self::parse(spec)
    }

    /// Parse `spec` without the admission rules: the workers, whose `pipeline.json` the operator rendered from a
    /// spec it had checked, and which also run locally on what admission refuses (a `file://` lake). A value that
    /// does not parse is still an error naming its field.
    pub fn parse(spec: &CilvestPipelineSpec) -> Result<Self, InvalidSpec> {
        let x = &spec.source.x;
        let transform = &spec.transform;
        let lifetime = match (&transform.dataproc, &transform.dataproc_serverless) {
            (Some(cluster), _) if spec.transform.engine == crate::spec::Engine::Dataproc => {
                Some(("spec.transform.dataproc.maxLifetime", &cluster.max_lifetime))
            }
            (_, Some(batch)) if spec.transform.engine == crate::spec::Engine::DataprocServerless => {
                Some(("spec.transform.dataprocServerless.maxLifetime", &batch.max_lifetime))
            }
            _ => None,
        };
        Ok(Self {
            time_zone: spec.schedule.time_zone.parse().map_err(|_| {
                invalid(
                    "spec.schedule.timeZone",
                    format!("{:?} is not an IANA time zone", spec.schedule.time_zone),
                )
            })?,
            raw_retention: duration("spec.topics.raw.retention", &spec.topics.raw.retention)?,
            poll_interval: duration("spec.source.x.pollInterval", &x.poll_interval)?,
            backfill: x
                .backfill
                .as_deref()
                .map(|b| duration("spec.source.x.backfill", b))
                .transpose()?,
            counts_interval: duration("spec.source.x.countsInterval", &x.counts_interval)?,
            dataproc_max_lifetime: lifetime.map(|(path, text)| duration(path, text)).transpose()?,
            kafka_ports: kafka_ports(spec)?,
            search_port: search_port(spec)?,
            spec: spec.clone(),
        })
    }

    /// The spec as written (schema defaults applied).
    pub fn spec(&self) -> &CilvestPipelineSpec {
        &self.spec
    }
}

/// The HTTP port of an ECK-managed Elasticsearch.
const ECK_HTTP_PORT: u16 = 9200;

fn kafka_ports(spec: &CilvestPipelineSpec) -> Result<Vec<u16>, InvalidSpec> {
    if spec.bus == crate::spec::Bus::Pubsub {
        return Ok(Vec::new());
    }
    match &spec.kafka.bootstrap_servers {
        Some(servers) => bootstrap_ports(servers).ok_or_else(|| {
            invalid(
                "spec.kafka.bootstrapServers",
                format!("{servers:?} is not a comma-separated host:port list"),
            )
        }),
        None => Ok(vec![crate::kafka_access::strimzi_port(spec)]),
    }
}

fn search_port(spec: &CilvestPipelineSpec) -> Result<Option<u16>, InvalidSpec> {
    let Some(search) = &spec.targets.elasticsearch else {
        return Ok(None);
    };
    match &search.external {
        Some(external) => url_port(&external.url).map(Some).ok_or_else(|| {
            invalid(
                "spec.targets.elasticsearch.external.url",
                format!("{:?} has no port this operator can read", external.url),
            )
        }),
        None => Ok(search.managed.as_ref().map(|_| ECK_HTTP_PORT)),
    }
}

fn invalid(path: &str, message: String) -> InvalidSpec {
    InvalidSpec(vec![FieldError {
        path: path.to_owned(),
        message,
    }])
}

/// `validate()` has checked every duration; this only turns the text into its value.
fn duration(path: &str, text: &str) -> Result<Duration, InvalidSpec> {
    parse_duration(text).ok_or_else(|| invalid(path, format!("{text:?} is not a duration such as 30s, 5m or 24h")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CilvestPipeline;

    fn example(yaml: &str) -> CilvestPipelineSpec {
        serde_saphyr::from_str::<CilvestPipeline>(yaml).expect("example").spec
    }

    #[test]
    fn the_example_parses_into_typed_values() {
        let pipeline = Pipeline::new(&example(include_str!("../../examples/cilvest.yaml"))).expect("valid");
        assert_eq!(pipeline.time_zone, chrono_tz::Asia::Jakarta);
        assert_eq!(pipeline.raw_retention, Duration::from_secs(7 * 24 * 3600));
        assert!(pipeline.poll_interval > Duration::ZERO && pipeline.counts_interval > Duration::ZERO);
        assert_eq!(pipeline.spec().schedule.time_zone, "Asia/Jakarta");
    }

    #[test]
    fn a_spec_validate_refuses_is_refused_with_the_same_errors() {
        let mut spec = example(include_str!("../../examples/minimal.yaml"));
        spec.topics.raw.retention = "0s".to_owned();
        spec.schedule.time_zone = "Jakarta".to_owned();
        let from_validate = validate(&spec, None).expect_err("invalid");
        let from_new = Pipeline::new(&spec).expect_err("invalid");
        assert_eq!(from_new.to_string(), from_validate.to_string());
        assert!(from_new.to_string().contains("spec.topics.raw.retention"));
        assert!(from_new.to_string().contains("spec.schedule.timeZone"));
    }
}
