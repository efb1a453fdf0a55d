//! shequ's event log: one append-only, hash-chained log per database, on SQLite (the embedded
//! default) or PostgreSQL (for scale), in the KurrentDB/EventStoreDB model.
//!
//! - [`EventLog`] opens a database, runs its migrations and starts the single group-commit
//!   writer. Appends carry an expected revision; a stale writer gets [`StoreError::Conflict`].
//! - [`AggregateStore`] is a cheap per-command handle that implements esrs's `EventStore`, so
//!   aggregates run through esrs's `AggregateManager`, with the command's actor, correlation
//!   and causation carried into each event's metadata.
//! - [`CatchUp`] is a catch-up subscription with a stored checkpoint.
//! - [`verify`](EventLog::verify) walks the hash chain and names the first bad position.
//! - [`import`](EventLog::import) takes in a whole exported log, keeping positions and hashes.
//!
//! # Layers
//!
//! Each module uses only the modules in the layers below it (and the constants here), so the
//! files never import one another in a circle; `layering.rs` checks it.
//!
//! 1. Records and hashing: `record`, `error`, `canonical`, `merkle`, `metadata`, `locks`.
//! 2. What the features and the backends share: `page` (a page of the log, hashed where it is
//!    read), `validate` (input limits and checks), `plan` (which append wins, positions,
//!    the chain), `import_lookup` (what an import batch is checked against), `subtree_cache`
//!    (the kept Merkle subtrees), `tail` (the newest committed events).
//! 3. The databases: `backend`, over its `sqlite`, `sqlite_bulk` and `postgres`, over
//!    `backend::values` (the log's values as the databases hold them).
//! 4. The façade: `log` ([`EventLog`]) and `writer`, its single writer; the one pair that uses
//!    each other.
//! 5. Features, each an `impl EventLog` or a type over it, none using another: `verify`,
//!    `import`, `proofs`, `subscription`, `aggregate_store`.

mod aggregate_store;
mod backend;
pub mod canonical;
mod error;
mod import;
mod import_lookup;
#[cfg(test)]
mod layering;
mod locks;
mod log;
pub mod merkle;
mod metadata;
mod page;
mod plan;
mod proofs;
mod record;
mod subscription;
mod subtree_cache;
mod tail;
mod validate;
mod verify;
mod writer;

pub use aggregate_store::AggregateStore;
pub use backend::BackendKind;
pub use error::StoreError;
pub use import::{ChainCheck, ImportReport, IMPORT_BATCH_BYTES_MAX, IMPORT_BATCH_EVENTS_MAX};
pub use log::{EventLog, LogHead, QueuedAppend};
pub use metadata::{CommandContext, EventMetadata, RecordedRef, Recorder};
pub use proofs::{ConsistencyProof, InclusionProof};
pub use record::{Appended, AppendedEvent, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
pub use subscription::CatchUp;
pub use verify::{VerifyFailure, VerifyReport};
pub use writer::WriterCounts;

/// The most events one append may carry.
pub const APPEND_EVENTS_MAX: usize = 1_000;
/// The largest `data` or `metadata` text of one event, in bytes.
pub const EVENT_TEXT_BYTES_MAX: usize = 1024 * 1024;
/// The most events the writer commits in one transaction.
pub const BATCH_EVENTS_MAX: usize = 1_024;
/// The most appends waiting for the writer before callers are made to wait.
pub const QUEUE_LENGTH_MAX: usize = 8_192;
/// The most events one page of `read_all` returns.
pub const READ_PAGE_EVENTS_MAX: u32 = 10_000;
