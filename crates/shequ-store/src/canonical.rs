//! The canonical bytes of an event and the hash chain over them.
//!
//! `docs/audit-format.md` specifies these bytes for independent verifiers; change neither
//! without a new format version there.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
    Fields::from(event).bytes()
}

/// The chain hash of an event: SHA-256(previous event's hash ‖ canonical bytes).
pub fn chain_hash(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    Fields::from(event).chain_hash(previous)
}

/// The Merkle leaf hash of an event: SHA-256(0x00 ‖ canonical bytes), as
/// `merkle::leaf_hash(&canonical_bytes(event))`.
pub fn leaf_hash(event: &RecordedEvent) -> [u8; 32] {
    Fields::from(event).leaf_hash()
}

/// The chain hash of an event given its canonical bytes.
pub(crate) fn chain_hash_of_bytes(previous: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// The fields of an event that its canonical bytes hold, borrowed from wherever the event
/// was read (a [`RecordedEvent`], or a database row as it lies in the driver's memory).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub event_version: u32,
    pub data: &'a str,
    pub metadata: &'a str,
}

impl<'a> From<&'a RecordedEvent> for Fields<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
        Fields {
            position: event.position,
            stream: &event.stream,
            revision: event.revision,
            event_id: event.event_id,
            event_type: &event.event_type,
            event_version: event.event_version,
            data: &event.data,
            metadata: &event.metadata,
        }
    }
}

impl Fields<'_> {
    /// The event these fields were read from, owning its texts, with what the canonical
    /// bytes leave out: the commit time and the stored hash.
    pub(crate) fn to_event(self, recorded_at: DateTime<Utc>, hash: [u8; 32]) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            stream: self.stream.to_owned(),
            revision: self.revision,
            event_id: self.event_id,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version,
            data: self.data.to_owned(),
            metadata: self.metadata.to_owned(),
            recorded_at,
            hash,
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_bytes(&mut bytes);
        bytes
    }

    /// Replaces what `bytes` holds with the canonical bytes: a caller that hashes many events
    /// keeps one buffer for all of them, and hashes each event's bytes as one slice.
    pub(crate) fn write_bytes(&self, bytes: &mut Vec<u8>) {
        let length = 8
            + 4
            + self.stream.len()
            + 8
            + 16
            + 4
            + self.event_type.len()
            + 4
            + 4
            + self.data.len()
            + 4
            + self.metadata.len();
        bytes.clear();
        bytes.reserve(length);
        bytes.extend_from_slice(&self.position.to_be_bytes());
        push_text(bytes, self.stream.as_bytes());
        bytes.extend_from_slice(&self.revision.to_be_bytes());
        bytes.extend_from_slice(self.event_id.as_bytes());
        push_text(bytes, self.event_type.as_bytes());
        bytes.extend_from_slice(&self.event_version.to_be_bytes());
        push_text(bytes, self.data.as_bytes());
        push_text(bytes, self.metadata.as_bytes());
        debug_assert_eq!(bytes.len(), length);
    }

    pub(crate) fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        self.update(&mut hasher);
        hasher.finalize().into()
    }

    pub(crate) fn leaf_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([0x00]);
        self.update(&mut hasher);
        hasher.finalize().into()
    }

    /// Feeds `hasher` the canonical bytes, field by field, without building them.
    fn update(&self, hasher: &mut Sha256) {
        hasher.update(self.position.to_be_bytes());
        hasher.update(text_length(self.stream.as_bytes()));
        hasher.update(self.stream.as_bytes());
        hasher.update(self.revision.to_be_bytes());
        hasher.update(self.event_id.as_bytes());
        hasher.update(text_length(self.event_type.as_bytes()));
        hasher.update(self.event_type.as_bytes());
        hasher.update(self.event_version.to_be_bytes());
        hasher.update(text_length(self.data.as_bytes()));
        hasher.update(self.data.as_bytes());
        hasher.update(text_length(self.metadata.as_bytes()));
        hasher.update(self.metadata.as_bytes());
    }
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
