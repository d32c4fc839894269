//! Unit tests of `pubsub`.

use super::*;

fn record(id: u64, size: usize) -> Record {
    Record {
        id,
        value: vec![b'x'; size],
    }
}

#[test]
fn publish_requests_stay_under_the_message_and_byte_limits() {
    let many: Vec<Record> = (0..2500).map(|i| record(i, 10)).collect();
    let chunks = publish_chunks(&many);
    assert_eq!(chunks.iter().map(|c| c.len()).collect::<Vec<_>>(), [1000, 1000, 500]);
    let big: Vec<Record> = (0..10).map(|i| record(i, 2 << 20)).collect();
    let chunks = publish_chunks(&big);
    assert!(chunks.len() > 1 && chunks.iter().all(|c| c.len() <= 2));
    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 10);
    assert_eq!(chunks[0][0].id, 0, "order is kept");
    assert!(publish_chunks(&[]).is_empty());
    // One record over the limit still goes out, alone.
    assert_eq!(publish_chunks(&[record(1, 9 << 20)]).len(), 1);
}
