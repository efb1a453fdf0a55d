//! Importing a whole log exported from another store, keeping its positions, revisions,
//! `recorded_at` times and hashes.
//!
//! An import does not go through the writer: appending would give every event a new commit
//! time and a new place in the log. Instead each exported event is checked as `verify` would
//! check a stored one (its position follows the last, its hash is the chain hash of its
//! canonical bytes and the hash before, its stream revision follows the stream's last) and
//! inserted as it is, with the log head moved in the same transaction. The database's
//! append-only triggers refuse updates and deletes, not inserts, so nothing is bypassed.

use futures::{Stream, TryStreamExt};

use crate::canonical::{chain_hash, GENESIS_HASH};
use crate::error::StoreError;
use crate::log::{EventLog, LogHead};
use crate::plan::Head;
use crate::record::RecordedEvent;
use crate::validate::{validate_event, validate_stream};

/// The most events one import transaction carries.
pub const IMPORT_BATCH_EVENTS_MAX: usize = 2_000;
/// The most `data` and `metadata` bytes one import transaction carries (a batch closes early
/// when its events are large), so that memory stays bounded whatever the events hold.
pub const IMPORT_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub events: u64,
    pub head: LogHead,
}

/// Checks, event by event, that a log read from outside the store could have been written by
/// it: positions 1, 2, 3 … with no gap, every field within the limits appends have, and each
/// hash the chain hash of the event's canonical bytes and the hash before. It keeps only the
/// last position and hash. Stream revisions need the store and are checked by
/// [`EventLog::import`] against the database.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    head: LogHead,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainCheck {
    /// A check starting before position 1, from the genesis hash.
    pub fn new() -> Self {
        Self { head: LogHead { position: 0, hash: GENESIS_HASH } }
    }

    /// Checks the next event; on success it becomes the head.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        let expected = self.head.position + 1;
        let refuse = |reason: String| Err(StoreError::ImportRefused { position: expected, reason });
        if event.position != expected {
            return refuse(format!("expected position {expected}, found {}", event.position));
        }
        if let Err(reason) = validate_stream(&event.stream).and_then(|()| {
            validate_event(&event.event_type, event.event_version, &event.data, &event.metadata)
        }) {
            return refuse(reason);
        }
        // A stream's revision counts its earlier events, all of which come before this one.
        if event.revision >= event.position {
            return refuse(format!("revision {} cannot be at position {}", event.revision, event.position));
        }
        if chain_hash(&self.head.hash, event) != event.hash {
            return refuse(
                "the exported hash does not match the event and the hash before it \
                 (the event was altered, or the log was not exported whole)"
                    .to_owned(),
            );
        }
        self.head = LogHead { position: event.position, hash: event.hash };
        Ok(())
    }

    /// The last event checked (position 0 and the genesis hash before the first).
    pub fn head(&self) -> LogHead {
        self.head
    }
}

impl EventLog {
    /// Imports a whole exported log, in position order, into this store, which must be empty.
    /// Positions, revisions, `recorded_at` times and hashes are kept, so the imported log has
    /// the same head and Merkle root as the one exported; appends afterwards continue from it.
    ///
    /// Events are read from `events` lazily and written in transactions of at most
    /// [`IMPORT_BATCH_EVENTS_MAX`] events (and [`IMPORT_BATCH_BYTES_MAX`] bytes), so memory is
    /// bounded however long the log is. Each event is checked as described on [`ChainCheck`],
    /// and each batch, under the head lock, against the store (still the head the last batch
    /// left, stream revisions following on, event ids not taken). The first failure refuses
    /// the import with [`StoreError::ImportRefused`] naming the position; batches before it
    /// stay committed (a valid prefix of the log), so check the whole input first (as `shequ
    /// import` does) when a partial import would be a nuisance. `progress` is told the number
    /// of events committed after each batch.
    pub async fn import<S, E>(&self, events: S, mut progress: impl FnMut(u64)) -> Result<ImportReport, E>
    where
        S: Stream<Item = Result<RecordedEvent, E>>,
        E: From<StoreError>,
    {
        // Fails early, before reading anything; each batch checks again under the lock.
        let head = self.head().await?;
        if head.position != 0 {
            return Err(StoreError::NotEmpty { head: head.position }.into());
        }
        let mut events = std::pin::pin!(events);
        let mut check = ChainCheck::new();
        let mut committed = Head { position: 0, hash: GENESIS_HASH };
        let mut batch: Vec<RecordedEvent> = Vec::new();
        let mut batch_bytes = 0;
        loop {
            let next = events.try_next().await?;
            let finished = next.is_none();
            if let Some(event) = next {
                check.check(&event)?;
                batch_bytes += event.data.len() + event.metadata.len();
                batch.push(event);
            }
            let full = batch.len() >= IMPORT_BATCH_EVENTS_MAX || batch_bytes >= IMPORT_BATCH_BYTES_MAX;
            if !batch.is_empty() && (full || finished) {
                committed = self.backend().import_batch(committed, &batch).await?;
                batch.clear();
                batch_bytes = 0;
                progress(committed.position);
            }
            if finished {
                break;
            }
        }
        Ok(ImportReport {
            events: committed.position,
            head: LogHead { position: committed.position, hash: committed.hash },
        })
    }
}
