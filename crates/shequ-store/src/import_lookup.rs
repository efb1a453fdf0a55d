//! What an import batch is checked against in the store: the backends look it up under
//! their head lock ([`ImportLookup`]) and [`check_batch`] decides, the same for both
//! databases. Below the backends, which use it, and `import`, which drives them.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::error::StoreError;
use crate::plan::Head;
use crate::record::RecordedEvent;

/// What a backend found, under the head lock, for one import batch.
pub(crate) struct ImportLookup {
    pub head: Head,
    /// Whether the events table holds any row (looked up for the first batch only).
    pub any_events: bool,
    /// The last revision of each stream the batch touches that has events.
    pub stream_revisions: HashMap<String, u64>,
    /// The batch's event ids that are already in the log.
    pub existing_event_ids: HashSet<Uuid>,
}

/// Decides whether `rows` (already chain-checked, following `base`) may be inserted as they
/// are, and returns the head after them. Shared by both backends.
pub(crate) fn check_batch(
    found: ImportLookup,
    base: Head,
    rows: &[RecordedEvent],
) -> Result<Head, StoreError> {
    if base.position == 0 && (found.head.position != 0 || found.any_events) {
        return Err(StoreError::NotEmpty { head: found.head.position });
    }
    if found.head != base {
        return Err(StoreError::ImportRefused {
            position: base.position + 1,
            reason: format!(
                "another writer moved the log head to position {} during the import",
                found.head.position
            ),
        });
    }
    let ImportLookup { mut stream_revisions, existing_event_ids, .. } = found;
    let mut batch_ids = HashSet::with_capacity(rows.len());
    for row in rows {
        let refuse = |reason: String| Err(StoreError::ImportRefused { position: row.position, reason });
        let expected = stream_revisions.get(&row.stream).map_or(0, |revision| revision + 1);
        if row.revision != expected {
            return refuse(format!(
                "stream `{}` expected revision {expected}, found {}",
                row.stream, row.revision
            ));
        }
        if existing_event_ids.contains(&row.event_id) || !batch_ids.insert(row.event_id) {
            return refuse(format!("event id {} appears earlier in the log", row.event_id));
        }
        stream_revisions.insert(row.stream.clone(), row.revision);
    }
    let last = rows.last().map_or(base, |row| Head { position: row.position, hash: row.hash });
    Ok(last)
}
