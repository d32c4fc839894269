//! The schema defaults of the spec's fields.

use super::{INDONESIAN, SecretKeyRef};

pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_language() -> String {
    INDONESIAN.to_owned()
}
pub(super) fn default_bearer_token_ref() -> SecretKeyRef {
    SecretKeyRef {
        name: "cilvest-x-api".to_owned(),
        key: "bearerToken".to_owned(),
    }
}
pub(super) fn default_poll_interval() -> String {
    "60s".to_owned()
}
pub(super) fn default_price_per_read() -> String {
    "0.005".to_owned()
}
pub(super) fn default_price_per_count_request() -> String {
    "0.005".to_owned()
}
pub(super) fn default_x_api_url() -> String {
    "https://api.x.com".to_owned()
}
pub(super) fn default_counts_interval() -> String {
    "1h".to_owned()
}
pub(super) fn default_partitions() -> i32 {
    3
}
pub(super) fn default_replicas() -> i32 {
    1
}
pub(super) fn default_retention() -> String {
    "7d".to_owned()
}
pub(super) fn default_daily_cron() -> String {
    "30 1 * * *".to_owned()
}
pub(super) fn default_catch_up_days() -> u32 {
    7
}
pub(super) fn default_time_zone() -> String {
    "Asia/Jakarta".to_owned()
}
pub(super) fn default_machine_type() -> String {
    "n2-standard-2".to_owned()
}
pub(super) fn default_workers() -> i32 {
    2
}
pub(super) fn default_image_version() -> String {
    "2.2-debian12".to_owned()
}
pub(super) fn default_max_lifetime() -> String {
    "2h".to_owned()
}
pub(super) fn default_bq_location() -> String {
    "asia-southeast2".to_owned()
}
pub(super) fn default_ack_deadline_seconds() -> i32 {
    60
}
pub(super) fn default_index() -> String {
    "cilvest-tweets".to_owned()
}
pub(super) fn default_es_version() -> String {
    "8.17.0".to_owned()
}
pub(super) fn default_es_nodes() -> i32 {
    1
}
pub(super) fn default_es_storage() -> String {
    "10Gi".to_owned()
}
