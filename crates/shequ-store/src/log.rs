use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::backend::{Backend, BackendKind, StreamRange};
use crate::error::StoreError;
use crate::locks::AggregateLocks;
use crate::page::{CheckedPage, PageCheck};
use crate::plan::AppendRequest;
use crate::record::{Appended, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use crate::subtree_cache::SubtreeCache;
use crate::tail::Tail;
use crate::validate::{validate_append, validate_parts};
use crate::writer::{self, Pending, WriterCounts};
use crate::{QUEUE_LENGTH_MAX, READ_PAGE_EVENTS_MAX};

/// The event log of one database. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    queue: mpsc::Sender<Pending>,
    head: watch::Receiver<u64>,
    /// The newest events this process committed.
    tail: Arc<Tail>,
    locks: AggregateLocks,
    counters: Arc<writer::Counters>,
    /// The Merkle tree's perfect subtrees over the log's whole chunks, built by the first
    /// proof that needs them (ADR 0019): `proofs.rs`.
    subtrees: SubtreeCache,
}

/// An append in the writer's queue (see [`EventLog::enqueue`]): a future of its outcome.
/// Clones share the outcome, and the writer decides it whether or not anyone awaits it.
#[derive(Clone)]
pub struct QueuedAppend {
    future: Shared<BoxFuture<'static, Result<Appended, StoreError>>>,
    /// The outcome of the queued item, set by the writer before it answers.
    decided: Decided,
    /// Which part of the queued item this is.
    part: usize,
}

/// The outcome of one queued item, for [`QueuedAppend::outcome_now`].
pub(crate) type Decided = Arc<std::sync::OnceLock<Result<Vec<Appended>, StoreError>>>;

impl QueuedAppend {
    /// The outcome, if the writer has decided it yet.
    ///
    /// Read from what the writer set, never by polling the shared future: a clone polled once
    /// with no one to wake (as `now_or_never` does) can take the one wake-up meant for the
    /// task awaiting the append, which then waits until something else polls it.
    pub fn outcome_now(&self) -> Option<Result<Appended, StoreError>> {
        let decided = self.decided.get()?;
        Some(decided.clone().map(|mut parts| parts.swap_remove(self.part)))
    }
}

impl std::fmt::Debug for QueuedAppend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("QueuedAppend").finish_non_exhaustive()
    }
}

impl Future for QueuedAppend {
    type Output = Result<Appended, StoreError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        self.future.poll_unpin(context)
    }
}

/// The last position of the log and its chain hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub position: u64,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EventLog").field("backend", &self.kind()).finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens the log at `url` (`sqlite://PATH`, created if missing, or `postgres://…`), brings
    /// its schema up to date and starts the writer. Must be called inside a Tokio runtime.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let backend = Backend::connect(url).await?;
        backend.migrate().await?;
        let head = backend.head().await?;
        let (queue, receiver) = mpsc::channel(QUEUE_LENGTH_MAX);
        let (head_sender, head_receiver) = watch::channel(head.position);
        let tail = Arc::new(Tail::default());
        let counters = Arc::new(writer::Counters::default());
        tokio::spawn(writer::run(
            backend.clone(),
            receiver,
            head_sender,
            Arc::clone(&tail),
            Arc::clone(&counters),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                queue,
                head: head_receiver,
                tail,
                locks: AggregateLocks::default(),
                counters,
                subtrees: SubtreeCache::default(),
            }),
        })
    }

    pub fn kind(&self) -> BackendKind {
        self.inner.backend.kind()
    }

    /// What this process's writer has committed since the log was opened.
    pub fn writer_counts(&self) -> WriterCounts {
        self.inner.counters.read()
    }

    /// Appends `events` to `stream` if the stream is at `expected`. Returns once the events
    /// are durable. Re-appending the same event ids returns the original result.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.enqueue(stream, expected, None, events).await?.await
    }

    /// Puts an append in the writer's queue and returns as soon as it is there; the
    /// [`QueuedAppend`] then resolves when the append is durable, or refused.
    ///
    /// Appends are committed in the order they were queued, so a caller may queue an append
    /// that builds on one it queued before, without waiting for it: `after` names the event
    /// it builds on, which must then be the stream's last committed event, at revision
    /// `expected` (which must be exact). If the earlier append failed, or another process
    /// wrote the stream between, this one is refused with [`StoreError::Unfounded`]: no
    /// append is ever committed on top of events that never were.
    pub async fn enqueue(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        after: Option<Uuid>,
        events: Vec<NewEvent>,
    ) -> Result<QueuedAppend, StoreError> {
        validate_append(stream, expected, after, &events)?;
        let request = AppendRequest { stream: stream.to_owned(), expected, after, events, joined: false };
        let (answer, decided) = self.send(vec![request]).await?;
        let outcome =
            answer.map(|outcome| outcome.map(|mut parts| parts.pop().expect("one part, one result")));
        Ok(QueuedAppend { future: outcome.boxed().shared(), decided, part: 0 })
    }

    /// Appends to several streams at once: every part commits, in the order given and
    /// together, or none does (say, a mandate's first events and the reservation of its funds
    /// on the ledger). A part refused (its expected revision, the event it builds on) refuses
    /// them all with its error. Returns once the events are durable, one result per part.
    pub async fn append_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        futures::future::try_join_all(self.enqueue_all(appends).await?).await
    }

    /// [`Self::append_all`] as [`Self::enqueue`] does it: returns once the parts are queued,
    /// with one [`QueuedAppend`] per part; all of them resolve to the same fate.
    pub async fn enqueue_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<QueuedAppend>, StoreError> {
        validate_parts(&appends)?;
        let parts = appends.len();
        let requests = appends
            .into_iter()
            .enumerate()
            .map(|(index, append)| AppendRequest {
                stream: append.stream,
                expected: append.expected,
                after: append.after,
                events: append.events,
                joined: index > 0,
            })
            .collect();
        let (answer, decided) = self.send(requests).await?;
        let group = answer.boxed().shared();
        Ok((0..parts)
            .map(|index| {
                let part = group.clone().map(move |outcome| outcome.map(|parts| parts[index].clone()));
                QueuedAppend { future: part.boxed().shared(), decided: Arc::clone(&decided), part: index }
            })
            .collect())
    }

    /// Puts joined requests in the writer's queue; the future resolves with their outcome,
    /// which the writer also sets in the returned cell before it answers.
    #[allow(clippy::type_complexity)]
    async fn send(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<(impl Future<Output = Result<Vec<Appended>, StoreError>> + Send + 'static, Decided), StoreError>
    {
        let (reply, answer) = oneshot::channel();
        let decided = Decided::default();
        let pending = Pending { requests, reply, decided: Arc::clone(&decided) };
        self.inner.queue.send(pending).await.map_err(|_| StoreError::WriterStopped)?;
        Ok((answer.map(|answer| answer.unwrap_or(Err(StoreError::WriterStopped))), decided))
    }

    /// Every event of one stream, in revision order.
    pub async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.backend.read_stream(stream, 0).await
    }

    /// One stream's events from `from_revision` on, in revision order: what a cached state of
    /// the stream has not seen yet.
    pub async fn read_stream_from(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.backend.read_stream(stream, from_revision).await
    }

    /// One page of one stream: at most `limit` (capped at `READ_PAGE_EVENTS_MAX`) of its events
    /// after position `after_position`, in revision order (which is position order).
    pub async fn read_stream_after(
        &self,
        stream: &str,
        after_position: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match page_limit(after_position, limit) {
            Some(limit) => self.inner.backend.read_stream_after(stream, after_position, limit).await,
            None => Ok(vec![]),
        }
    }

    /// One page of the log: events at `from_position` and after, in position order; at
    /// most `limit` (capped at `READ_PAGE_EVENTS_MAX`).
    pub async fn read_all(&self, from_position: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        match page_limit(from_position, limit) {
            Some(limit) => self.inner.backend.read_page(from_position.max(1), limit).await,
            None => Ok(vec![]),
        }
    }

    /// The whole log from `from_position` on, read lazily in pages of `page_events`, so memory
    /// stays bounded however long the log is.
    ///
    /// Once polled, a task reads ahead while the caller works through the page before, so that
    /// reading from the database and the caller's work overlap; on a long log it reads several
    /// pages at once (see `read_ahead`). At most `READ_AHEAD_PAGES_MAX` + 2 pages are in
    /// memory. The stream ends at the first empty page, or after the first error; dropping it
    /// stops the task.
    pub fn stream_all(
        &self,
        from_position: u64,
        page_events: u32,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + 'static {
        let log = self.clone();
        let read = |log: EventLog, from: u64, limit: u32| async move { log.read_all(from, limit).await };
        events_of(pages_read_by(move |pages| read_ahead(log, from_position.max(1), page_events, pages, read)))
    }

    /// The pages of [`EventLog::stream_all`] as `verify` and proofs check them, each checked
    /// where it was read (see [`CheckedPage`]).
    pub(crate) fn checked_pages(
        &self,
        from_position: u64,
        page_events: u32,
        check: PageCheck,
    ) -> impl Stream<Item = Result<CheckedPage, StoreError>> + Send + 'static {
        let log = self.clone();
        let read = move |log: EventLog, from: u64, limit: u32| async move {
            log.checked_page(from, limit, check).await
        };
        pages_read_by(move |pages| read_ahead(log, from_position.max(1), page_events, pages, read))
    }

    /// One page of [`EventLog::checked_pages`], read alone: `limit` events from `from_position`.
    pub(crate) async fn checked_page(
        &self,
        from_position: u64,
        limit: u32,
        check: PageCheck,
    ) -> Result<CheckedPage, StoreError> {
        match page_limit(from_position, limit) {
            Some(limit) => self.inner.backend.check_page(from_position.max(1), limit, check).await,
            None => Ok(CheckedPage::default()),
        }
    }

    pub(crate) fn subtree_cache(&self) -> &SubtreeCache {
        &self.inner.subtrees
    }

    /// Every event of one category's streams (`category-…`) up to and including position
    /// `up_to`, ordered by stream name (byte order) and then revision, read lazily in pages of
    /// about `page_events`: one stream's events come together, so its state can be folded, used
    /// and dropped before the next stream's.
    ///
    /// A page is a range of (stream, revision) keys whose end is found from the index alone;
    /// up to `READ_AHEAD_PAGES_MAX` pages are read at once, each on its own connection, and
    /// handed over in order, so reading and the caller's work overlap. Events after `up_to`,
    /// or appended after the stream started, are left out. At most `READ_AHEAD_PAGES_MAX` + 2 pages are in memory.
    pub fn stream_category(
        &self,
        category: &shequ_domain::Category,
        up_to: u64,
        page_events: u32,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + 'static {
        let log = self.clone();
        let range = StreamRange::category(category);
        let page_events = page_events.clamp(1, READ_PAGE_EVENTS_MAX);
        let up_to = up_to.min(i64::MAX.unsigned_abs());
        events_of(pages_read_by(move |pages| async move {
            // Nothing after the head as it is now: a page's range then holds no more events up
            // to `up_to` than it held keys when its end was found, whatever is appended later.
            let up_to = match log.inner.backend.head().await {
                Ok(head) => up_to.min(head.position),
                Err(error) => {
                    let _ = pages.send(Err(error)).await;
                    return;
                }
            };
            // Where the next page starts (after this key), if there is a next page.
            let mut next = Some((range.from.clone(), -1_i64));
            let mut in_flight: VecDeque<PageRead> = VecDeque::with_capacity(READ_AHEAD_PAGES_MAX);
            loop {
                while in_flight.len() < READ_AHEAD_PAGES_MAX {
                    let Some(after) = next.take() else { break };
                    let backend = &log.inner.backend;
                    let end = backend.category_page_end(&range, (&after.0, after.1), up_to, page_events);
                    let end = match end.await {
                        Ok(end) => end,
                        Err(error) => {
                            let _ = pages.send(Err(error)).await;
                            return;
                        }
                    };
                    // The last page runs to the end of the category: no stream is `category.`.
                    let until = end.clone().unwrap_or_else(|| (range.to.clone(), -1));
                    next = end;
                    let reader = log.clone();
                    in_flight.push_back(tokio::spawn(async move {
                        let backend = &reader.inner.backend;
                        // The range held `page_events` keys when its end was found; keys
                        // added since are appends, after the head and so after `up_to`.
                        let (after, until) = ((after.0.as_str(), after.1), (until.0.as_str(), until.1));
                        backend.read_category_range(after, until, up_to, page_events).await
                    }));
                }
                let Some(read) = in_flight.pop_front() else { return };
                let page = match read.await {
                    Ok(page) => page,
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    // Only a runtime shutting down cancels the task.
                    Err(_) => return,
                };
                match page {
                    Err(error) => {
                        let _ = pages.send(Err(error)).await;
                        return;
                    }
                    // A page may be empty: every event in its range is after `up_to`.
                    Ok(page) if page.is_empty() => {}
                    Ok(page) => {
                        if pages.send(Ok(page)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }))
    }

    /// The position of the first event recorded after `time`, if there is one: where a replay
    /// as of `time` stops (positions and times grow together, up to clock steps).
    pub async fn first_recorded_after(&self, time: DateTime<Utc>) -> Result<Option<u64>, StoreError> {
        self.inner.backend.first_recorded_after(time).await
    }

    pub async fn head(&self) -> Result<LogHead, StoreError> {
        let head = self.inner.backend.head().await?;
        Ok(LogHead { position: head.position, hash: head.hash })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.backend.ping().await
    }

    /// Closes the connections. Appends after this fail with a database error.
    pub async fn close(&self) {
        self.inner.backend.close().await;
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn locks(&self) -> &AggregateLocks {
        &self.inner.locks
    }

    /// Wakes when this process commits past the position seen last.
    pub(crate) fn committed(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    /// The last position this process's writer committed (or found at open): every append
    /// this process acknowledged lies at or below it. Other processes' appends may lie above.
    pub fn committed_position(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// The events from `from_position` through the last one this process committed, from
    /// memory, without asking the database; `None` when they are no longer all in memory (the
    /// newest few thousand are kept) or another process wrote in between: read them then.
    /// Other processes' appends after this process's last commit are not in the answer.
    pub fn committed_since(&self, from_position: u64) -> Option<Vec<RecordedEvent>> {
        self.inner.tail.since(from_position)
    }
}

/// The row limit of a page read from `position`, capped at `READ_PAGE_EVENTS_MAX`; `None` past
/// 2^63: no log reaches that many events, so there is simply nothing to read.
fn page_limit(position: u64, limit: u32) -> Option<u32> {
    i64::try_from(position).ok().map(|_| limit.clamp(1, READ_PAGE_EVENTS_MAX))
}

/// The most pages `stream_all` reads at once. Reading a page is mostly the database driver's
/// work on one thread (sqlx's SQLite thread, a PostgreSQL backend) and then ours on another;
/// three at once keep two cores busy (BENCHMARKS.md, issue 5). With the page waiting to be
/// taken and the one being consumed, at most five pages are in memory.
const READ_AHEAD_PAGES_MAX: usize = 3;

/// Where a stream of pages read by a task is.
enum PagesFrom<F, P> {
    NotStarted(F),
    Reading { pages: mpsc::Receiver<Result<P, StoreError>>, task: AbortOnDrop },
    Finished,
}

/// The pages that the task `start` hands over, one at a time through a channel of one. The
/// task is spawned at the first poll and aborted when the stream is dropped; the stream ends
/// when the task drops its sender, or after the first error.
fn pages_read_by<P, F, Task>(start: F) -> impl Stream<Item = Result<P, StoreError>> + Send + 'static
where
    P: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<P, StoreError>>) -> Task + Send + 'static,
    Task: std::future::Future<Output = ()> + Send + 'static,
{
    futures::stream::unfold(PagesFrom::NotStarted(start), |state| async move {
        let (mut pages, mut task) = match state {
            PagesFrom::NotStarted(start) => {
                let (sender, pages) = mpsc::channel(1);
                let task = tokio::spawn(start(sender));
                (pages, AbortOnDrop(task))
            }
            PagesFrom::Reading { pages, task } => (pages, task),
            PagesFrom::Finished => return None,
        };
        match pages.recv().await {
            Some(Ok(page)) => Some((Ok(page), PagesFrom::Reading { pages, task })),
            Some(Err(error)) => Some((Err(error), PagesFrom::Finished)),
            None => {
                // The task ended: at the end of the log, or by a panic, which goes on here.
                if let Err(error) = (&mut task.0).await {
                    if error.is_panic() {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
                None
            }
        }
    })
    .fuse()
}

/// The events of a stream of pages, one after another.
fn events_of(
    pages: impl Stream<Item = Result<Vec<RecordedEvent>, StoreError>> + Send + 'static,
) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + 'static {
    pages.map_ok(|page| futures::stream::iter(page.into_iter().map(Ok))).try_flatten().fuse()
}

/// The read-ahead task, stopped when the stream that started it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads pages from `next` on and hands them over one at a time, until a page is empty, an
/// error (handed over too), or nobody takes them any more.
///
/// Once a page comes back full, up to `READ_AHEAD_PAGES_MAX` pages are read at once, each on
/// its own connection: the page that starts where the last one handed over ended, and the
/// pages that follow it if every page before them is full and gap-free (positions are never
/// skipped). A page is handed over only if it starts exactly where the previous one ended, so
/// what comes out is the same pages, from the same queries, as reading one after another; a
/// short page (the end of the log) or a gap (a tampered log) drops the guesses after it, and
/// reading goes on one page at a time from where that page ended.
async fn read_ahead<P, R, Read>(
    log: EventLog,
    mut next: u64,
    page_events: u32,
    pages: mpsc::Sender<Result<P, StoreError>>,
    read: R,
) where
    P: LogPage,
    R: Fn(EventLog, u64, u32) -> Read + Send + Sync + 'static,
    Read: Future<Output = Result<P, StoreError>> + Send + 'static,
{
    let page_events = page_events.clamp(1, READ_PAGE_EVENTS_MAX);
    // Dropping a handle lets its read run to its end, unwanted, rather than cancelling it in
    // the middle of a query.
    let mut in_flight: VecDeque<(u64, tokio::task::JoinHandle<Result<P, StoreError>>)> =
        VecDeque::with_capacity(READ_AHEAD_PAGES_MAX);
    let mut guess = next;
    let mut readers = 1;
    loop {
        while in_flight.len() < readers {
            in_flight.push_back((guess, tokio::spawn(read(log.clone(), guess, page_events))));
            guess += u64::from(page_events);
        }
        let (start, reading) = in_flight.pop_front().expect("at least one page is being read");
        let page = match reading.await {
            Ok(page) => page,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(_) => return,
        };
        // Guesses that no longer follow on are dropped as soon as a page ends short.
        assert_eq!(start, next, "a page is handed over only where the previous one ended");
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let _ = pages.send(Err(error)).await;
                return;
            }
        };
        let Some(last) = page.last_position() else { return };
        next = last + 1;
        match next == start + u64::from(page_events) {
            true => readers = READ_AHEAD_PAGES_MAX,
            false => {
                in_flight.clear();
                guess = next;
                readers = 1;
            }
        }
        if pages.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

/// A page `read_ahead` hands over: events in position order, the last of which it knows.
trait LogPage: Send + 'static {
    fn last_position(&self) -> Option<u64>;
}

impl LogPage for Vec<RecordedEvent> {
    fn last_position(&self) -> Option<u64> {
        self.last().map(|event| event.position)
    }
}

impl LogPage for CheckedPage {
    fn last_position(&self) -> Option<u64> {
        CheckedPage::last_position(self)
    }
}

/// A page being read by `stream_category`, in its own task.
type PageRead = tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;
