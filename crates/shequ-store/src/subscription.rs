use std::time::Duration;

use crate::error::StoreError;
use crate::log::EventLog;
use crate::record::RecordedEvent;

/// The longest subscription name, in bytes.
const NAME_BYTES_MAX: usize = 128;

/// A catch-up subscription: reads the log from its stored checkpoint on, then waits for new
/// events. After a restart it resumes from the checkpoint, so a consumer that commits after
/// handling each page neither misses nor repeats an event.
///
/// New events of this process wake it at once; events written by another process (a second
/// `shequ serve` on the same PostgreSQL database) are picked up within the `wait` given.
pub struct CatchUp {
    log: EventLog,
    name: String,
    /// The last position handled and stored.
    checkpoint: u64,
    /// The next position to read.
    cursor: u64,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CatchUp")
            .field("name", &self.name)
            .field("checkpoint", &self.checkpoint)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl CatchUp {
    /// Opens the subscription `name`, starting after its stored checkpoint (or at the start).
    pub async fn open(log: &EventLog, name: &str) -> Result<Self, StoreError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(StoreError::InvalidAppend(format!("subscription name `{name}` must be 1–128 bytes")));
        }
        let checkpoint = log.backend().load_checkpoint(name).await?.unwrap_or(0);
        Ok(Self { log: log.clone(), name: name.to_owned(), checkpoint, cursor: checkpoint + 1 })
    }

    /// The last position handled and stored.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The next events, at most `limit`. When there are none, waits up to `wait` for new ones
    /// and returns an empty page if none came.
    pub async fn next_page(&mut self, limit: u32, wait: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut committed = self.log.committed();
        // Marks the current head as seen before reading, so that a commit after this point,
        // even one between the read and the wait, wakes us.
        committed.borrow_and_update();
        let page = self.log.read_all(self.cursor, limit).await?;
        let page = match page.is_empty() {
            false => page,
            true => {
                let _ = tokio::time::timeout(wait, committed.changed()).await;
                self.log.read_all(self.cursor, limit).await?
            }
        };
        if let Some(last) = page.last() {
            self.cursor = last.position + 1;
        }
        Ok(page)
    }

    /// Stores that every event through `position` has been handled.
    pub async fn commit(&mut self, position: u64) -> Result<(), StoreError> {
        assert!(position < self.cursor, "a subscription commits only positions it has read");
        self.log.backend().save_checkpoint(&self.name, position).await?;
        self.checkpoint = position;
        Ok(())
    }
}
