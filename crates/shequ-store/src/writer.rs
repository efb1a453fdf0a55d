//! The single writer: it group-commits every waiting append in one transaction.
//!
//! Why one writer: positions must be gap-free and in commit order, and each event's hash
//! depends on the one before. One writer per process makes both cheap (the head is read once
//! per batch), and batching turns one fsync per append into one fsync per batch. Across
//! processes sharing a PostgreSQL database, the head row lock takes over (see `backend`).

use chrono::{SubsecRound, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::log::Decided;
use crate::plan::{AppendRequest, WriterCache};
use crate::record::Appended;
use crate::tail::Tail;
use crate::BATCH_EVENTS_MAX;

/// What the writer has done since the log was opened, for `/metrics` and the benchmarks:
/// how full its batches are, and how much of the time it spends committing them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    events: AtomicU64,
    failed_batches: AtomicU64,
    commit_micros: AtomicU64,
}

/// A reading of the writer's counters (see [`crate::EventLog::writer_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounts {
    /// Batches that appended events: each one transaction and one durable commit.
    pub batches: u64,
    /// Events those batches appended.
    pub events: u64,
    /// Batches that failed as a whole (nothing of them was written).
    pub failed_batches: u64,
    /// Time spent in the database committing batches, failed ones included.
    pub commit_micros: u64,
}

impl Counters {
    pub(crate) fn read(&self) -> WriterCounts {
        WriterCounts {
            batches: self.batches.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            commit_micros: self.commit_micros.load(Ordering::Relaxed),
        }
    }
}

/// One caller's append: one request, or several joined ones that commit all or none.
pub(crate) struct Pending {
    pub requests: Vec<AppendRequest>,
    pub reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    /// Where the outcome is set before the reply is sent (`QueuedAppend::outcome_now`).
    pub decided: Decided,
}

/// Sets the outcome where `outcome_now` reads it, then answers.
fn answer(
    reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    decided: &Decided,
    outcome: Result<Vec<Appended>, StoreError>,
) {
    let _ = decided.set(outcome.clone());
    // A caller that stopped waiting does not undo a commit; nothing to do.
    let _ = reply.send(outcome);
}

impl Pending {
    fn events(&self) -> usize {
        self.requests.iter().map(|request| request.events.len()).sum()
    }
}

/// Runs until every sender is gone. After each batch, `tail` keeps its events and `head` is
/// told the last committed position, which wakes catch-up subscriptions in this process.
pub(crate) async fn run(
    backend: Backend,
    mut queue: mpsc::Receiver<Pending>,
    head: watch::Sender<u64>,
    tail: Arc<Tail>,
    counters: Arc<Counters>,
) {
    let mut batch: Vec<Pending> = Vec::new();
    let mut cache = WriterCache::default();
    // An append that did not fit the last batch opens the next one.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut events = first.events();
        batch.push(first);
        // Take whatever else is already waiting, up to the batch limit; never wait for more.
        while events < BATCH_EVENTS_MAX {
            match queue.try_recv() {
                Ok(pending) if events + pending.events() > BATCH_EVENTS_MAX => {
                    carried = Some(pending);
                    break;
                }
                Ok(pending) => {
                    events += pending.events();
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        commit(&backend, &mut batch, &head, &tail, &mut cache, &counters).await;
    }
}

async fn commit(
    backend: &Backend,
    batch: &mut Vec<Pending>,
    head: &watch::Sender<u64>,
    tail: &Tail,
    cache: &mut WriterCache,
    counters: &Counters,
) {
    let mut requests = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for pending in batch.drain(..) {
        replies.push((pending.reply, pending.decided, pending.requests.len()));
        requests.extend(pending.requests);
    }
    // Microseconds: what both databases keep, so an append's answer equals what is read back.
    let recorded_at = Utc::now().trunc_subsecs(6);
    let started = Instant::now();
    let committed = backend.commit_batch(&requests, recorded_at, cache).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    counters.commit_micros.fetch_add(micros, Ordering::Relaxed);
    match committed {
        Ok(planned) => {
            // A batch whose appends were all refused, or all retries, wrote nothing.
            if !planned.rows.is_empty() {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.events.fetch_add(planned.rows.len() as u64, Ordering::Relaxed);
            }
            debug_assert_eq!(planned.outcomes.len(), requests.len());
            // Kept before the head moves: whoever sees the new head finds its events here.
            tail.extend(planned.base.position, planned.rows);
            head.send_if_modified(|position| {
                let moved = planned.head.position > *position;
                *position = (*position).max(planned.head.position);
                moved
            });
            let mut outcomes = planned.outcomes.into_iter();
            for (reply, decided, parts) in replies {
                // Joined parts are refused together, each with the first refusal.
                let outcome: Vec<Result<Appended, StoreError>> = outcomes.by_ref().take(parts).collect();
                answer(reply, &decided, outcome.into_iter().collect());
            }
        }
        Err(error) => {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, appends = replies.len(), "event log batch failed; nothing of it was written");
            for (reply, decided, _) in replies {
                answer(reply, &decided, Err(error.clone()));
            }
        }
    }
}
