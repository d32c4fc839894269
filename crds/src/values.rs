//! The text values of a spec, parsed: durations, dollar amounts and the budget they buy, and the lake URI; and the
//! syntax of the names and addresses a spec carries, which `validate()` checks. The
//! rules in the CRD (`rules.rs`) accept the same texts.

use std::time::Duration;

use crate::spec::ReadBudget;

/// A non-negative decimal amount such as `0.005` or `50`; `None` for anything else.
pub fn parse_usd(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// The budget in posts: as given, or the dollars divided by the price per read (rounded down). `None` when it
/// cannot be computed (a malformed amount or a zero price).
pub fn budget_posts(budget: &ReadBudget, price_per_read_usd: &str) -> Option<u64> {
    match (budget.posts, &budget.usd) {
        (Some(posts), _) => u64::try_from(posts).ok(),
        (None, Some(usd)) => {
            let usd = parse_usd(usd)?;
            let price = parse_usd(price_per_read_usd).filter(|p| *p > 0.0)?;
            // A hair of tolerance so that 50 / 0.005 is 10000, not 9999.
            Some((usd / price + 1e-9).floor() as u64)
        }
        (None, None) => None,
    }
}

/// [`parse_duration`] as a command-line value parser: the workers' and the operator's duration flags.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 250ms, 30s, 5m or 24h"))
}

/// Parse a duration of [`crate::rules::DURATION_PATTERN`]: units in the order d, h, m, s, ms, each at most once
/// and with at most 5 (days) or 6 digits, such as `60s`, `5m`, `1h30m`, `7d`, `1d12h`, `250ms`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    // (unit, milliseconds, most digits), in the order they may appear.
    const UNITS: [(&str, u64, usize); 5] = [
        ("d", 86_400_000, 5),
        ("h", 3_600_000, 6),
        ("m", 60_000, 6),
        ("s", 1_000, 6),
        ("ms", 1, 6),
    ];
    let mut rest = text;
    let mut millis = 0u64;
    let mut next = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (index, (unit, unit_ms, max_digits)) = UNITS
            .iter()
            .enumerate()
            .skip(next)
            .find(|(_, (unit, _, _))| rest.starts_with(unit) && !(*unit == "m" && rest.starts_with("ms")))?;
        if digits == 0 || digits > *max_digits {
            return None;
        }
        millis += value * unit_ms;
        rest = &rest[unit.len()..];
        next = index + 1;
    }
    Some(Duration::from_millis(millis))
}

/// Split `gs://bucket/prefix` into bucket and prefix (without slashes at either end).
pub fn parse_lake_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    valid_bucket.then_some((bucket, prefix.trim_matches('/')))
}

/// The ports of a `host:port[,host:port...]` list (`spec.kafka.bootstrapServers`), each once, in order.
pub fn bootstrap_ports(servers: &str) -> Option<Vec<u16>> {
    let mut ports = Vec::new();
    for server in servers.split(',') {
        let port: u16 = server.trim().rsplit_once(':')?.1.parse().ok()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    (!ports.is_empty()).then_some(ports)
}

/// The port of an `http(s)://host[:port][/path]` URL: the explicit one, else the scheme's (80 or 443).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    // An IPv6 literal is bracketed; a port follows the closing bracket.
    let after_host = authority.rsplit_once(']').map_or(authority, |(_, tail)| tail);
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        },
    }
}

// ---- the syntax of the names and addresses a spec carries (`validate()` checks them) ----

/// `http(s)://host[:port][/path]`, no whitespace, query or fragment.
pub(crate) fn is_http_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    url.len() <= 2048 && !host.is_empty() && !url.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
}

pub(crate) fn is_keyword_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len()) && name.split('.').all(is_dns_label)
}

pub(crate) fn is_gcp_project(name: &str) -> bool {
    let bytes = name.as_bytes();
    (6..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && bytes.last().is_some_and(|&b| b != b'-')
}

/// A Pub/Sub topic or subscription ID.
pub(crate) fn is_pubsub_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.to_ascii_lowercase().starts_with("goog")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '%'))
}

pub(crate) fn is_kafka_topic(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub(crate) fn is_bq_dataset(name: &str) -> bool {
    (1..=1024).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
