//! Merkle proofs over the log (RFC 6962 / 9162), for inspectors and independent verifiers.
//!
//! A proof needs the roots of a few leaf ranges and of the whole tree. The log's perfect
//! subtrees of `CHUNK_LEAVES` leaves and more are built once, by the first proof or root
//! that reaches them, and kept by the [`EventLog`] (ADR 0019): the positions they cover are
//! never rewritten. A proof then reads the leaves of at most two chunks (the one holding the
//! leaf or the older tree's end, and the tree's last, when either is not whole), and joins
//! O(log n) kept roots.

use std::collections::BTreeMap;
use std::ops::Range;

use futures::{Stream, TryStreamExt};

use crate::error::StoreError;
use crate::log::EventLog;
use crate::merkle::{self, Hash, RootBuilder};
use crate::page::PageCheck;
use crate::subtree_cache::CHUNK_LEAVES;

/// Events read per page while hashing the leaves of many chunks.
const PAGE_EVENTS: u32 = 5_000;

/// An inclusion proof of the event at `position` (leaf index `position - 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub position: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub audit_path: Vec<Hash>,
    pub root_hash: Hash,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub first_root: Hash,
    pub second_root: Hash,
    pub proof: Vec<Hash>,
}

impl EventLog {
    /// The Merkle root of the first `tree_size` events; an error if the log is shorter.
    pub async fn merkle_root(&self, tree_size: u64) -> Result<Hash, StoreError> {
        match tree_size {
            0 => {
                self.within_log(0).await?;
                Ok(RootBuilder::new().root())
            }
            size => Ok(self.range_roots(size, std::slice::from_ref(&(0..size))).await?[0]),
        }
    }

    /// Refuses a tree larger than the log before anything is read.
    async fn within_log(&self, tree_size: u64) -> Result<(), StoreError> {
        let head = self.head().await?.position;
        match tree_size > head {
            true => Err(StoreError::InvalidRequest(format!(
                "the log holds {head} events, fewer than {tree_size}"
            ))),
            false => Ok(()),
        }
    }

    /// The leaf hashes of the log in position order from `from`, each page hashed where it was
    /// read (see `CheckedPage`), so that pages read at once are hashed at once. Leaf `i` is
    /// position `i + 1`: a position missing from the log (a deleted row) is an error, not a
    /// shifted tree.
    fn leaf_hashes(&self, from: u64) -> impl Stream<Item = Result<Hash, StoreError>> + Send + 'static {
        let mut expected = from;
        self.checked_pages(from, PAGE_EVENTS, PageCheck::Leaves)
            .map_ok(|page| futures::stream::iter(page.into_leaves().map(Ok)))
            .try_flatten()
            .and_then(move |(position, leaf)| {
                let found = next_leaf(&mut expected, position, leaf);
                std::future::ready(found)
            })
    }

    /// The inclusion proof of the event at `position` in the tree of the first `tree_size`
    /// events.
    pub async fn inclusion_proof(&self, position: u64, tree_size: u64) -> Result<InclusionProof, StoreError> {
        if position == 0 || position > tree_size {
            return Err(StoreError::InvalidRequest(format!(
                "position {position} is not in a tree of {tree_size}"
            )));
        }
        let index = position - 1;
        let mut ranges = merkle::inclusion_ranges(index, tree_size).expect("the index is in the tree");
        ranges.extend([index..position, 0..tree_size]);
        let mut roots = self.range_roots(tree_size, &ranges).await?;
        let (root_hash, leaf_hash) = (roots.pop().expect("the root"), roots.pop().expect("the leaf"));
        Ok(InclusionProof { position, tree_size, leaf_hash, audit_path: roots, root_hash })
    }

    /// The consistency proof from the tree of the first `first` events to that of the first
    /// `second`.
    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof, StoreError> {
        if first == 0 || first > second {
            return Err(StoreError::InvalidRequest(format!(
                "a consistency proof needs 0 < first ≤ second, not {first}, {second}"
            )));
        }
        let mut ranges = merkle::consistency_ranges(first, second).expect("0 < first ≤ second");
        ranges.extend([0..first, 0..second]);
        let mut roots = self.range_roots(second, &ranges).await?;
        let (second_root, first_root) =
            (roots.pop().expect("the second root"), roots.pop().expect("the first"));
        Ok(ConsistencyProof { first, second, first_root, second_root, proof: roots })
    }

    /// The roots of `ranges` (non-empty, within the tree), in the tree of the first
    /// `tree_size` events: from the kept subtrees, built first as far as the tree's whole
    /// chunks reach, and the leaves of the chunks they do not cover. An error if the log is
    /// shorter (refused before reading if its head is), or has a position missing.
    async fn range_roots(&self, tree_size: u64, ranges: &[Range<u64>]) -> Result<Vec<Hash>, StoreError> {
        self.within_log(tree_size).await?;
        self.build_subtrees(tree_size / CHUNK_LEAVES * CHUNK_LEAVES).await?;
        let mut leaves = BTreeMap::new();
        loop {
            let found: Result<Vec<Hash>, u64> = {
                let subtrees = self.subtree_cache().lock();
                ranges.iter().map(|range| merkle::range_root(range.clone(), &subtrees, &leaves)).collect()
            };
            match found {
                Ok(roots) => return Ok(roots),
                Err(chunk) => {
                    let chunk_leaves = self.chunk_leaves(chunk, tree_size).await?;
                    leaves.insert(chunk, chunk_leaves);
                }
            }
        }
    }

    /// The leaves the kept subtrees cover (a multiple of 1,024): how far a proof's tree can
    /// reach before the proof reads more than two chunks of the log.
    pub fn merkle_leaves_kept(&self) -> u64 {
        self.subtree_cache().lock().leaves()
    }

    /// Builds the kept subtrees over the first `leaves` (a multiple of the chunk), if they do
    /// not reach them yet: reads the log once from where they end. The build runs as a task of
    /// its own, so that a request given up (its client gone, its time out) leaves it going,
    /// for the next.
    async fn build_subtrees(&self, leaves: u64) -> Result<(), StoreError> {
        if self.merkle_leaves_kept() >= leaves {
            return Ok(());
        }
        let log = self.clone();
        match tokio::spawn(async move { log.build_subtrees_here(leaves).await }).await {
            Ok(built) => built,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(_) => Err(StoreError::ReaderStopped),
        }
    }

    async fn build_subtrees_here(&self, leaves: u64) -> Result<(), StoreError> {
        let cache = self.subtree_cache();
        let _building = cache.build_lock().await;
        let built = cache.lock().leaves();
        if built >= leaves {
            return Ok(());
        }
        let mut hashes = std::pin::pin!(self.leaf_hashes(built + 1));
        let mut chunk = RootBuilder::new();
        for _ in built..leaves {
            let Some(leaf) = hashes.try_next().await? else {
                let held = cache.lock().leaves() + chunk.size();
                return Err(StoreError::InvalidRequest(format!(
                    "the log holds {held} events, fewer than {leaves}"
                )));
            };
            chunk.push(leaf);
            if chunk.size() == CHUNK_LEAVES {
                // Each chunk is kept as soon as it is whole: a build that stops half-way (the
                // log closed, a row missing further on) keeps what it built.
                cache.lock().push(std::mem::take(&mut chunk).root());
            }
        }
        Ok(())
    }

    /// The leaf hashes of chunk `chunk`, up to the tree's size: one page, read alone.
    async fn chunk_leaves(&self, chunk: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        let from = chunk * CHUNK_LEAVES + 1;
        let count = (tree_size + 1 - from).min(CHUNK_LEAVES);
        let limit = u32::try_from(count).expect("a chunk is far below u32::MAX leaves");
        let page = self.checked_page(from, limit, PageCheck::Leaves).await?;
        let mut expected = from;
        let leaves: Vec<Hash> = page
            .into_leaves()
            .map(|(position, leaf)| next_leaf(&mut expected, position, leaf))
            .collect::<Result<_, _>>()?;
        match leaves.len() as u64 == count {
            true => Ok(leaves),
            false => Err(StoreError::InvalidRequest(format!(
                "the log holds {} events, fewer than {tree_size}",
                from - 1 + leaves.len() as u64
            ))),
        }
    }
}

/// The leaf at `position`, if it is the one `expected`; a gap is a row missing.
fn next_leaf(expected: &mut u64, position: u64, leaf: Hash) -> Result<Hash, StoreError> {
    let found = match position == *expected {
        true => Ok(leaf),
        false => Err(StoreError::Corrupt {
            position: *expected,
            reason: format!("missing: the next event in the log is at position {position}"),
        }),
    };
    *expected += 1;
    found
}
