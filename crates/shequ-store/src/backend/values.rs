//! The log's values as the databases hold them, and back: what `backend` and each database's
//! module share, below all of them.

use crate::error::StoreError;
use crate::plan::Head;
use crate::record::RecordedEvent;

/// What the statements run on either database (`with_pool!`) read of a row of sqlx's.
pub(super) trait SqlxRow {
    /// An event from a `select_event!` row, by column index (its columns' order).
    fn read_event(&self) -> Result<RecordedEvent, StoreError>;

    /// The head from a row of `position, hash`.
    fn read_head(&self) -> Result<Head, StoreError>;
}

/// A unique key refused the write: on the fast path, a sign that the writer's memory was behind.
pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|error| error.is_unique_violation())
}

/// Positions and revisions are u64 in the code and BIGINT in the databases; a log never gets
/// near 2^63 events, so a failure here is a bug, not an input error.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("positions and revisions stay below 2^63")
}

/// Reads a stored non-negative integer back; a negative one means the row was tampered with.
pub(super) fn to_u64(value: i64, position: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(position, format!("negative {column} {value}")))
}

pub(super) fn to_hash(bytes: &[u8], position: i64) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| corrupt(position, format!("hash of {} bytes, not 32", bytes.len())))
}

pub(super) fn corrupt(position: i64, reason: String) -> StoreError {
    StoreError::Corrupt { position: u64::try_from(position).unwrap_or(0), reason }
}
