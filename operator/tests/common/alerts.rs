//! The chart's alerts and the series they read, for the tests that check each series is served: the operator's
//! (`health.rs`, `monitoring.rs`) and the workers' (their `tests/support` includes this file by path).

use std::{collections::BTreeSet, path::Path};

/// The words of `text` that start with `prefix`: metric names, in a PromQL expression or a rules file.
pub fn series_in(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The `prefix…` series the chart's alerts read (`charts/cilvest-operator/templates/prometheusrule.yaml`), so that
/// renaming a metric breaks a test, not an alert.
pub fn alerted_series(prefix: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/cilvest-operator/templates/prometheusrule.yaml");
    let rules = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let names = series_in(&rules, prefix);
    assert!(!names.is_empty(), "no alert reads a {prefix} series");
    names
}

/// Whether an OpenMetrics exposition declares the series `name` (a counter's samples end in `_total`).
pub fn declares(exposition: &str, name: &str) -> bool {
    let family = name.strip_suffix("_total").unwrap_or(name);
    exposition
        .lines()
        .any(|line| line.starts_with(&format!("# TYPE {family} ")))
}
