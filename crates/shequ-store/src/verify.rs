use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::TryStreamExt;

use crate::canonical::{chain_hash_of_bytes, Fields, GENESIS_HASH};
use crate::error::StoreError;
use crate::log::{EventLog, LogHead};
use crate::merkle::{self, Hash, RootBuilder};
#[cfg(test)]
use crate::record::RecordedEvent;

/// Events read per page while verifying.
const VERIFY_PAGE_EVENTS: u32 = 5_000;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked and found intact.
    pub events: u64,
    pub head: LogHead,
    /// The first position that does not hold what the chain says it should.
    pub failure: Option<VerifyFailure>,
    /// The Merkle root (RFC 6962) of the `events` checked and found intact.
    pub root: Hash,
    /// The Merkle roots at the tree sizes asked for, of those the intact events reach.
    pub roots: BTreeMap<u64, Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub position: u64,
    pub reason: String,
}

impl EventLog {
    /// Walks the whole log in position order and recomputes the hash chain. Finds a row that
    /// was altered (its hash no longer matches), deleted (a gap in positions, or a head past
    /// the last row), inserted or renumbered (a position or revision out of sequence, or a
    /// chain that no longer links). Calls `progress` with the count checked after each page.
    /// The report carries the Merkle root of the events found intact.
    pub async fn verify(&self, progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        self.verify_with_roots(&BTreeSet::new(), progress).await
    }

    /// [`EventLog::verify`], which also builds the Merkle tree as it walks and reports its
    /// roots at `tree_sizes` (those the intact events reach), all in one reading of the log:
    /// how signed checkpoints are checked.
    ///
    /// Each page's chain links and leaf hashes are computed where it was read, row by row as
    /// the database driver holds it (see [`CheckedPage`]), so pages read at once are hashed at
    /// once; this walk then checks positions and revisions, the first link of each page, and
    /// builds the tree.
    pub async fn verify_with_roots(
        &self,
        tree_sizes: &BTreeSet<u64>,
        mut progress: impl FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        let mut previous_hash = GENESIS_HASH;
        let mut expected_position = 1;
        // Each stream's last revision; a stream's name is copied once, when first seen.
        let mut stream_revisions: HashMap<Box<str>, u64> = HashMap::new();
        let mut tree = RootBuilder::new();
        let mut roots = BTreeMap::new();
        if tree_sizes.contains(&0) {
            // The empty tree: a checkpoint signed on a new log.
            roots.insert(0, tree.root());
        }
        let mut checked = 0;
        let fail = |checked, head, position, reason: String, tree: &RootBuilder, roots| {
            let failure = Some(VerifyFailure { position, reason });
            Ok(VerifyReport { events: checked, head, failure, root: tree.root(), roots })
        };
        // Appends may go on while we walk: walk, read the head, and walk again while the head
        // is ahead of us and there is more to read.
        loop {
            let mut pages = std::pin::pin!(self.checked_pages(
                expected_position,
                VERIFY_PAGE_EVENTS,
                PageCheck::LinksAndLeaves
            ));
            loop {
                let page = match pages.try_next().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(StoreError::Corrupt { position, reason }) => {
                        return fail(checked, self.head().await?, position, reason, &tree, roots);
                    }
                    Err(error) => return Err(error),
                };
                for (index, row) in page.rows.iter().enumerate() {
                    // A page's first event links to the previous page's last, which only this
                    // walk holds; the others were checked against the event before them in
                    // the page by `CheckedPage::push`.
                    let linked = match index {
                        0 => chain_hash_of_bytes(&previous_hash, &page.first) == page.first_hash,
                        _ => row.linked,
                    };
                    let stream = page.stream(index);
                    let last_revision = stream_revisions.get_mut(stream);
                    let failure = check_row(row, stream, expected_position, linked, last_revision.as_deref());
                    if let Some((position, reason)) = failure {
                        return fail(checked, self.head().await?, position, reason, &tree, roots);
                    }
                    match last_revision {
                        Some(last) => *last = row.revision,
                        None => {
                            stream_revisions.insert(stream.into(), row.revision);
                        }
                    }
                    tree.push(row.leaf);
                    if tree_sizes.contains(&tree.size()) {
                        roots.insert(tree.size(), tree.root());
                    }
                    expected_position += 1;
                    checked += 1;
                }
                if let Some(last) = page.last_hash {
                    previous_hash = last;
                }
                progress(checked);
            }
            let head = self.head().await?;
            let last_position = expected_position - 1;
            if head.position > last_position {
                match self.read_all(expected_position, 1).await?.is_empty() {
                    false => continue,
                    true => {
                        let reason = format!("missing: the log head is at {}", head.position);
                        return fail(checked, head, expected_position, reason, &tree, roots);
                    }
                }
            }
            progress(checked);
            if head.position < last_position {
                let reason = "past the log head: not written by a commit".to_owned();
                return fail(checked, head, head.position + 1, reason, &tree, roots);
            }
            if head.hash != previous_hash {
                let reason = "the log head's hash does not match the last event".to_owned();
                return fail(checked, head, last_position, reason, &tree, roots);
            }
            return Ok(VerifyReport { events: checked, head, failure: None, root: tree.root(), roots });
        }
    }
}

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

#[derive(Debug)]
struct CheckedRow {
    position: u64,
    revision: u64,
    stream_end: usize,
    leaf: Hash,
    /// The chain hash of this event on the stored hash of the event before it in the page is
    /// its own stored hash. Left `false` for the first: the walk checks it; and for every row
    /// of a page of [`PageCheck::Leaves`].
    linked: bool,
}

impl CheckedPage {
    pub(crate) fn new(rows: usize, check: PageCheck) -> Self {
        Self { check, rows: Vec::with_capacity(rows), ..Self::default() }
    }

    /// The page of `events`, checked as [`CheckedPage::push`] checks them.
    #[cfg(test)]
    fn of_events(events: &[RecordedEvent]) -> Self {
        let mut page = Self::new(events.len(), PageCheck::LinksAndLeaves);
        for event in events {
            page.push(Fields::from(event), &event.hash);
        }
        page
    }

    /// Checks the page's next event, with the hash stored with it, and keeps what the walk
    /// needs of it.
    pub(crate) fn push(&mut self, event: Fields<'_>, hash: &Hash) {
        // The bytes are built once and hashed twice: cheaper than feeding each hash the
        // fields one by one (BENCHMARKS.md, issue 5, session 13).
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
            stream_end: self.streams.len(),
            leaf: merkle::leaf_hash(&self.scratch),
            linked,
        });
        self.last_hash = Some(*hash);
    }

    /// Each row's position and Merkle leaf hash, in order.
    pub(crate) fn into_leaves(self) -> impl Iterator<Item = (u64, Hash)> {
        self.rows.into_iter().map(|row| (row.position, row.leaf))
    }

    pub(crate) fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|row| row.position)
    }

    fn stream(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.rows[before].stream_end);
        &self.streams[start..self.rows[index].stream_end]
    }
}

/// Checks one event against what the chain so far says it must be: `last_revision` is its
/// stream's revision before it, if the stream was seen.
fn check_row(
    row: &CheckedRow,
    stream: &str,
    expected_position: u64,
    linked: bool,
    last_revision: Option<&u64>,
) -> Option<(u64, String)> {
    if row.position != expected_position {
        let reason = format!("expected position {expected_position}, found {}", row.position);
        return Some((expected_position.min(row.position), reason));
    }
    let expected_revision = last_revision.map_or(0, |revision| revision + 1);
    if row.revision != expected_revision {
        let reason =
            format!("stream `{stream}` expected revision {expected_revision}, found {}", row.revision);
        return Some((row.position, reason));
    }
    if !linked {
        return Some((row.position, "the stored hash does not match the event".to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::canonical::{canonical_bytes, chain_hash, leaf_hash};

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
