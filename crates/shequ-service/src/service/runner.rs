//! The runner: a command's state loaded (from memory where this process keeps it, or from the
//! log), its decision, and its durable append, with conflicts retried. See `Service::run`.

use esrs::manager::AggregateManager;
use esrs::store::{EventStore, EventStoreLockGuard, StoreEvent};
use esrs::{Aggregate, AggregateState};
use shequ_domain::mandate::{Mandate, MandateEvent};
use shequ_domain::DomainEvent;
use shequ_store::{AggregateStore, CommandContext, EventLog, ExpectedRevision, Recorder, StoreError};
use uuid::Uuid;

use super::scope::Caller;
use super::state_cache::{Pipeline, Tip};
use super::Service;
use crate::error::{Result, ServiceError};

/// An aggregate the runner can run: what esrs and the log ask of its types, and its refusals
/// answered as the service's errors.
pub(crate) trait Runnable:
    Aggregate<
        State: Send + Default + Clone + 'static,
        Event: DomainEvent + Send + Sync,
        Command: Send + Clone,
        Error: Into<ServiceError>,
    > + Send
    + Sync
{
}

impl<A> Runnable for A
where
    A: Aggregate + Send + Sync,
    A::State: Send + Default + Clone + 'static,
    A::Event: DomainEvent + Send + Sync,
    A::Command: Send + Clone,
    A::Error: Into<ServiceError>,
{
}

/// How often a command is tried when another process keeps writing the same stream.
const CONFLICT_ATTEMPTS: u32 = 3;
/// A stream at least this long has its state kept between commands (see `StateCache`).
const CACHED_STREAM_EVENTS_MIN: i32 = 16;

impl Service {
    pub(crate) async fn load<A>(&self, id: Uuid) -> Result<A::State>
    where
        A: Runnable,
    {
        let manager = AggregateManager::new(self.log.aggregate_store::<A>(Caller::System.context()));
        Ok(manager.load(id).await?.map(AggregateState::into_inner).unwrap_or_default())
    }

    /// [`Self::load`] for a long stream (a district's ledger): from its kept state, if any,
    /// and what the log appended after it, under the aggregate's lock; the state read is kept
    /// in turn. A read sees every append that finished before it, by any process.
    pub(crate) async fn load_kept<A>(&self, id: Uuid) -> Result<A::State>
    where
        A: Runnable,
    {
        let store = self.log.aggregate_store::<A>(Caller::System.context());
        let stream = AggregateStore::<A>::stream(id);
        let _guard = store.lock(id).await?;
        let (state, pipeline) = self.take_settled(id, &stream).await;
        let state = Self::with_tail(&store, state).await?;
        let sequence = *state.sequence_number();
        let state = state.into_inner();
        if sequence >= CACHED_STREAM_EVENTS_MIN {
            self.states.put(stream, state.clone(), sequence, pipeline);
        }
        Ok(state)
    }

    /// [`Self::take_kept`], with the appends queued on the kept state waited for (the caller
    /// holds the aggregate's lock, so no more are queued meanwhile): a state that only holds
    async fn take_settled<S: Send + Default + 'static>(
        &self,
        id: Uuid,
        stream: &str,
    ) -> (AggregateState<S>, Pipeline) {
        let (state, kept, pipeline) = self.take_kept(id, stream);
        match pipeline.tip {
            Some(tip) if kept => match tip.append.await {
                Ok(_) => (state, Pipeline { epoch: pipeline.epoch, tip: None }),
                Err(_) => (AggregateState::with_id(id), self.states.new_pipeline()),
            },
            _ => (state, pipeline),
        }
    }

    /// A stream's kept state, taken out (the caller holds the aggregate's lock), or the empty
    /// state; whether anything was kept; and the run of queued appends it belongs to. A kept
    /// state whose last queued append failed holds events that never were: it is dropped.
    fn take_kept<S: Send + Default + 'static>(
        &self,
        id: Uuid,
        stream: &str,
    ) -> (AggregateState<S>, bool, Pipeline) {
        let state = AggregateState::with_id(id);
        let Some((kept, kept_sequence, mut pipeline)) = self.states.take::<S>(stream) else {
            return (state, false, self.states.new_pipeline());
        };
        if let Some(outcome) = pipeline.tip.as_ref().and_then(|tip| tip.append.outcome_now()) {
            match outcome {
                // Durable: the next append's expected revision is check enough.
                Ok(_) => pipeline.tip = None,
                Err(_) => return (state, false, self.states.new_pipeline()),
            }
        }
        let snapshot = StoreEvent {
            id: Uuid::nil(),
            aggregate_id: id,
            payload: kept,
            occurred_on: chrono::Utc::now(),
            sequence_number: kept_sequence,
            version: None,
        };
        (state.apply_store_events(vec![snapshot], |_, kept| kept), true, pipeline)
    }

    /// `state` with what the log appended to its stream after it.
    pub(super) async fn with_tail<A>(
        store: &AggregateStore<A>,
        state: AggregateState<A::State>,
    ) -> Result<AggregateState<A::State>>
    where
        A: Runnable,
    {
        let from_revision = u64::try_from(*state.sequence_number()).unwrap_or(0);
        let events = store.events_from(*state.id(), from_revision).await?;
        Ok(state.apply_store_events(events, A::apply_event))
    }

    /// Runs one command on one aggregate through esrs, under the in-process aggregate lock,
    /// and returns the state it leaves.
    pub(crate) async fn execute<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
    ) -> Result<A::State>
    where
        A: Runnable,
    {
        let state = self.run::<A>(context, id, command, Known::Stored, Answer::State, None).await?;
        Ok(state.expect("asked for the state"))
    }

    /// [`Self::execute`] on a stream the caller knows more of: one that does not exist yet as
    /// far as the live projection knows ([`Known::New`]: nothing is read before deciding), or
    /// the revision the client decided on (`self.known_target()`, [`Known::At`]).
    pub(crate) async fn execute_known<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
        known: Known,
    ) -> Result<A::State>
    where
        A: Runnable,
    {
        let state = self.run::<A>(context, id, command, known, Answer::State, None).await?;
        Ok(state.expect("asked for the state"))
    }

    /// [`Self::execute`] for a caller that does not need the state back: a long stream's state
    /// (a district's ledger) is then kept without a copy.
    pub(crate) async fn execute_quietly<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
    ) -> Result<()>
    where
        A: Runnable,
    {
        self.run::<A>(context, id, command, Known::Stored, Answer::Nothing, None).await?;
        Ok(())
    }

    /// The one command path: state from memory where this process has it, or from the log;
    /// the decision; the durable append; conflicts retried. The append goes one of two ways,
    /// chosen here: through esrs's manager for a short stream, or pipelined for a long stream
    /// or one whose append carries another stream's part.
    ///
    /// A state from memory (a kept state of a long stream, or the empty state of a stream
    /// presumed new) is not checked against the database first: if another process wrote the
    /// stream meanwhile, the append's expected revision no longer matches, the store answers
    /// a conflict, and the command runs again on the state read from the log. A refusal is
    /// never given on memory alone: the stream's tail is read and the command decided again.
    ///
    /// With `joined`, the command's append carries another stream's part that commits with it
    /// or not at all; the command then takes the pipelined way whatever its stream's length,
    /// and a conflict on the joined stream is returned at once, not retried.
    pub(super) async fn run<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
        known: Known,
        answer: Answer,
        joined: Option<&Joined>,
    ) -> Result<Option<A::State>>
    where
        A: Runnable,
    {
        // The command's own recorder tells which revisions it appended, and so the revision
        // the state it leaves is at; the caller's recorder, if any, hears of them too.
        let outer = context.recorder.clone();
        let recorder = Recorder::new();
        let run = Run {
            id,
            stream: AggregateStore::<A>::stream(id),
            store: self.log.aggregate_store::<A>(context.with_recorder(Some(recorder.clone()))),
            recorder,
            outer,
            known,
            answer,
            joined,
        };
        let mut attempt = 1;
        // Whether the state may come from memory unchecked; false once memory was wrong, or a
        // refusal or "nothing to do" needs the database's word.
        let mut trust_memory = true;
        loop {
            let guard = run.store.lock(id).await?;
            let Some(decided) = self.decide_on::<A>(&run, &command, trust_memory).await? else {
                trust_memory = false;
                continue;
            };
            let may_retry = attempt < CONFLICT_ATTEMPTS;
            let long = decided.sequence_after() >= CACHED_STREAM_EVENTS_MIN;
            let step = match long || joined.is_some() {
                true => self.append_pipelined(&run, guard, decided, may_retry).await?,
                false => self.append_through_esrs(&run, guard, decided.state, &command, may_retry).await?,
            };
            match step {
                Step::Done(state) => return Ok(state),
                Step::Again { counted } => {
                    attempt += u32::from(counted);
                    trust_memory = false;
                }
            }
        }
    }

    /// The state `run`'s command decides on, under the aggregate's lock, and its events; none
    /// when memory may be wrong and the log must be read (the caller tries again). A refusal
    /// on the log's state is the command's answer.
    async fn decide_on<A>(
        &self,
        run: &Run<'_, A>,
        command: &A::Command,
        trust_memory: bool,
    ) -> Result<Option<Decided<A>>>
    where
        A: Runnable,
    {
        let (mut state, pipeline, from_memory) = match trust_memory {
            // A long stream's state is kept from its last command; with nothing kept, memory
            // knows only a new stream (empty).
            true => {
                let (state, kept, pipeline) = self.take_kept(run.id, &run.stream);
                (state, pipeline, kept || run.known == Known::New)
            }
            false => {
                let (state, pipeline) = self.take_settled(run.id, &run.stream).await;
                (state, pipeline, false)
            }
        };
        if !from_memory {
            state = Self::with_tail(&run.store, state).await?;
        }
        let sequence_before = *state.sequence_number();
        // What is not used is put back as it was, for the next command or the next attempt.
        let put_back = |state: AggregateState<A::State>, pipeline: Pipeline| {
            if sequence_before >= CACHED_STREAM_EVENTS_MIN {
                self.states.put(run.stream.clone(), state.into_inner(), sequence_before, pipeline);
            }
        };
        if let Known::At(expected) = run.known {
            if let Err(conflict) = revision_check(&run.stream, expected, last_revision(sequence_before)) {
                put_back(state, pipeline);
                // Memory may be behind the log: the log's word decides.
                return match from_memory {
                    true => Ok(None),
                    false => Err(conflict),
                };
            }
        }
        // Decided here first (on a short stream esrs decides again; deciding is pure) so that
        // a refusal keeps the state, which esrs would drop.
        match A::handle_command(state.inner(), command.clone()) {
            Ok(events) if !(from_memory && events.is_empty()) => {
                Ok(Some(Decided { state, events, pipeline, sequence_before }))
            }
            // A refusal, or nothing to do (no funds to move, say), on memory: another process
            // may have changed the answer. Decide again on the log's tail.
            decided => {
                put_back(state, pipeline);
                match decided {
                    Err(refusal) if !from_memory => Err(refusal.into()),
                    _ => Ok(None),
                }
            }
        }
    }

    /// A short stream's command, run through esrs's manager on the state read from the log:
    /// it decides again, appends and waits for the append to be durable. Not kept: the next
    /// command reads the stream from the log.
    async fn append_through_esrs<A>(
        &self,
        run: &Run<'_, A>,
        guard: EventStoreLockGuard,
        mut state: AggregateState<A::State>,
        command: &A::Command,
        may_retry: bool,
    ) -> Result<Step<A::State>>
    where
        A: Runnable,
    {
        let manager = AggregateManager::new(self.log.aggregate_store::<A>(run.store.context().clone()));
        state.set_lock(guard);
        let result = manager.handle_command(state, command.clone()).await;
        let appended = run.recorder.take();
        if let Some(outer) = &run.outer {
            appended.iter().cloned().for_each(|event| outer.record(event));
        }
        match result {
            Ok(Ok(new_state)) => Ok(Step::Done(Some(new_state))),
            // Another process wrote the stream meanwhile: load again and decide again.
            Err(StoreError::Conflict { .. }) if may_retry => Ok(Step::Again { counted: true }),
            // A failure: nothing is kept, the next command reads the stream.
            result => Ok(Step::Done(Some(result?.map_err(Into::into)?))),
        }
    }

    /// A long stream's command, pipelined (ADR 0012): the aggregate's lock is held until the
    /// append is queued, not until it is durable, and the state it leaves is kept at once, so
    /// the next command decides on it while this one commits. The append builds on the last
    /// event of the one before, so the writer refuses it if that one failed; the command then
    /// runs again on the log's state. Answers only once its own append is durable.
    async fn append_pipelined<A>(
        &self,
        run: &Run<'_, A>,
        guard: EventStoreLockGuard,
        decided: Decided<A>,
        may_retry: bool,
    ) -> Result<Step<A::State>>
    where
        A: Runnable,
    {
        let sequence_after = decided.sequence_after();
        let Decided { state, events, mut pipeline, sequence_before } = decided;
        let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
        let after = pipeline.tip.as_ref().map(|tip| tip.last_event);
        let joined_part = run.joined.map(|joined| joined.append.clone());
        let queued = match events.is_empty() {
            true => None,
            false => match run.store.enqueue(&state, events, after, joined_part).await {
                Ok(queued) => Some(queued),
                Err(error) => {
                    // Nothing was queued: the state is as it was.
                    self.states.put(run.stream.clone(), state.into_inner(), sequence_before, pipeline);
                    return Err(error.into());
                }
            },
        };
        let Some((append, joined_append, store_events)) = queued else {
            // Nothing to do (a retried transfer, say), on the log's state: nothing of it is
            // only queued (`take_settled`).
            let answer = matches!(run.answer, Answer::State).then(|| state.inner().clone());
            self.states.put(run.stream.clone(), state.into_inner(), sequence_before, pipeline);
            drop(guard);
            if let Some(joined) = run.joined {
                joined.append_alone(&self.log).await?;
            }
            return Ok(Step::Done(answer));
        };
        let last_event = store_events.last().expect("an append carries events").id;
        let state = state.apply_store_events(store_events, A::apply_event).into_inner();
        let answer = matches!(run.answer, Answer::State).then(|| state.clone());
        pipeline.tip = Some(Tip { last_event, append: append.clone() });
        let epoch = pipeline.epoch;
        // The next command on this stream may decide now, on the state this one left; if the
        // cache is full and cannot keep it, the next reads the log, which must then hold this
        // append first: the lock is kept until it is durable. A short stream here only for a
        // joined part is not kept: its next command goes through esrs, which does not build on
        // a queued append, so it waits for this one.
        let keep = sequence_after >= CACHED_STREAM_EVENTS_MIN;
        let guard = match keep && self.states.put(run.stream.clone(), state, sequence_after, pipeline) {
            true => {
                drop(guard);
                None
            }
            false => Some(guard),
        };
        let outcome = append.await;
        drop(guard);
        match outcome {
            Ok(appended) => {
                if let (Some(joined), Some(joined_append)) = (run.joined, joined_append) {
                    // Settled with this append: the same fate, already decided.
                    joined.record(&joined_append.await?);
                }
                run.store.record(&types, &appended);
                if let Some(outer) = &run.outer {
                    run.recorder.take().into_iter().for_each(|event| outer.record(event));
                }
                Ok(Step::Done(answer))
            }
            Err(error) => {
                // What this command left in memory, and whatever was queued on it, never was.
                self.states.drop_pipeline(&run.stream, epoch);
                Self::after_failed_append(run.joined, error, after.is_some(), may_retry)
            }
        }
    }

    /// Whether a pipelined append that failed is tried again, and if so whether the try
    /// counts against the command's attempts.
    fn after_failed_append<S>(
        joined: Option<&Joined>,
        error: StoreError,
        followed: bool,
        may_retry: bool,
    ) -> Result<Step<S>> {
        match error {
            // The joined stream is not what its part expected (a mandate proposed twice, say):
            // the caller's to answer, not a retry's.
            StoreError::Conflict { stream: ref conflicted, .. }
                if joined.is_some_and(|joined| joined.append.stream == *conflicted) =>
            {
                Err(error.into())
            }
            // Refused for the append it followed: not this command's conflict. Its retry reads
            // the log once that append is settled, so it follows nothing and can only conflict
            // from then on.
            StoreError::Unfounded { .. } => Ok(Step::Again { counted: false }),
            // A batch that failed fails every append queued in it, this one perhaps only for
            // the one it followed. Run again on the log's state: a transfer the log already
            // holds is then nothing to do.
            StoreError::Database(_) if followed && may_retry => Ok(Step::Again { counted: true }),
            StoreError::Conflict { .. } if may_retry => Ok(Step::Again { counted: true }),
            error => Err(error.into()),
        }
    }
}

/// What one command's attempts share.
struct Run<'a, A> {
    id: Uuid,
    stream: String,
    /// The command's store: its context's recorder is the command's own.
    store: AggregateStore<A>,
    /// The command's own recorder.
    recorder: Recorder,
    /// The caller's recorder, told of what the command's own heard.
    outer: Option<Recorder>,
    known: Known,
    answer: Answer,
    joined: Option<&'a Joined>,
}

/// A command decided on a state: its events, and the state's run of queued appends.
struct Decided<A: Aggregate> {
    state: AggregateState<A::State>,
    events: Vec<A::Event>,
    pipeline: Pipeline,
    /// The events applied to `state` (esrs's sequence number).
    sequence_before: i32,
}

impl<A: Aggregate> Decided<A> {
    /// The events the stream holds once these are appended.
    fn sequence_after(&self) -> i32 {
        self.sequence_before + i32::try_from(self.events.len()).unwrap_or(i32::MAX)
    }
}

/// How an attempt at a command ended.
enum Step<S> {
    /// With the command's answer (the state it left, if asked for).
    Done(Option<S>),
    /// To be tried again on the log's state; `counted` if the try counts against the
    /// command's attempts.
    Again { counted: bool },
}

/// Another aggregate's new events that commit with a command's own, all or none: a proposal's
/// mandate events and the reservation of its funds on the district's ledger
/// (`Service::propose`), so that no mandate stands admitted without its funds reserved, even
/// if the process stops between the two.
pub(super) struct Joined {
    /// The new stream's part, as the log takes it.
    append: shequ_store::StreamAppend,
    /// The part's event types, for the command's recorder.
    types: Vec<&'static str>,
    /// The mandate's store for the command: its context's recorder is told of the part's
    /// events once they are durable.
    store: AggregateStore<Mandate>,
}

impl Joined {
    /// A new mandate's first events, as a part to join to another append.
    pub(super) fn first_events(
        store: AggregateStore<Mandate>,
        mandate: Uuid,
        events: &[MandateEvent],
    ) -> Result<Self, StoreError> {
        Self::next_events(store, mandate, ExpectedRevision::NoStream, events)
    }

    /// A mandate's next events, decided on it at `expected`, as a part to join to another
    /// append.
    pub(super) fn next_events(
        store: AggregateStore<Mandate>,
        mandate: Uuid,
        expected: ExpectedRevision,
        events: &[MandateEvent],
    ) -> Result<Self, StoreError> {
        let append = store.part(mandate, expected, events)?;
        Ok(Self { append, types: events.iter().map(DomainEvent::event_type).collect(), store })
    }

    /// Appends the part by itself, and tells the recorder.
    pub(super) async fn append_alone(&self, log: &EventLog) -> Result<(), StoreError> {
        let appended = log.append_all(vec![self.append.clone()]).await?;
        self.record(&appended[0]);
        Ok(())
    }

    fn record(&self, appended: &shequ_store::Appended) {
        self.store.record(&self.types, appended);
    }
}

/// What the caller knows of a stream before a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// It may hold events: read them (or what was appended since a kept state).
    Stored,
    /// The live projection has never seen it: start from the empty state without a read.
    /// Wrong only if another process created it meanwhile; then the append conflicts.
    New,
    /// The client decided on it at this revision (its last event's): the command holds only
    /// if the stream is still there, checked on the state read under the aggregate's lock.
    At(u64),
}

/// The revision of the last event of a stream holding `sequence` events (esrs counts them),
/// none for an empty stream.
pub(super) fn last_revision(sequence: i32) -> Option<u64> {
    u64::try_from(sequence).ok().and_then(|count| count.checked_sub(1))
}

/// The client's stated revision against the stream's `actual` one: a stream that moved on is
/// a conflict, answered with both revisions.
pub(crate) fn revision_check(stream: &str, expected: u64, actual: Option<u64>) -> Result<()> {
    match actual == Some(expected) {
        true => Ok(()),
        false => Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected: ExpectedRevision::Exact(expected),
            actual,
        }
        .into()),
    }
}

/// Whether the caller wants the state a command leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    State,
    Nothing,
}
