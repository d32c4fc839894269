//! The daily schedule as the CronJob controller reads it (robfig/cron's standard parser): five fields or a
//! descriptor. The same grammar as the CRD's CEL rules in `rules.rs`, in Rust, for `validate()`.

use std::sync::OnceLock;

use crate::rules::{CRON_DESCRIPTORS, CRON_FIELDS, CronField};

/// Why a schedule is refused: the message names the field of the expression.
pub fn check(schedule: &str) -> Result<(), String> {
    if schedule.starts_with('@') {
        return if CRON_DESCRIPTORS.contains(&schedule) {
            Ok(())
        } else {
            Err(format!(
                "{schedule:?} is not one of {}; use a 5-field expression",
                CRON_DESCRIPTORS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = schedule.split(' ').collect();
    if fields.len() != 5 || fields.iter().any(|f| f.is_empty()) {
        return Err(format!(
            "{schedule:?} must be 5 cron fields separated by single spaces (minute hour day-of-month month \
             day-of-week)"
        ));
    }
    for ((field, pattern), text) in CRON_FIELDS.iter().zip(patterns()).zip(fields) {
        if !field_ok(field, pattern.as_ref(), text) {
            return Err(format!(
                "{schedule:?}: the {} field {text:?} must be *, a value {}-{}{}, or a range a-b with a <= b, each with \
                 an optional /step > 0, separated by commas",
                field.name,
                field.min,
                field.max,
                if field.names.is_empty() { "" } else { " or names" }
            ));
        }
    }
    Ok(())
}

/// Each field's pattern, compiled once: compiling them took 8 % of an operator's CPU while it reconciled 2,000
/// pipelines after a restart (BENCHMARKS.md, issue 25).
fn patterns() -> &'static [Option<regex::Regex>] {
    static PATTERNS: OnceLock<Vec<Option<regex::Regex>>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        CRON_FIELDS
            .iter()
            .map(|field| regex::Regex::new(&field.pattern()).ok())
            .collect()
    })
}

/// The field's pattern (the same regex the CRD's CEL rule uses), then every range from low to high.
fn field_ok(field: &CronField, pattern: Option<&regex::Regex>, text: &str) -> bool {
    let matches = pattern.is_some_and(|pattern| pattern.is_match(text));
    matches
        && text.split(',').all(|part| {
            let range = part.split('/').next().unwrap_or_default();
            match range.split_once('-') {
                Some((low, high)) => value(field, low) <= value(field, high),
                None => true,
            }
        })
}

fn value(field: &CronField, token: &str) -> Option<i64> {
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return token.parse().ok();
    }
    let lower = token.to_ascii_lowercase();
    field.names.iter().find(|(name, _)| *name == lower).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn what_the_cronjob_controller_takes() {
        for ok in [
            "30 1 * * *",
            "0 */6 * * *",
            "0 0 1-15/2 * MON-FRI",
            "5,10 0 ? jan,Dec sun",
            "59 23 31 12 6",
            "@daily",
            "@hourly",
            "7/10 * * * *",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn what_it_refuses_names_the_field() {
        for (bad, field) in [
            ("60 1 * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day of month"),
            ("0 0 1 13 *", "month"),
            ("0 0 * * 7", "day of week"),
            ("0 0 * * 8", "day of week"),
            ("5-3 * * * *", "minute"),
            ("*/0 * * * *", "minute"),
            ("0 0 L * *", "day of month"),
            ("0 0 * * mon#2", "day of week"),
            ("0 0 * jan-foo *", "month"),
            ("1,,2 * * * *", "minute"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(&format!("the {field} field")), "{bad}: {err}");
        }
        for bad in [
            "30 1 * *",
            "30 1 * * * *",
            "",
            "@every 1h",
            "@reboot",
            "TZ=UTC 30 1 * * *",
            "30  1 * * *",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
