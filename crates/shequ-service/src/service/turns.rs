//! Commands named by the same client id (HTTP's `Idempotency-Key`) take turns.
//!
//! A named command first looks in its stream for events its id caused, and runs only if it
//! finds none. Two attempts at once (a client that timed out and sent its command again while
//! the first attempt still ran) would both find none, and the second would then act on what
//! the first had half done: a second `accept` refused because the mandate is already
//! accepted, say. Here the second attempt waits for the first to finish, and then finds its
//! events and answers with them, as any later retry does.
//!
//! The turns are kept in this process: commands sent to two processes over one store at once
//! are not made to wait for each other (ARCHITECTURE.md, invariants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

/// The ids whose commands are running or waiting, each with the lock its attempts take in turn.
#[derive(Debug, Default)]
pub(crate) struct CommandTurns {
    running: Mutex<HashMap<Uuid, Arc<AsyncMutex<()>>>>,
}

/// An attempt's turn at the command named by `id`: the next attempt waits until it is dropped.
#[derive(Debug)]
pub(crate) struct CommandTurn {
    turns: Arc<CommandTurns>,
    id: Uuid,
    guard: Option<OwnedMutexGuard<()>>,
}

impl CommandTurns {
    /// Waits until no other attempt at the command named `id` runs, and takes the turn.
    pub(crate) async fn take(self: &Arc<Self>, id: Uuid) -> CommandTurn {
        let lock = Arc::clone(self.running().entry(id).or_default());
        // Made before waiting, so that an attempt given up while it waits forgets the id too
        // when it was the last.
        let mut turn = CommandTurn { turns: Arc::clone(self), id, guard: None };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// How many ids have attempts running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.running().len()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<AsyncMutex<()>>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CommandTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        // The map's own reference is the last one when no attempt waits (a waiting attempt
        // holds a clone, taken under the same lock): the id is forgotten.
        let mut running = self.turns.running();
        if running.get(&self.id).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            running.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn attempts_at_one_command_take_turns_and_are_forgotten_after() {
        let turns = Arc::new(CommandTurns::default());
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let first = turns.take(id).await;
        // Another id does not wait.
        let elsewhere = tokio::time::timeout(Duration::from_secs(5), turns.take(other)).await;
        assert!(elsewhere.is_ok());
        drop(elsewhere);
        // The same id waits for the first attempt.
        let second = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move { turns.take(id).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second attempt waits");
        assert_eq!(turns.len(), 1, "the waiting attempt keeps the id");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap();
        assert_eq!(turns.len(), 1);
        drop(second);
        assert_eq!(turns.len(), 0, "no attempt left: the id is forgotten");
    }

    #[tokio::test]
    async fn an_attempt_given_up_while_waiting_leaves_no_turn_behind() {
        let turns = Arc::new(CommandTurns::default());
        let id = Uuid::now_v7();
        let first = turns.take(id).await;
        // A client that goes away while its attempt waits: the attempt is dropped.
        let waited = tokio::time::timeout(Duration::from_millis(20), turns.take(id)).await;
        assert!(waited.is_err());
        drop(first);
        assert_eq!(turns.len(), 0);
        drop(turns.take(id).await);
        assert_eq!(turns.len(), 0);
    }
}
