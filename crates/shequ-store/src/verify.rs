use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::TryStreamExt;

use crate::canonical::GENESIS_HASH;
use crate::error::StoreError;
use crate::log::{EventLog, LogHead};
use crate::merkle::{Hash, RootBuilder};
use crate::page::{CheckedRow, PageCheck};

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
    /// the database driver holds it (see `CheckedPage`), so pages read at once are hashed at
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
                for (index, row) in page.rows().iter().enumerate() {
                    // A page's first event links to the previous page's last, which only this
                    // walk holds; the others were checked against the event before them in
                    // the page by `CheckedPage::push`.
                    let linked = match index {
                        0 => page.first_links_to(&previous_hash),
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
                if let Some(last) = page.last_hash() {
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
