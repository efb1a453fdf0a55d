//! The canonical bytes of an event and the hash chain over them.
//!
//! `docs/audit-format.md` specifies these bytes for independent verifiers; change neither
//! without a new format version there.

use sha2::{Digest, Sha256};

use crate::record::RecordedEvent;

/// The hash the first event chains from: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The canonical bytes of an event: every field that the chain protects, length-prefixed so
/// that no two different events share the same bytes.
///
/// ```text
/// position      u64, big-endian
/// stream        u32 big-endian byte length, then UTF-8
/// revision      u64, big-endian
/// event_id      16 bytes (RFC 9562 byte order)
/// event_type    u32 big-endian byte length, then UTF-8
/// event_version u32, big-endian
/// data          u32 big-endian byte length, then the JSON text's bytes
/// metadata      u32 big-endian byte length, then the JSON text's bytes
/// ```
pub fn canonical_bytes(event: &RecordedEvent) -> Vec<u8> {
    let capacity = 8
        + 4
        + event.stream.len()
        + 8
        + 16
        + 4
        + event.event_type.len()
        + 4
        + 4
        + event.data.len()
        + 4
        + event.metadata.len();
    let mut bytes = Vec::with_capacity(capacity);
    bytes.extend_from_slice(&event.position.to_be_bytes());
    push_text(&mut bytes, event.stream.as_bytes());
    bytes.extend_from_slice(&event.revision.to_be_bytes());
    bytes.extend_from_slice(event.event_id.as_bytes());
    push_text(&mut bytes, event.event_type.as_bytes());
    bytes.extend_from_slice(&event.event_version.to_be_bytes());
    push_text(&mut bytes, event.data.as_bytes());
    push_text(&mut bytes, event.metadata.as_bytes());
    debug_assert_eq!(bytes.len(), capacity);
    bytes
}

/// The chain hash of an event: SHA-256(previous event's hash ‖ canonical bytes).
pub fn chain_hash(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    update_canonical(&mut hasher, event);
    hasher.finalize().into()
}

/// The Merkle leaf hash of an event: SHA-256(0x00 ‖ canonical bytes), as
/// `merkle::leaf_hash(&canonical_bytes(event))`.
pub fn leaf_hash(event: &RecordedEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    update_canonical(&mut hasher, event);
    hasher.finalize().into()
}

/// Feeds `hasher` the canonical bytes of `event`, field by field, without building them.
fn update_canonical(hasher: &mut Sha256, event: &RecordedEvent) {
    hasher.update(event.position.to_be_bytes());
    hasher.update(text_length(event.stream.as_bytes()));
    hasher.update(event.stream.as_bytes());
    hasher.update(event.revision.to_be_bytes());
    hasher.update(event.event_id.as_bytes());
    hasher.update(text_length(event.event_type.as_bytes()));
    hasher.update(event.event_type.as_bytes());
    hasher.update(event.event_version.to_be_bytes());
    hasher.update(text_length(event.data.as_bytes()));
    hasher.update(event.data.as_bytes());
    hasher.update(text_length(event.metadata.as_bytes()));
    hasher.update(event.metadata.as_bytes());
}

fn text_length(text: &[u8]) -> [u8; 4] {
    // Texts are bounded by `EVENT_TEXT_BYTES_MAX` long before they reach u32::MAX.
    u32::try_from(text.len()).expect("event texts are far below 4 GiB").to_be_bytes()
}

fn push_text(bytes: &mut Vec<u8>, text: &[u8]) {
    bytes.extend_from_slice(&text_length(text));
    bytes.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn event() -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream: "organisation-00000000-0000-0000-0000-000000000001".into(),
            revision: 0,
            event_id: Uuid::from_u128(0x0102),
            event_type: "OrganisationRegistered".into(),
            event_version: 1,
            data: r#"{"name":"东城区"}"#.into(),
            metadata: "{}".into(),
            recorded_at: Utc::now(),
            hash: [0; 32],
        }
    }

    #[test]
    fn canonical_bytes_follow_the_documented_layout() {
        let bytes = canonical_bytes(&event());
        assert_eq!(&bytes[0..8], &1u64.to_be_bytes());
        assert_eq!(&bytes[8..12], &49u32.to_be_bytes());
        assert_eq!(&bytes[12..61], event().stream.as_bytes());
        assert_eq!(&bytes[61..69], &0u64.to_be_bytes());
        assert_eq!(&bytes[69..85], Uuid::from_u128(0x0102).as_bytes());
        assert_eq!(bytes.len(), 8 + 4 + 49 + 8 + 16 + 4 + 22 + 4 + 4 + 20 + 4 + 2);
    }

    #[test]
    fn hashes_are_of_the_canonical_bytes() {
        let mut events = vec![event()];
        let mut long = event();
        long.position = u64::MAX - 7;
        long.revision = 1 << 40;
        long.event_version = 0x0102_0304;
        long.stream = format!("request-{}", "é".repeat(300));
        long.data = format!("[\"{}\"]", "数据".repeat(10_000));
        long.metadata = String::new();
        events.push(long);
        let mut empty = event();
        empty.data = String::new();
        empty.event_type = String::new();
        events.push(empty);
        for event in &events {
            let bytes = canonical_bytes(event);
            for previous in [GENESIS_HASH, [0xa5; 32]] {
                let mut hasher = Sha256::new();
                hasher.update(previous);
                hasher.update(&bytes);
                let expected: [u8; 32] = hasher.finalize().into();
                assert_eq!(chain_hash(&previous, event), expected);
            }
            assert_eq!(leaf_hash(event), crate::merkle::leaf_hash(&bytes));
        }
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let original = chain_hash(&GENESIS_HASH, &event());
        let mut changed = event();
        changed.data = r#"{"name":"西城区"}"#.into();
        assert_ne!(chain_hash(&GENESIS_HASH, &changed), original);
        let mut moved = event();
        moved.position = 2;
        assert_ne!(chain_hash(&GENESIS_HASH, &moved), original);
        assert_ne!(chain_hash(&[1; 32], &event()), original, "the chain covers the previous hash");
        // The time of commit is not part of the chain: replaying into another store keeps hashes.
        let mut later = event();
        later.recorded_at = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(chain_hash(&GENESIS_HASH, &later), original);
    }
}
