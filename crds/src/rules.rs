//! The CEL rules of the CRD that are more than one line: durations with bounds and the daily cron schedule.
//! The API server evaluates them at admission, `cilvest-operator validate` evaluates the same rules client-side, and
//! `values.rs` and `cron.rs` hold the Rust side of each (`parse_duration`, `cron::check`), which the tests keep in agreement.

use kube::core::{Message, Rule};

/// The duration grammar: units in this order, each at most once: `7d`, `1h30m`, `90s`, `250ms`, `1d12h`. Bounded
/// digits keep every value (and the CEL arithmetic below) far from overflow.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?$";

/// `self`, a string of [`DURATION_PATTERN`], in milliseconds. CEL's `duration()` takes Go's units (h, m, s, ms) but
/// not days, so the days before a `d` are counted apart.
const DURATION_MS: &str = "((self.contains('d') ? int(self.split('d')[0]) * 86400000 : 0) + \
    (self.split('d')[size(self.split('d')) - 1] == '' ? 0 : \
    duration(self.split('d')[size(self.split('d')) - 1]).getMilliseconds()))";

/// A duration of at least `min_ms` (and at most `max_ms`, when given). `what` names the bound in the message.
pub fn duration_within(min_ms: i64, max_ms: Option<i64>, what: &str) -> Rule {
    let upper = max_ms
        .map(|max| format!(" && {DURATION_MS} <= {max}"))
        .unwrap_or_default();
    Rule::new(format!("{DURATION_MS} >= {min_ms}{upper}")).message(Message::Message(what.to_owned()))
}

/// The descriptors robfig/cron (the CronJob controller's parser) takes besides five fields. `@every` is left out:
/// it is not a calendar schedule, and the pipeline's day boundaries would drift with it.
pub const CRON_DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Five fields separated by single spaces (robfig/cron also takes runs of spaces; we do not, so that every rule
/// below can split on one space, which keeps the API server's CEL cost estimate small).
pub const CRON_SHAPE: &str = "^[^ ]+( [^ ]+){4}$";

/// One field of a five-field cron expression, with the values robfig/cron accepts.
pub struct CronField {
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
    /// A regex alternative for one value: a number within the bounds (leading zeros allowed, as robfig's `Atoi`
    /// allows them), or a name (case-insensitive).
    pub value: &'static str,
    /// The names and their values.
    pub names: &'static [(&'static str, i64)],
}

const MONTHS: [(&str, i64); 12] = [
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];
const WEEKDAYS: [(&str, i64); 7] = [
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];

pub const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        value: "0*([0-9]|[1-5][0-9])",
        names: &[],
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        value: "0*([0-9]|1[0-9]|2[0-3])",
        names: &[],
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        value: "0*([1-9]|[12][0-9]|3[01])",
        names: &[],
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        value: "(0*([1-9]|1[0-2])|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
        names: &MONTHS,
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 6,
        value: "(0*[0-6]|sun|mon|tue|wed|thu|fri|sat)",
        names: &WEEKDAYS,
    },
];

impl CronField {
    /// The field's whole grammar: comma-separated `*`, `?`, a value or a range, each with an optional `/step` of
    /// 1-6 significant digits (robfig refuses 0 and would overflow on very long numbers).
    pub fn pattern(&self) -> String {
        let element = format!("([*?]|{v}(-{v})?)(/0*[1-9][0-9]{{0,5}})?", v = self.value);
        format!("(?i)^{element}(,{element})*$")
    }

    fn message(&self) -> String {
        let names = if self.names.is_empty() { "" } else { " or names" };
        format!(
            "the {} field must be *, a value {}-{}{names}, or a range a-b with a <= b, each with an optional /step > 0, \
             separated by commas",
            self.name, self.min, self.max
        )
    }
}

/// Five fields separated by single spaces, or one of [`CRON_DESCRIPTORS`].
pub fn cron_shape() -> Rule {
    let descriptors = CRON_DESCRIPTORS.map(|d| format!("'{d}'")).join(", ");
    Rule::new(format!(
        "self.startsWith('@') ? self in [{descriptors}] : self.matches('{CRON_SHAPE}')"
    ))
    .message(
        "must be 5 cron fields separated by single spaces (minute hour day-of-month month day-of-week) or one of \
         @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
    )
}

/// Field `index` of a five-field expression: its grammar and bounds ([`CronField::pattern`]), and every range
/// from low to high.
pub fn cron_field(index: usize) -> Rule {
    let field = &CRON_FIELDS[index];
    let value = |expr: &str| {
        if field.names.is_empty() {
            format!("int({expr})")
        } else {
            let map = field
                .names
                .iter()
                .map(|(n, v)| format!("'{n}': {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({expr}.matches('^[0-9]+$') ? int({expr}) : {{{map}}}[{expr}.lowerAscii()])")
        }
    };
    let range = "p.split('/')[0]";
    let ordered = format!(
        "!{range}.contains('-') || {low} <= {high}",
        low = value(&format!("{range}.split('-')[0]")),
        high = value(&format!("{range}.split('-')[1]")),
    );
    Rule::new(format!(
        "self.startsWith('@') || !self.matches('{CRON_SHAPE}') || (self.split(' ')[{index}].matches('{pattern}') && \
         self.split(' ')[{index}].split(',').all(p, {ordered}))",
        pattern = field.pattern(),
    ))
    .message(Message::Message(field.message()))
}

/// `timeZone`: one of the IANA database's names (chrono-tz's copy), as an enum the API server checks at admission.
pub fn time_zone_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    schemars::json_schema!({"type": "string", "enum": names})
}

/// A keyword term: see `Keyword::terms`. The same expression as the schema's pattern (RE2 and the regex crate agree
/// on it).
pub const TERM_PATTERN: &str = r"^[#$@]?[\p{L}\p{N}_]([\p{L}\p{N}_ '.&-]*[\p{L}\p{N}_])?$";
