//! The Merkle tree's kept perfect subtrees over the log's whole chunks (ADR 0019), beside
//! `merkle`, which computes them: the log holds the cache, and `proofs` fills and reads it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::merkle::Subtrees;

/// The leaves of the smallest kept subtree: a proof hashes at most two chunks' leaves, and the
/// kept roots take 64 bytes per chunk (about 64 KB a million events).
pub(crate) const CHUNK_LEAVES: u64 = 1_024;

/// The kept subtrees of one log, shared by its clones.
pub(crate) struct SubtreeCache {
    subtrees: Mutex<Subtrees>,
    /// Held by the one task that builds more of them, so that two proofs do not hash the same
    /// chunks at once; the other waits and then finds them built.
    building: tokio::sync::Mutex<()>,
}

impl Default for SubtreeCache {
    fn default() -> Self {
        Self { subtrees: Mutex::new(Subtrees::new(CHUNK_LEAVES)), building: tokio::sync::Mutex::new(()) }
    }
}

impl SubtreeCache {
    /// The subtrees kept so far.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Subtrees> {
        // Subtrees are only ever pushed whole: a panic elsewhere leaves them sound.
        self.subtrees.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The right to build more subtrees, held by one task at a time.
    pub(crate) async fn build_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.building.lock().await
    }
}
