//! The states of long streams kept between commands, and the runs of appends queued on them
//! (ADR 0010, ADR 0012).

use std::any::Any;
use std::collections::HashMap;
use std::sync::PoisonError;

use shequ_store::QueuedAppend;
use uuid::Uuid;

/// The most aggregate states kept between commands.
const CACHED_STATES_MAX: usize = 1_024;

/// States of long streams (a district's ledger, the catalogue) kept between commands, so a
/// command does not replay thousands of events. A state is taken out while a command runs on
/// it (under the aggregate's lock) and put back with the revision it is at once the command
/// succeeded or has queued its append (see `Service::run`); what other processes appended
/// since is read before each use.
#[derive(Default)]
pub(super) struct StateCache {
    states: std::sync::Mutex<HashMap<String, CachedState>>,
    /// The last [`Pipeline::epoch`] given out.
    epochs: std::sync::atomic::AtomicU64,
}

/// A state of some aggregate type, the esrs sequence number (events applied) it is at, and
/// its run of queued appends.
type CachedState = (Box<dyn Any + Send>, i32, Pipeline);

/// A run of appends queued one on the other (ADR 0012). A run starts whenever a state is
/// read from the log or started empty, and each append queued on a state kept from the run
/// continues it; if one fails, every state kept since holds events that never were.
#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    pub(super) epoch: u64,
    /// The last append queued in the run, while it may not be durable yet.
    pub(super) tip: Option<Tip>,
}

#[derive(Debug, Clone)]
pub(super) struct Tip {
    /// The last event of the append: the next one builds on it.
    pub(super) last_event: Uuid,
    pub(super) append: QueuedAppend,
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("StateCache").finish_non_exhaustive()
    }
}

impl StateCache {
    pub(super) fn take<S: 'static>(&self, stream: &str) -> Option<(S, i32, Pipeline)> {
        let (state, sequence, pipeline) =
            self.states.lock().unwrap_or_else(PoisonError::into_inner).remove(stream)?;
        state.downcast::<S>().ok().map(|state| (*state, sequence, pipeline))
    }

    /// Keeps `state`, unless the cache is full of other streams; says whether it was kept.
    pub(super) fn put<S: Send + 'static>(
        &self,
        stream: String,
        state: S,
        sequence: i32,
        pipeline: Pipeline,
    ) -> bool {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let room = states.len() < CACHED_STATES_MAX || states.contains_key(&stream);
        if room {
            states.insert(stream, (Box::new(state), sequence, pipeline));
        }
        room
    }

    pub(super) fn new_pipeline(&self) -> Pipeline {
        let epoch = self.epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Pipeline { epoch, tip: None }
    }

    /// Forgets the stream's kept state if it belongs to run `epoch`, one of whose appends
    /// failed. (A state taken out meanwhile is dropped when its own append fails, as it
    /// builds on the failed one; see `Service::take_kept`.)
    pub(super) fn drop_pipeline(&self, stream: &str, epoch: u64) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if states.get(stream).is_some_and(|(_, _, pipeline)| pipeline.epoch == epoch) {
            states.remove(stream);
        }
    }
}
