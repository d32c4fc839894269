//! The demo's tweet source: a deterministic generator of Indonesian tweets about saham, reksadana and sukuk, in the
//! X API v2 shape the producer receives, wrapped in the envelopes it publishes.
//!
//! Deterministic on purpose: the same `--seed`, count and days give the same tweets, ids and report, so a newcomer
//! can compare numbers with the README and a test can pin them. The mix imitates what the recent-search query
//! returns: mostly Indonesian, some English, retweets, the producer's overlap duplicates, tweets that only matched
//! through a URL, a working-day hour curve and a few very active accounts.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::tweet::Envelope;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub tweets: u64,
    /// The first local day.
    pub start: NaiveDate,
    pub days: u32,
    pub time_zone: Tz,
}

/// splitmix64: tiny, fast and good enough for sample data; written here so the output never changes with a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant for sample data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given relative weights.
    fn weighted(&mut self, cumulative: &[u64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(1);
        let x = self.below(total);
        cumulative.partition_point(|&c| c <= x)
    }
}

/// Relative tweet volume per local hour: quiet nights, the IDX session (09:00-16:00) and an evening peak.
const HOUR_WEIGHTS: [u64; 24] = [
    8, 5, 3, 2, 2, 4, 10, 18, 30, 46, 50, 44, 36, 40, 42, 38, 30, 26, 30, 40, 46, 42, 30, 16,
];

const SAHAM: &[&str] = &[
    "Hari ini IHSG naik, saham {ticker} jadi incaran",
    "#saham {ticker} breakout, target {price} 🚀",
    "sahamnya {ticker} lagi diskon nih, serok atau tunggu?",
    "Pemula tanya: beli saham {ticker} minimal berapa lot ya? @{user}",
    "Dividen saham {ticker} cair minggu depan 💰",
    "IHSG merah lagi 📉 saham perbankan pada turun\nsabar ya kawan",
    "Belajar analisa teknikal saham sebelum trading! https://t.co/{code}",
    "SAHAM {ticker} ARA hari ini!!! 🔥🔥",
    "portofolio saham gue minus 20% 😭 #saham #IHSG",
    "Kapan waktu terbaik jual saham? Thread 🧵👇",
];
const REKSADANA: &[&str] = &[
    "reksa dana pasar uang cocok buat pemula",
    "Mulai investasi reksadana dari 10rb aja lewat aplikasi {app}",
    "#reksadana saham vs obligasi, mana yang lebih cocok buat dana darurat?",
    "NAB reksadana gue naik 3% bulan ini 😍",
    "Reksa Dana indeks itu apa sih? Yuk baca: https://t.co/{code}",
    "tips: diversifikasi reksadana pendapatan tetap & pasar uang\n#investasi",
];
const SUKUK: &[&str] = &[
    "sukuk ritel SR{series} sudah bisa dipesan",
    "Imbal hasil sukuk tabungan ST{series} {price}% per tahun, lumayan 👍",
    "#sukuk negara aman, dijamin pemerintah. Minimal pembelian 1 juta",
    "Sukuk vs deposito: mana yang lebih untung? @{user}",
    "Masa penawaran SUKUK RITEL berakhir besok!! https://t.co/{code}",
];
/// Mentions of two instruments at once.
const MIXED: &[&str] = &[
    "Alokasi gue: 50% saham, 30% reksadana, 20% sukuk",
    "Lagi bandingin sukuk ritel sama reksa dana pendapatan tetap 🤔",
    "saham {ticker} atau reksadana indeks? bingung 😅",
];
/// Matched by X through the URL only: cleaning removes it, so the tweet is kept but mentions no keyword.
const URL_ONLY: &[&str] = &[
    "Baca selengkapnya di https://www.idx.co.id/id/saham/{ticker}",
    "Info lengkap https://kemenkeu.go.id/sukuk-ritel",
];
const ENGLISH: &[&str] = &[
    "Indonesian saham {ticker} looks undervalued right now",
    "Sukuk issuance in Indonesia hit a record this year",
    "What is a reksadana? Indonesian mutual funds explained https://t.co/{code}",
];
const TICKERS: &[&str] = &[
    "BBCA", "BBRI", "TLKM", "ASII", "BMRI", "GOTO", "ANTM", "UNVR", "ADRO", "BBNI",
];
const APPS: &[&str] = &["Bibit", "Bareksa", "Ajaib", "Pluang"];
const FIRST: &[&str] = &[
    "budi", "sari", "agus", "dewi", "rizky", "putri", "andi", "ayu", "fajar", "nina", "eko", "wulan", "dimas", "intan",
    "yoga", "rina", "bayu", "tika", "hendra", "lestari",
];
const LAST: &[&str] = &[
    "invest", "saham", "trader", "cuan", "_id", "santoso", "wijaya", "pratama", "88", "_jkt", "syariah", "finance",
];

/// Distinct authors in the pool; with the Zipf-like weights below the top ten write about a third of the tweets.
const AUTHORS: usize = 600;

/// X's snowflake epoch, in Unix milliseconds.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// Generate `plan.tweets` raw records (JSON envelopes), in the order the producer would publish them.
pub fn generate(plan: &Plan) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(plan.seed);
    let authors: Vec<String> = (0..AUTHORS)
        .map(|n| {
            // A stride coprime with the pool size spreads the popular ranks over every name pattern.
            let i = (n * 7 + 3) % AUTHORS;
            let first = FIRST[i % FIRST.len()];
            let last = LAST[(i / FIRST.len()) % LAST.len()];
            let suffix = i / (FIRST.len() * LAST.len());
            if suffix == 0 {
                format!("{first}{last}")
            } else {
                format!("{first}{last}{suffix}")
            }
        })
        .collect();
    // Zipf-like (1/(k+3)) weights, scaled to integers, as a cumulative table for weighted draws: a few accounts
    // post a lot, most post a little.
    let mut author_cdf = Vec::with_capacity(AUTHORS);
    let mut total = 0u64;
    for k in 1..=AUTHORS as u64 {
        total += 1_000_000 / (k + 3);
        author_cdf.push(total);
    }
    let mut hour_cdf = Vec::with_capacity(24);
    let mut total = 0u64;
    for weight in HOUR_WEIGHTS {
        total += weight;
        hour_cdf.push(total);
    }
    let days = u64::from(plan.days.max(1));
    let mut records: Vec<Vec<u8>> = Vec::with_capacity(plan.tweets as usize);
    let mut originals: Vec<(String, String)> = Vec::new();
    let mut sequence = 0u64;
    while (records.len() as u64) < plan.tweets {
        // The producer's overlapping polls deliver some tweets twice.
        if !records.is_empty() && rng.chance(3) {
            let again = records[rng.below(records.len() as u64) as usize].clone();
            records.push(again);
            continue;
        }
        let day = plan.start + chrono::Days::new(rng.below(days));
        let hour = rng.weighted(&hour_cdf) as u32;
        let second_of_hour = rng.below(3600) as u32;
        let created_at = local_time(plan.time_zone, day, hour, second_of_hour);
        sequence += 1;
        let id = snowflake(created_at, sequence);
        let username = authors[rng.weighted(&author_cdf)].clone();
        let roll = rng.below(100);
        let (text, lang, retweet_of) = if roll < 10 && !originals.is_empty() {
            let (original_id, original_text) = rng.pick(&originals).clone();
            let original_author = rng.pick(&authors).clone();
            (
                format!("RT @{original_author}: {original_text}"),
                "in",
                Some(original_id),
            )
        } else if roll < 20 {
            let template = *rng.pick(ENGLISH);
            (fill(&mut rng, template, &authors), "en", None)
        } else {
            let templates = match rng.below(100) {
                0..=49 => SAHAM,
                50..=74 => REKSADANA,
                75..=91 => SUKUK,
                92..=97 => MIXED,
                _ => URL_ONLY,
            };
            let template = *rng.pick(templates);
            let text = fill(&mut rng, template, &authors);
            if originals.len() < 500 {
                originals.push((id.to_string(), text.clone()));
            }
            (text, "in", None)
        };
        let mut tweet = json!({
            "id": id.to_string(),
            "text": text,
            "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lang": lang,
            "author_id": author_id(&username).to_string(),
            "edit_history_tweet_ids": [id.to_string()],
        });
        if let (Some(original), Some(object)) = (retweet_of, tweet.as_object_mut()) {
            object.insert(
                "referenced_tweets".to_owned(),
                json!([{"type": "retweeted", "id": original}]),
            );
        }
        let fetched_at = created_at + Duration::seconds(30 + rng.below(60) as i64);
        records.push(envelope(tweet, username, fetched_at));
    }
    records
}

fn envelope(tweet: Value, username: String, fetched_at: DateTime<Utc>) -> Vec<u8> {
    serde_json::to_vec(&Envelope::new(tweet, Some(username), fetched_at)).unwrap_or_default()
}

/// Fill a template's placeholders.
fn fill(rng: &mut Rng, template: &str, authors: &[String]) -> String {
    let mut text = template.to_owned();
    for (placeholder, value) in [
        ("{ticker}", (*rng.pick(TICKERS)).to_owned()),
        ("{price}", (1 + rng.below(90)).to_string()),
        ("{series}", format!("{:03}", 15 + rng.below(10))),
        ("{app}", (*rng.pick(APPS)).to_owned()),
        ("{user}", rng.pick(authors).clone()),
        ("{code}", format!("{:010x}", rng.next_u64() & 0xff_ffff_ffff)),
    ] {
        text = text.replace(placeholder, &value);
    }
    text
}

/// A local wall-clock time in `zone`, as UTC. Zones with daylight saving have gaps and folds: take the earliest
/// valid reading, or an hour later inside a gap.
fn local_time(zone: Tz, day: NaiveDate, hour: u32, second_of_hour: u32) -> DateTime<Utc> {
    let naive = day
        .and_hms_opt(hour, second_of_hour / 60, second_of_hour % 60)
        .unwrap_or_default();
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(naive + Duration::hours(1))).earliest())
        .map_or_else(|| naive.and_utc(), |local| local.with_timezone(&Utc))
}

/// A snowflake id for `at`: its time bits make numeric order time order, as X's ids do.
fn snowflake(at: DateTime<Utc>, sequence: u64) -> u64 {
    let millis = (at.timestamp_millis() - SNOWFLAKE_EPOCH_MS).max(0) as u64;
    (millis << 22) | (sequence & 0x3F_FFFF)
}

fn author_id(username: &str) -> u64 {
    // FNV-1a: a stable number per username.
    username.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tweets: u64) -> Plan {
        Plan {
            seed: 7,
            tweets,
            start: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            days: 3,
            time_zone: chrono_tz::Asia::Jakarta,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_tweets() {
        assert_eq!(generate(&plan(500)), generate(&plan(500)));
        let other = Plan { seed: 8, ..plan(500) };
        assert_ne!(generate(&plan(500)), generate(&other));
    }

    #[test]
    fn every_record_is_an_envelope_within_the_days() {
        let records = generate(&plan(2000));
        assert_eq!(records.len(), 2000);
        let mut ids = std::collections::HashSet::new();
        let mut retweets = 0;
        for record in &records {
            let parsed = crate::tweet::parse(record).expect("envelope");
            let day = parsed
                .tweet
                .created_at
                .with_timezone(&chrono_tz::Asia::Jakarta)
                .date_naive();
            assert!((plan(0).start..plan(0).start + chrono::Days::new(3)).contains(&day));
            ids.insert(parsed.tweet.id.clone());
            retweets += usize::from(crate::transform::is_retweet(&parsed.tweet));
        }
        assert!(ids.len() < records.len(), "some duplicates");
        assert!((100..300).contains(&retweets), "{retweets} retweets");
    }
}
