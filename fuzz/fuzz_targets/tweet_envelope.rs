//! Arbitrary bytes as a Kafka record or a raw lake line: `tweet::parse` returns a tweet or an error, never panics,
//! and what it accepts has a decimal id that `id_number` reads.
#![no_main]

use cilvest_fuzz::tweet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = tweet::parse(data) {
        assert!(
            tweet::id_number(&parsed.tweet.id).is_some(),
            "accepted id {:?}",
            parsed.tweet.id
        );
    }
});
