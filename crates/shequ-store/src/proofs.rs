//! Merkle proofs over the log (RFC 6962 / 9162), for inspectors and independent verifiers.

use futures::{Stream, TryStreamExt};

use crate::canonical;
use crate::error::StoreError;
use crate::log::EventLog;
use crate::merkle::{self, Hash};

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
    /// The leaf hashes of the first `tree_size` events; an error if the log is shorter.
    pub async fn merkle_leaves(&self, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        let capacity = usize::try_from(tree_size)
            .map_err(|_| StoreError::InvalidRequest("tree size too large".into()))?;
        let mut leaves = Vec::with_capacity(capacity);
        let mut hashed = std::pin::pin!(self.leaf_hashes());
        while leaves.len() < capacity {
            match hashed.try_next().await? {
                Some(leaf) => leaves.push(leaf),
                None => break,
            }
        }
        match leaves.len() == capacity {
            true => Ok(leaves),
            false => Err(StoreError::InvalidRequest(format!(
                "the log holds {} events, fewer than {tree_size}",
                leaves.len()
            ))),
        }
    }

    /// The Merkle root of the first `tree_size` events; an error if the log is shorter. Reads
    /// the log page by page and keeps O(log n) hashes, so memory stays flat in the log's size.
    pub async fn merkle_root(&self, tree_size: u64) -> Result<Hash, StoreError> {
        let mut builder = merkle::RootBuilder::new();
        let mut leaves = std::pin::pin!(self.leaf_hashes());
        while builder.size() < tree_size {
            match leaves.try_next().await? {
                Some(leaf) => builder.push(leaf),
                None => {
                    return Err(StoreError::InvalidRequest(format!(
                        "the log holds {} events, fewer than {tree_size}",
                        builder.size()
                    )))
                }
            }
        }
        Ok(builder.root())
    }

    /// The leaf hashes of the log in position order, each page hashed by the task that read
    /// it, so that pages read at once are hashed at once.
    fn leaf_hashes(&self) -> impl Stream<Item = Result<Hash, StoreError>> + Send + 'static {
        let hash_page =
            |page: &[crate::RecordedEvent]| page.iter().map(canonical::leaf_hash).collect::<Vec<_>>();
        self.pages_prepared(1, PAGE_EVENTS, hash_page)
            .map_ok(|(_, leaves)| futures::stream::iter(leaves.into_iter().map(Ok)))
            .try_flatten()
    }

    pub async fn inclusion_proof(&self, position: u64, tree_size: u64) -> Result<InclusionProof, StoreError> {
        if position == 0 || position > tree_size {
            return Err(StoreError::InvalidRequest(format!(
                "position {position} is not in a tree of {tree_size}"
            )));
        }
        let leaves = self.merkle_leaves(tree_size).await?;
        let index = usize::try_from(position - 1).expect("checked against the tree size");
        let audit_path = merkle::inclusion_proof(&leaves, index).expect("the index is in the tree");
        Ok(InclusionProof {
            position,
            tree_size,
            leaf_hash: leaves[index],
            audit_path,
            root_hash: merkle::root(&leaves),
        })
    }

    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof, StoreError> {
        if first == 0 || first > second {
            return Err(StoreError::InvalidRequest(format!(
                "a consistency proof needs 0 < first ≤ second, not {first}, {second}"
            )));
        }
        let leaves = self.merkle_leaves(second).await?;
        let old = usize::try_from(first).expect("first ≤ second, which fits");
        let proof = merkle::consistency_proof(&leaves, old).expect("0 < first ≤ second");
        Ok(ConsistencyProof {
            first,
            second,
            first_root: merkle::root(&leaves[..old]),
            second_root: merkle::root(&leaves),
            proof,
        })
    }
}
