//! Merkle proofs over the log (RFC 6962 / 9162), for inspectors and independent verifiers.

use futures::{Stream, TryStreamExt};

use crate::error::StoreError;
use crate::log::EventLog;
use crate::merkle::{self, Hash};
use crate::verify::PageCheck;

/// Events read per page while hashing leaves.
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
    /// The Merkle root of the first `tree_size` events; an error if the log is shorter. Reads
    /// the log page by page and keeps O(log n) hashes, so memory stays flat in the log's size.
    pub async fn merkle_root(&self, tree_size: u64) -> Result<Hash, StoreError> {
        Ok(self.range_roots(tree_size, Vec::new(), |_, _, _| {}).await?.root())
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

    /// The leaf hashes of the log in position order, each page hashed where it was read (see
    /// `CheckedPage`), so that pages read at once are hashed at once. Leaf `i` is position `i + 1`: a
    /// position missing from the log (a deleted row) is an error, not a shifted tree.
    fn leaf_hashes(&self) -> impl Stream<Item = Result<Hash, StoreError>> + Send + 'static {
        let mut expected = 1;
        self.checked_pages(1, PAGE_EVENTS, PageCheck::Leaves)
            .map_ok(|page| futures::stream::iter(page.into_leaves().map(Ok)))
            .try_flatten()
            .and_then(move |(position, leaf)| {
                let found = match position == expected {
                    true => Ok(leaf),
                    false => Err(StoreError::Corrupt {
                        position: expected,
                        reason: format!("missing: the next event in the log is at position {position}"),
                    }),
                };
                expected += 1;
                std::future::ready(found)
            })
    }

    /// The inclusion proof of the event at `position` in the tree of the first `tree_size`
    /// events. Reads those events once and keeps O(log n) hashes, whatever the log's length.
    pub async fn inclusion_proof(&self, position: u64, tree_size: u64) -> Result<InclusionProof, StoreError> {
        if position == 0 || position > tree_size {
            return Err(StoreError::InvalidRequest(format!(
                "position {position} is not in a tree of {tree_size}"
            )));
        }
        let ranges = merkle::inclusion_ranges(position - 1, tree_size).expect("the index is in the tree");
        let mut leaf_hash = None;
        let roots = self
            .range_roots(tree_size, ranges, |index, leaf, _| {
                if index == position - 1 {
                    leaf_hash = Some(*leaf);
                }
            })
            .await?;
        Ok(InclusionProof {
            position,
            tree_size,
            leaf_hash: leaf_hash.expect("the leaf is in the tree"),
            audit_path: roots.range_roots(),
            root_hash: roots.root(),
        })
    }

    /// The consistency proof from the tree of the first `first` events to that of the first
    /// `second`. Reads those events once and keeps O(log n) hashes.
    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof, StoreError> {
        if first == 0 || first > second {
            return Err(StoreError::InvalidRequest(format!(
                "a consistency proof needs 0 < first ≤ second, not {first}, {second}"
            )));
        }
        let ranges = merkle::consistency_ranges(first, second).expect("0 < first ≤ second");
        let mut first_root = None;
        let roots = self
            .range_roots(second, ranges, |index, _, roots| {
                if index + 1 == first {
                    first_root = Some(roots.root());
                }
            })
            .await?;
        Ok(ConsistencyProof {
            first,
            second,
            first_root: first_root.expect("first ≤ second"),
            second_root: roots.root(),
            proof: roots.range_roots(),
        })
    }

    /// The roots of `ranges` and of the tree of the first `tree_size` events, from their leaves
    /// read once; `each` sees every leaf's index and hash, and the roots once it is added. An
    /// error if the log is shorter (refused before reading if its head is).
    async fn range_roots(
        &self,
        tree_size: u64,
        ranges: Vec<std::ops::Range<u64>>,
        mut each: impl FnMut(u64, &Hash, &merkle::RangeRoots),
    ) -> Result<merkle::RangeRoots, StoreError> {
        self.within_log(tree_size).await?;
        let mut roots = merkle::RangeRoots::new(ranges);
        let mut leaves = std::pin::pin!(self.leaf_hashes());
        while roots.size() < tree_size {
            match leaves.try_next().await? {
                Some(leaf) => {
                    let index = roots.size();
                    roots.push(leaf);
                    each(index, &leaf, &roots);
                }
                None => {
                    return Err(StoreError::InvalidRequest(format!(
                        "the log holds {} events, fewer than {tree_size}",
                        roots.size()
                    )))
                }
            }
        }
        Ok(roots)
    }
}
