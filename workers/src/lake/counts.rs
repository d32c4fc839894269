//! Counted volumes in the lake: `counts/dt=D/<keyword>.ndjson`, one line per hour of local day D, written by the
//! producer's counts mode (`crate::x::counts`) and loaded by the daily job next to the volumes it read.

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde::{Deserialize, Serialize};

/// The lake folder of counted volumes.
pub const COUNTS_PREFIX: &str = "counts";

/// One hour of one keyword, as stored in the lake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CountedHour {
    pub keyword: String,
    /// Start of the hour (UTC).
    pub start: DateTime<Utc>,
    /// The local day and hour of `start` in the pipeline's time zone.
    pub local_date: String,
    pub local_hour: u32,
    pub tweet_count: u64,
    pub fetched_at: DateTime<Utc>,
}

/// `counts/dt=<day>/<keyword>.ndjson`.
pub fn day_path(day: &str, keyword: &str) -> Path {
    Path::from(format!("{COUNTS_PREFIX}/dt={day}/{keyword}.ndjson"))
}

/// The hours of a counts object; lines that do not parse are skipped.
pub fn parse_lines(bytes: &[u8]) -> Vec<CountedHour> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

/// Every counted hour of local day `day`, over all keywords.
pub async fn read_day(lake: &dyn ObjectStore, day: &str) -> object_store::Result<Vec<CountedHour>> {
    let prefix = Path::from(format!("{COUNTS_PREFIX}/dt={day}"));
    let mut hours = Vec::new();
    for path in super::list_paths(lake, &prefix).await? {
        let bytes = lake.get(&path).await?.bytes().await?;
        hours.extend(parse_lines(&bytes).into_iter().filter(|h| h.local_date == day));
    }
    hours.sort_by(|a, b| (&a.keyword, a.start).cmp(&(&b.keyword, b.start)));
    Ok(hours)
}
