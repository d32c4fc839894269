//! Unit tests of the X source.

use super::{http::problem_detail, *};

#[test]
fn token_never_prints() {
    let token = BearerToken::new(" AAAAsecret-token\n").expect("valid token");
    assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
    assert_eq!(token.to_string(), "<redacted>");
    assert!(!format!("{:?}", token.header()).contains("secret"));
    assert!(matches!(BearerToken::new("  "), Err(SourceError::InvalidToken)));
    assert!(matches!(BearerToken::new("bad\ntoken"), Err(SourceError::InvalidToken)));
}

#[test]
fn backoff_grows_to_its_cap_with_jitter() {
    let policy = RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        configuration: Duration::from_secs(300),
    };
    for (attempt, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
        let wait = policy.backoff(attempt);
        let full = Duration::from_secs(full);
        assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait:?}");
    }
}

#[test]
fn snowflake_ids_carry_their_time() {
    // 1850000000000000001 was posted on 2024-10-26 (UTC).
    let time = tweet::snowflake_time(1_850_000_000_000_000_001).expect("time");
    assert_eq!(time.format("%Y-%m-%d").to_string(), "2024-10-26");
}

#[test]
fn problem_details_are_summarised() {
    assert_eq!(
        problem_detail(br#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#),
        "Unauthorized"
    );
    assert_eq!(
        problem_detail(
            br#"{"errors":[{"parameters":{"query":["x"]},"message":"Invalid lang operator"}],"title":"Invalid Request"}"#
        ),
        "Invalid lang operator"
    );
    assert_eq!(problem_detail(b"oops"), "oops");
}
