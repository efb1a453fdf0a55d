//! In-process per-aggregate locks for esrs's `lock_and_load`.
//!
//! They only keep two commands of this process from racing on one aggregate; across
//! processes the expected revision on every append still decides, with a `Conflict` for the
//! loser.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use esrs::store::{EventStoreLockGuard, UnlockOnDrop};
use uuid::Uuid;

/// Above this many entries, locks that nobody holds are dropped from the map.
const IDLE_LOCKS_MAX: usize = 1_024;

#[derive(Debug, Default)]
pub(crate) struct AggregateLocks {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

struct Guard(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

impl UnlockOnDrop for Guard {}

impl AggregateLocks {
    pub async fn lock(&self, aggregate_id: Uuid) -> EventStoreLockGuard {
        let lock = {
            let mut locks = self.locks.lock().expect("the lock map is never poisoned: no panics inside");
            if locks.len() > IDLE_LOCKS_MAX {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(locks.entry(aggregate_id).or_default())
        };
        EventStoreLockGuard::new(Guard(lock.lock_owned().await))
    }
}
