//! A page of the log as `verify` and the Merkle proofs check it, hashed where it is read.
//!
//! The backends build a [`CheckedPage`] row by row from what the database driver holds, and
//! the log's read-ahead hands such pages to `verify` and `proofs`; so the page sits below all
//! three, and none of them needs another's internals.

use crate::canonical::{chain_hash_of_bytes, Fields};
use crate::merkle::{self, Hash};

/// What verify needs of a page of the log, and what can be checked of the page alone: each
/// event's position, stream and revision, its Merkle leaf hash, and whether each event after
/// the first links to the one before it in the page. Built row by row where the rows are read
/// ([`CheckedPage::push`]), without keeping the events themselves: straight from the rows
/// as the database driver holds them (`sqlite_bulk::check_page`, `postgres::check_page`).
#[derive(Debug, Default)]
pub(crate) struct CheckedPage {
    check: PageCheck,
    rows: Vec<CheckedRow>,
    /// The rows' streams, one after another; each row knows where its own ends.
    streams: String,
    /// The first event's canonical bytes and stored hash: its link to the page before is
    /// checked by the walk, which alone holds that page's last hash.
    first: Vec<u8>,
    first_hash: Hash,
    /// The last event's stored hash, which the next event links to.
    last_hash: Option<Hash>,
    /// The buffer each event's canonical bytes are built in, reused from row to row.
    scratch: Vec<u8>,
}

/// What a [`CheckedPage`] computes of each row: the chain's links too, for `verify`, or the
/// Merkle leaves alone, for proofs (one hash a row instead of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum PageCheck {
    #[default]
    LinksAndLeaves,
    Leaves,
}

/// What a [`CheckedPage`] keeps of one event.
#[derive(Debug)]
pub(crate) struct CheckedRow {
    pub position: u64,
    pub revision: u64,
    pub leaf: Hash,
    /// The chain hash of this event on the stored hash of the event before it in the page is
    /// its own stored hash. Left `false` for the first: the walk checks it (see
    /// [`CheckedPage::first_links_to`]); and for every row of a page of [`PageCheck::Leaves`].
    pub linked: bool,
    /// Where this row's stream ends in the page's `streams`.
    stream_end: usize,
}

impl CheckedPage {
    pub(crate) fn new(rows: usize, check: PageCheck) -> Self {
        Self { check, rows: Vec::with_capacity(rows), ..Self::default() }
    }

    /// Checks the page's next event, with the hash stored with it, and keeps what the walk
    /// needs of it.
    pub(crate) fn push(&mut self, event: Fields<'_>, hash: &Hash) {
        // The bytes are built once and hashed twice: cheaper than feeding each hash the
        // fields one by one (docs/benchmarks-history.md, 36a17b5, 2026-11-30).
        event.write_bytes(&mut self.scratch);
        let linked = match self.last_hash {
            _ if self.check == PageCheck::Leaves => false,
            Some(previous) => chain_hash_of_bytes(&previous, &self.scratch) == *hash,
            None => {
                self.first.clone_from(&self.scratch);
                self.first_hash = *hash;
                false
            }
        };
        self.streams.push_str(event.stream);
        self.rows.push(CheckedRow {
            position: event.position,
            revision: event.revision,
            leaf: merkle::leaf_hash(&self.scratch),
            linked,
            stream_end: self.streams.len(),
        });
        self.last_hash = Some(*hash);
    }

    /// The rows, in position order.
    pub(crate) fn rows(&self) -> &[CheckedRow] {
        &self.rows
    }

    /// The stream of the row at `index`.
    pub(crate) fn stream(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.rows[before].stream_end);
        &self.streams[start..self.rows[index].stream_end]
    }

    /// Whether the page's first event links to `previous`, the stored hash of the event
    /// before the page: the one link a page cannot check alone.
    pub(crate) fn first_links_to(&self, previous: &Hash) -> bool {
        chain_hash_of_bytes(previous, &self.first) == self.first_hash
    }

    /// The last event's stored hash, which the next page's first event links to.
    pub(crate) fn last_hash(&self) -> Option<Hash> {
        self.last_hash
    }

    /// Each row's position and Merkle leaf hash, in order.
    pub(crate) fn into_leaves(self) -> impl Iterator<Item = (u64, Hash)> {
        self.rows.into_iter().map(|row| (row.position, row.leaf))
    }

    pub(crate) fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|row| row.position)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::canonical::{canonical_bytes, chain_hash, leaf_hash, GENESIS_HASH};
    use crate::record::RecordedEvent;

    impl CheckedPage {
        /// The page of `events`, checked as [`CheckedPage::push`] checks them.
        fn of_events(events: &[RecordedEvent]) -> Self {
            let mut page = Self::new(events.len(), PageCheck::LinksAndLeaves);
            for event in events {
                page.push(Fields::from(event), &event.hash);
            }
            page
        }
    }

    #[test]
    fn a_checked_page_keeps_each_events_stream_leaf_and_link() {
        let mut previous = GENESIS_HASH;
        let mut events = Vec::new();
        for (position, stream) in (1..).zip(["mandate-a", "ledger-一", "mandate-a", "request-b"]) {
            let mut event = RecordedEvent {
                position,
                stream: stream.into(),
                revision: position / 3,
                event_id: Uuid::from_u128(u128::from(position)),
                event_type: "Happened".into(),
                event_version: 1,
                data: format!("{{\"n\":{position}}}"),
                metadata: "{}".into(),
                recorded_at: Utc::now(),
                hash: [0; 32],
            };
            event.hash = chain_hash(&previous, &event);
            previous = event.hash;
            events.push(event);
        }
        events[2].hash[0] ^= 1;
        let page = CheckedPage::of_events(&events);
        assert_eq!(page.last_position(), Some(4));
        assert_eq!(page.first, canonical_bytes(&events[0]));
        assert_eq!(page.first_hash, events[0].hash);
        assert_eq!(page.last_hash, Some(events[3].hash));
        for (index, (row, event)) in page.rows.iter().zip(&events).enumerate() {
            assert_eq!(page.stream(index), event.stream);
            assert_eq!(
                (row.position, row.revision, row.leaf),
                (event.position, event.revision, leaf_hash(event))
            );
        }
        // The first is the walk's to link; the third's stored hash was changed, so neither it
        // nor the fourth, which links to the changed hash, holds.
        let linked: Vec<bool> = page.rows.iter().map(|row| row.linked).collect();
        assert_eq!(linked, [false, true, false, false]);
        assert_eq!(CheckedPage::of_events(&[]).last_position(), None);
        // Leaves alone: the same leaves, no link.
        let mut leaves = CheckedPage::new(events.len(), PageCheck::Leaves);
        events.iter().for_each(|event| leaves.push(Fields::from(event), &event.hash));
        assert!(leaves.rows.iter().all(|row| !row.linked));
        assert!(leaves.into_leaves().eq(page.into_leaves()));
    }
}
