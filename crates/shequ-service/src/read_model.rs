//! The live read model: the [`Projection`] kept in memory and brought up to date on each read
//! (this process's own commits at once, other processes' within `FOREIGN_APPENDS_STALE_MS`).
//! Replays of the log up to a point in time or position are in
//! [`crate::replay`].
//!
//! Catching up folds only what was appended since the last read. A read sees every command
//! this process finished before it began (read-your-writes: the writer tells the position it
//! committed, and a read behind it folds the events up to there, from the writer's memory of
//! its newest events or else from the database), and every other process's command that
//! finished `FOREIGN_APPENDS_STALE_MS` before it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shequ_store::EventLog;
use tokio::sync::{Mutex, RwLock, RwLockReadGuard};

use crate::projection::Projection;
use crate::ServiceError;

/// Events read per page while catching up.
pub const PAGE_EVENTS: u32 = 5_000;
/// How stale the projection may be about other processes' appends, at most: a read within this
/// long of the last look at the database, and with nothing new committed by this process, is
/// answered from memory.
pub const FOREIGN_APPENDS_STALE_MS: u64 = 50;

/// The live projection. Cheap to clone: clones share one state.
#[derive(Debug, Clone)]
pub struct ReadModel {
    log: EventLog,
    state: Arc<RwLock<Projection>>,
    /// One catch-up at a time; readers wait for it rather than each reading the same events.
    /// It holds when the database was last asked.
    catching_up: Arc<Mutex<Option<Instant>>>,
    /// Set once a catch-up has reached the log's head: before that, a read may have the whole
    /// log to fold first.
    caught_up: Arc<AtomicBool>,
}

impl ReadModel {
    pub fn new(log: EventLog) -> Self {
        Self { log, state: Arc::default(), catching_up: Arc::default(), caught_up: Arc::default() }
    }

    /// Whether a catch-up has reached the log's head since this model was made; from then on a
    /// read folds only what was appended since the read before. `/ready` waits for it.
    pub fn has_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Starts a catch-up in a task of its own, unless one is running: `/ready` does so while
    /// the projection has not caught up, so that it goes on without reads to drive it.
    pub fn catch_up_in_background(&self) {
        if self.catching_up.try_lock().is_err() {
            return;
        }
        let model = self.clone();
        tokio::spawn(async move {
            if let Err(error) = model.catch_up().await {
                tracing::warn!(%error, "the projection could not catch up with the log");
            }
        });
    }

    /// The position the projection has folded the log up to.
    pub async fn position(&self) -> u64 {
        self.state.read().await.position()
    }

    /// The projection, caught up with everything this process committed before the call, and
    /// with other processes' appends up to `FOREIGN_APPENDS_STALE_MS` before it.
    pub async fn read(&self) -> Result<RwLockReadGuard<'_, Projection>, ServiceError> {
        {
            let state = self.state.read().await;
            if state.position() >= self.log.committed_position() && self.looked_recently() {
                return Ok(state);
            }
        }
        self.follow().await?;
        Ok(self.state.read().await)
    }

    fn looked_recently(&self) -> bool {
        match self.catching_up.try_lock() {
            Ok(looked) => is_recent(*looked),
            // Someone is catching up right now: wait for it through `catch_up`.
            Err(_) => false,
        }
    }

    /// Folds in this process's own commits since the last read, from the log's memory of
    /// them, while the last look at the database is recent (`FOREIGN_APPENDS_STALE_MS`);
    /// otherwise, or when they are no longer all in memory, asks the database.
    async fn follow(&self) -> Result<u64, ServiceError> {
        {
            let looked = self.catching_up.lock().await;
            let next = self.state.read().await.position() + 1;
            let recent = is_recent(*looked).then(|| self.log.committed_since(next)).flatten();
            if let Some(events) = recent {
                return Ok(self.apply(next, &events).await? - 1);
            }
        }
        self.catch_up().await
    }

    /// Folds in what was appended since the last catch-up, by any process: asks the database.
    pub async fn catch_up(&self) -> Result<u64, ServiceError> {
        let mut looked = self.catching_up.lock().await;
        let asked = Instant::now();
        let mut next = self.state.read().await.position() + 1;
        loop {
            let page = self.log.read_all(next, PAGE_EVENTS).await?;
            next = self.apply(next, &page).await?;
            if page.len() < PAGE_EVENTS as usize {
                break;
            }
        }
        *looked = Some(asked);
        self.caught_up.store(true, Ordering::Release);
        Ok(next - 1)
    }

    /// Folds in `events`, which follow position `next - 1`; returns the position after them.
    async fn apply(&self, next: u64, events: &[shequ_store::RecordedEvent]) -> Result<u64, ServiceError> {
        let Some(last) = events.last() else { return Ok(next) };
        let mut state = self.state.write().await;
        for event in events {
            state.apply(event).map_err(|error| ServiceError::Projection(error.to_string()))?;
        }
        Ok(last.position + 1)
    }
}

/// Whether the database was last asked (`looked`) within `FOREIGN_APPENDS_STALE_MS`.
fn is_recent(looked: Option<Instant>) -> bool {
    looked.is_some_and(|at| at.elapsed() < Duration::from_millis(FOREIGN_APPENDS_STALE_MS))
}
