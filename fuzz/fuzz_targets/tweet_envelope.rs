//! Arbitrary bytes as a Kafka record or a raw lake line: `tweet::parse` returns a tweet or an error, never panics,
//! and what it accepts has a decimal id that `id_number` reads; the daily transform's borrowed reading
//! (`tweet::parse_view`) gives exactly what `parse` gives, error messages included.
#![no_main]

use cilvest_fuzz::tweet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = tweet::parse(data);
    if let Ok(parsed) = &parsed {
        assert!(
            tweet::id_number(&parsed.tweet.id).is_some(),
            "accepted id {:?}",
            parsed.tweet.id
        );
    }
    match (parsed, tweet::parse_view(data)) {
        (Ok(parsed), Ok(view)) => {
            let tweet = parsed.tweet;
            assert_eq!(view.id, tweet.id);
            assert_eq!(view.text, tweet.text);
            assert_eq!(view.created_at, tweet.created_at);
            assert_eq!(view.lang.as_deref(), tweet.lang.as_deref());
            assert_eq!(view.author_username.as_deref(), parsed.author_username.as_deref());
            assert_eq!(view.references_retweet, tweet.references_retweet());
        }
        (Err(parsed), Err(view)) => assert_eq!(view.to_string(), parsed.to_string()),
        (parsed, view) => panic!("parse gave {parsed:?}, parse_view {view:?}"),
    }
});
