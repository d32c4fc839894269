//! Pure validation of a pipeline spec: the schema's and the CEL rules again, for API servers that ignore CEL,
//! plus the rules no schema can say (the X query's length, time zones, durations).

use std::{collections::HashSet, fmt, time::Duration};

use crate::{
    query::{QueryTooLong, X_QUERY_LIMIT, X_RECENT_WINDOW, render_query},
    spec::{Bus, CilvestPipelineSpec, Engine},
    values::{
        budget_posts, is_bq_dataset, is_dns_label, is_dns_subdomain, is_gcp_project, is_http_url, is_kafka_topic,
        is_keyword_name, is_pubsub_name, parse_duration, parse_lake_uri, parse_usd,
    },
};

/// One problem in a spec, with the path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CilvestPipeline spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<FieldError>);

/// Check `spec`; with `old`, also the rules about changes (partitions never decrease).
pub fn validate(spec: &CilvestPipelineSpec, old: Option<&CilvestPipelineSpec>) -> Result<(), InvalidSpec> {
    let mut errors = Vec::new();
    let mut fail = |path: &str, message: String| {
        errors.push(FieldError {
            path: path.to_owned(),
            message,
        })
    };

    if spec.keywords.is_empty() {
        fail("spec.keywords", "at least one keyword is required".into());
    }
    let mut names = HashSet::new();
    for (i, keyword) in spec.keywords.iter().enumerate() {
        let path = format!("spec.keywords[{i}]");
        if !is_keyword_name(&keyword.name) {
            fail(
                &format!("{path}.name"),
                format!(
                    "{:?} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
                    keyword.name
                ),
            );
        }
        // The path the API server names for a repeated key of a list of type map.
        if !names.insert(keyword.name.as_str()) {
            fail(&path, format!("duplicate keyword {:?}", keyword.name));
        }
        if keyword.terms.is_empty() {
            fail(&format!("{path}.terms"), "at least one term is required".into());
        }
        let mut terms = HashSet::new();
        for (j, term) in keyword.terms.iter().enumerate() {
            let len = term.chars().count();
            if !(2..=64).contains(&len) || !term_pattern().is_match(term) {
                fail(
                    &format!("{path}.terms[{j}]"),
                    format!(
                        "{term:?} must be 2-64 letters, digits or _ with inner spaces, ' . & or -, optionally after \
                         one #, $ or @"
                    ),
                );
            } else if term == "OR" || term == "AND" {
                fail(
                    &format!("{path}.terms"),
                    format!("{term:?} is an X query operator, not a term"),
                );
            }
            if !terms.insert(term.as_str()) {
                fail(&format!("{path}.terms[{j}]"), format!("duplicate term {term:?}"));
            }
        }
    }
    if !(2..=3).contains(&spec.language.len()) || !spec.language.bytes().all(|b| b.is_ascii_lowercase()) {
        fail(
            "spec.language",
            format!("{:?} is not a 2- or 3-letter language code", spec.language),
        );
    }
    let length = render_query(spec, false).chars().count();
    if length > X_QUERY_LIMIT {
        fail("spec.keywords", QueryTooLong { length }.to_string());
    }

    let x = &spec.source.x;
    check_duration(
        &mut fail,
        "spec.source.x.pollInterval",
        &x.poll_interval,
        Duration::from_secs(1),
        None,
    );
    if let Some(backfill) = &x.backfill {
        check_duration(
            &mut fail,
            "spec.source.x.backfill",
            backfill,
            Duration::from_millis(1),
            Some(X_RECENT_WINDOW),
        );
    }
    check_secret_ref(
        &mut fail,
        "spec.source.x.bearerTokenSecretRef",
        &x.bearer_token_secret_ref,
    );
    if !is_http_url(&x.api_url) {
        fail(
            "spec.source.x.apiUrl",
            format!("{:?} must be an http(s) URL without query or fragment", x.api_url),
        );
    }
    let mut env_names = HashSet::new();
    for (i, env) in spec.workers.env.iter().enumerate() {
        if is_reserved_env(&env.name) {
            fail(
                "spec.workers.env",
                format!("{:?} is set by the operator from the spec", env.name),
            );
        }
        if !env_names.insert(env.name.as_str()) {
            fail(
                &format!("spec.workers.env[{i}]"),
                format!("duplicate environment variable {:?}", env.name),
            );
        }
    }
    if spec.workers.env.len() > 32 {
        fail(
            "spec.workers.env",
            format!("{} variables, at most 32", spec.workers.env.len()),
        );
    }
    check_duration(
        &mut fail,
        "spec.source.x.countsInterval",
        &x.counts_interval,
        Duration::from_secs(60),
        None,
    );
    for (path, price) in [
        ("spec.source.x.pricePerReadUSD", &x.price_per_read_usd),
        ("spec.source.x.pricePerCountRequestUSD", &x.price_per_count_request_usd),
    ] {
        if parse_usd(price).is_none() {
            fail(path, format!("{price:?} is not an amount of US dollars such as 0.005"));
        }
    }
    if let Some(budget) = &x.monthly_read_budget {
        match (budget.posts, &budget.usd) {
            (Some(posts), None) if posts >= 1 => {}
            (Some(posts), None) => fail(
                "spec.source.x.monthlyReadBudget.posts",
                format!("{posts} must be at least 1"),
            ),
            (None, Some(usd)) if parse_usd(usd).is_some() => {
                if budget_posts(budget, &x.price_per_read_usd).is_none_or(|posts| posts < 1) {
                    fail(
                        "spec.source.x.monthlyReadBudget.usd",
                        format!("{usd:?} buys no post at pricePerReadUSD {:?}", x.price_per_read_usd),
                    );
                }
            }
            (None, Some(usd)) => fail(
                "spec.source.x.monthlyReadBudget.usd",
                format!("{usd:?} is not an amount of US dollars such as 50 or 12.5"),
            ),
            _ => fail(
                "spec.source.x.monthlyReadBudget",
                "set exactly one of posts and usd".into(),
            ),
        }
    }

    let kafka = &spec.kafka;
    if kafka.strimzi_cluster.is_some() == kafka.bootstrap_servers.is_some() {
        fail(
            "spec.kafka",
            "set exactly one of strimziCluster and bootstrapServers".into(),
        );
    }
    if let Some(cluster) = &kafka.strimzi_cluster
        && !is_dns_label(cluster)
    {
        fail(
            "spec.kafka.strimziCluster",
            format!("{cluster:?} is not a valid resource name"),
        );
    }
    if let Some(listener) = &kafka.listener {
        if kafka.strimzi_cluster.is_none() {
            fail(
                "spec.kafka.listener",
                "kafka.listener applies to a Strimzi cluster: set kafka.strimziCluster".into(),
            );
        }
        if !(1..=65535).contains(&listener.port) {
            fail(
                "spec.kafka.listener.port",
                format!("{} must be between 1 and 65535", listener.port),
            );
        }
        if listener.authentication == Some(crate::spec::KafkaAuthentication::Tls) && !listener.tls {
            fail(
                "spec.kafka.listener.authentication",
                "authentication tls (mutual TLS) needs a TLS listener: set tls: true".into(),
            );
        }
    }
    let raw = &spec.topics.raw;
    if let Some(name) = &raw.name
        && !is_kafka_topic(name)
    {
        fail(
            "spec.topics.raw.name",
            format!("{name:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -, not '.' or '..')"),
        );
    }
    if !(1..=1000).contains(&raw.partitions) {
        fail(
            "spec.topics.raw.partitions",
            format!("{} must be between 1 and 1000", raw.partitions),
        );
    }
    if let Some(old) = old
        && raw.partitions < old.topics.raw.partitions
    {
        fail(
            "spec.topics.raw.partitions",
            format!(
                "partitions can only be increased (from {} to {}): Kafka cannot remove partitions",
                old.topics.raw.partitions, raw.partitions
            ),
        );
    }
    if !(1..=10).contains(&raw.replicas) {
        fail(
            "spec.topics.raw.replicas",
            format!("{} must be between 1 and 10", raw.replicas),
        );
    }
    check_duration(
        &mut fail,
        "spec.topics.raw.retention",
        &raw.retention,
        Duration::from_secs(60),
        None,
    );

    if spec.bus == Bus::Pubsub && spec.pubsub.is_none() {
        fail("spec.pubsub", "pubsub is required when bus is pubsub".into());
    }
    if let Some(pubsub) = &spec.pubsub {
        if !is_gcp_project(&pubsub.project) {
            fail(
                "spec.pubsub.project",
                format!("{:?} is not a Google Cloud project ID", pubsub.project),
            );
        }
        for (path, name) in [
            ("spec.pubsub.topic", &pubsub.topic),
            ("spec.pubsub.subscription", &pubsub.subscription),
        ] {
            if let Some(name) = name
                && !is_pubsub_name(name)
            {
                fail(
                    path,
                    format!(
                        "{name:?} must be 3-255 of letters, digits, - . _ ~ + %, start with a letter and not with goog"
                    ),
                );
            }
        }
        if !(10..=600).contains(&pubsub.ack_deadline_seconds) {
            fail(
                "spec.pubsub.ackDeadlineSeconds",
                format!("{} must be between 10 and 600", pubsub.ack_deadline_seconds),
            );
        }
    }

    if let Err(message) = crate::cron::check(&spec.schedule.daily) {
        fail("spec.schedule.daily", message);
    }
    if spec.schedule.time_zone.parse::<chrono_tz::Tz>().is_err() {
        fail(
            "spec.schedule.timeZone",
            format!("{:?} is not an IANA time zone", spec.schedule.time_zone),
        );
    }

    let transform = &spec.transform;
    match transform.engine {
        Engine::Dataproc if transform.dataproc.is_none() => fail(
            "spec.transform.dataproc",
            "transform.dataproc is required when transform.engine is dataproc".into(),
        ),
        Engine::DataprocServerless if transform.dataproc_serverless.is_none() => fail(
            "spec.transform.dataprocServerless",
            "transform.dataprocServerless is required when transform.engine is dataprocServerless".into(),
        ),
        _ => {}
    }
    if let Some(dataproc) = &transform.dataproc {
        check_duration(
            &mut fail,
            "spec.transform.dataproc.maxLifetime",
            &dataproc.max_lifetime,
            Duration::from_secs(600),
            Some(Duration::from_secs(14 * 24 * 3600)),
        );
        if !(0..=100).contains(&dataproc.workers) || dataproc.workers == 1 {
            fail(
                "spec.transform.dataproc.workers",
                format!("{} must be 0 (single node) or 2-100", dataproc.workers),
            );
        }
    }
    if let Some(serverless) = &transform.dataproc_serverless {
        check_duration(
            &mut fail,
            "spec.transform.dataprocServerless.maxLifetime",
            &serverless.max_lifetime,
            Duration::from_secs(600),
            Some(Duration::from_secs(14 * 24 * 3600)),
        );
    }

    let targets = &spec.targets;
    if parse_lake_uri(&targets.lake.uri).is_none() {
        fail(
            "spec.targets.lake.uri",
            format!(
                "{:?} must be gs://<bucket>[/prefix] with a valid bucket name",
                targets.lake.uri
            ),
        );
    }
    let bq = &targets.bigquery;
    for (path, dataset) in [
        ("spec.targets.bigquery.dataset", Some(&bq.dataset)),
        ("spec.targets.bigquery.martsDataset", bq.marts_dataset.as_ref()),
    ] {
        if let Some(dataset) = dataset
            && !is_bq_dataset(dataset)
        {
            fail(
                path,
                format!("{dataset:?} must be 1-1024 letters, digits or underscores"),
            );
        }
    }
    if let Some(search) = &targets.elasticsearch {
        if search.managed.is_some() == search.external.is_some() {
            fail(
                "spec.targets.elasticsearch",
                "set exactly one of managed and external".into(),
            );
        }
        if let Some(external) = &search.external {
            if !(external.url.starts_with("https://") || external.url.starts_with("http://")) {
                fail(
                    "spec.targets.elasticsearch.external.url",
                    format!("{:?} must be an http(s) URL", external.url),
                );
            }
            if external.username.is_some() != external.password_secret_ref.is_some() {
                fail(
                    "spec.targets.elasticsearch.external",
                    "username and passwordSecretRef go together".into(),
                );
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidSpec(errors))
    }
}

/// The keyword-term pattern of the CRD, compiled once.
fn term_pattern() -> &'static regex::Regex {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| regex::Regex::new(crate::rules::TERM_PATTERN).expect("the constant term pattern compiles"))
}

fn check_duration(fail: &mut impl FnMut(&str, String), path: &str, text: &str, min: Duration, max: Option<Duration>) {
    match parse_duration(text) {
        None => fail(
            path,
            format!("{text:?} is not a duration such as 60s, 5m, 1h30m or 7d (units d, h, m, s, ms in that order)"),
        ),
        Some(d) if d < min => fail(path, format!("{text:?} is shorter than the minimum of {min:?}")),
        Some(d) if max.is_some_and(|max| d > max) => fail(
            path,
            format!("{text:?} is longer than the maximum of {:?}", max.unwrap_or_default()),
        ),
        Some(_) => {}
    }
}

fn check_secret_ref(fail: &mut impl FnMut(&str, String), path: &str, secret: &crate::spec::SecretKeyRef) {
    if !is_dns_subdomain(&secret.name) {
        fail(
            &format!("{path}.name"),
            format!("{:?} is not a valid Secret name", secret.name),
        );
    }
    if secret.key.is_empty()
        || !secret
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        fail(
            &format!("{path}.key"),
            format!("{:?} is not a valid Secret key", secret.key),
        );
    }
}

/// Environment variables the operator sets itself: a user's value would silently replace the spec's.
fn is_reserved_env(name: &str) -> bool {
    use crate::kafka_access::{CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV, PASSWORD_ENV, USERNAME_ENV};
    name.starts_with("CILVEST_X_")
        || [USERNAME_ENV, PASSWORD_ENV, CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV].contains(&name)
        || ["CILVEST_CONFIG", "CILVEST_ES_PASSWORD", "CILVEST_LOG_FORMAT"].contains(&name)
}
