//! Replays: the state as of a point of the log, rebuilt from the log alone.
//!
//! Every part of the [`Projection`] is the fold of one stream and reads no other (see
//! [`Projection::fold`]), so a replay reads the log category by category, each category's
//! streams in name order and each stream in revision order, up to one position: the cut. That
//! gives the same state as folding the log in position order up to the cut, and it lets
//! [`write_state`] hold one mandate or one request at a time: it writes each as soon as its
//! stream has been read, and keeps in memory only organisations, the catalogue, balances and
//! open contests. Memory follows those, not the length of the log (BENCHMARKS.md, issue 5).

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use serde::Serialize;
use shequ_domain::Category;
use shequ_store::{EventLog, RecordedEvent, StoreError};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::projection::{
    entity_id, AsOf, BalanceView, ContestView, MandateRow, Projection, ProjectionError, RequestRow,
    StreamFold,
};
use crate::ServiceError;

/// Events read per page.
pub const PAGE_EVENTS: u32 = 5_000;

/// The categories whose whole state is kept in memory while replaying: few things, each small.
const KEPT: [&str; 3] = ["organisation", "catalogue", "ledger"];
const MANDATE: &str = "mandate";
const REQUEST: &str = "request";

/// Where a replay stops: the last position it folds, and when that event was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub position: u64,
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Finds where a replay `as_of` stops: the head; the given position, if the log reaches it;
/// or the event before the first one recorded after the given time.
pub async fn cut(log: &EventLog, as_of: AsOf) -> Result<Cut, ServiceError> {
    let head = log.head().await?.position;
    let position = match as_of {
        AsOf::Head => head,
        AsOf::Position(position) => position.min(head),
        AsOf::Time(time) => match log.first_recorded_after(time).await? {
            Some(first) => (first - 1).min(head),
            None => head,
        },
    };
    let recorded_at = match position {
        0 => None,
        position => log
            .read_all(position, 1)
            .await?
            .first()
            .filter(|event| event.position == position)
            .map(|event| event.recorded_at),
    };
    Ok(Cut { position, recorded_at })
}

/// The whole state as of `as_of`, in memory: for tests and small logs. `progress` is called
/// with the number of events folded so far, every page.
pub async fn replay(
    log: &EventLog,
    as_of: AsOf,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Projection, ServiceError> {
    let cut = cut(log, as_of).await?;
    let mut folded = Folded { count: 0, progress: &mut progress };
    let mut projection = kept_state(log, cut, &mut folded).await?;
    let mut mandates = Rows::<MandateRow>::new(log, MANDATE, cut);
    while let Some((id, row)) = mandates.next(&mut folded).await? {
        projection.insert_mandate(id, row);
    }
    let mut requests = Rows::<RequestRow>::new(log, REQUEST, cut);
    while let Some((id, row)) = requests.next(&mut folded).await? {
        projection.insert_request(id, row);
    }
    Ok(projection)
}

/// Only the balances (and organisations and catalogue) as of `as_of`: the ledger as of a date,
/// without reading a single mandate or request.
pub async fn replay_ledgers(log: &EventLog, as_of: AsOf) -> Result<Projection, ServiceError> {
    let cut = cut(log, as_of).await?;
    Ok(kept(log, cut).await?.projection)
}

/// How [`write_state`] lays its JSON out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// `serde_json::to_vec_pretty`'s bytes: for files and terminals (`shequ replay`).
    Pretty,
    /// `serde_json::to_vec`'s bytes: for HTTP.
    Compact,
}

/// Why [`write_state`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteStateError {
    #[error(transparent)]
    Replay(#[from] ServiceError),
    /// Whoever took the chunks went away (a client that hung up).
    #[error("the reader of the state went away")]
    Closed,
    /// [`write_state_into`] could not write its output.
    #[error("cannot write the state: {0}")]
    Output(std::io::Error),
}

/// The bytes of JSON handed over at a time by [`write_state`], at least.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// What a replay keeps in memory: organisations, the catalogue and the ledgers folded up to
/// the cut. Built before a state is written, so that a failure here is reported before the
/// first byte (an HTTP status, not a broken body).
#[derive(Debug, Clone)]
pub struct Kept {
    cut: Cut,
    projection: Projection,
    /// Events folded into it.
    folded: u64,
}

/// Folds organisations, the catalogue and the ledgers up to `cut`.
pub async fn kept(log: &EventLog, cut: Cut) -> Result<Kept, ServiceError> {
    let mut folded = Folded { count: 0, progress: &mut |_| {} };
    let projection = kept_state(log, cut, &mut folded).await?;
    Ok(Kept { cut, projection, folded: folded.count })
}

/// Writes the state at `kept`'s cut as JSON into `chunks`, byte for byte what `serde_json`
/// writes for [`Projection::document`] in the given style, and holds one mandate or one
/// request at a time while doing so. With `district`, it is
/// [`Projection::document_for_district`] with a first field `"district"`, the district's id.
/// Chunks are handed over as they fill, so a slow reader slows the replay rather than the
/// state piling up. On an error, what was handed over is not a whole document: write to a
/// temporary file and keep it only on success. `progress` is told the events folded so far.
pub async fn write_state(
    log: &EventLog,
    kept: Kept,
    district: Option<Uuid>,
    style: JsonStyle,
    mut progress: impl FnMut(u64) + Send,
    chunks: mpsc::Sender<Vec<u8>>,
) -> Result<(), WriteStateError> {
    let Kept { cut, projection: kept, folded } = kept;
    let mut folded = Folded { count: folded, progress: &mut progress };
    (folded.progress)(folded.count);
    let inside = |organisation: Uuid| district.is_none() || kept.district_of(organisation) == district;
    let mut json = JsonWriter { style, out: Vec::with_capacity(2 * CHUNK_BYTES), chunks, first: true };

    json.begin(b'{');
    if let Some(district) = district {
        json.field("district", &district, 1);
    }
    json.field("as_of", &kept.as_of(), 1);
    let organisations: Vec<_> = kept.organisations().filter(|view| inside(view.id)).collect();
    json.field("organisations", &organisations, 1);
    json.field("catalogue", &kept.catalogue_view(), 1);
    json.key("mandates", 1);
    json.begin(b'[');
    let mut contests: Vec<ContestView> = Vec::new();
    let mut mandates = Rows::<MandateRow>::new(log, MANDATE, cut);
    while let Some((id, row)) = mandates.next(&mut folded).await? {
        let Some(view) = row.view(id).filter(|view| inside(view.community)) else { continue };
        contests.extend(view.contest.clone());
        json.item(&view, 2);
        json.hand_over_full().await?;
    }
    json.end(b']', 2);
    let in_district = |view: &BalanceView| district.is_none_or(|district| view.district == district);
    let balances: Vec<_> = kept.all_balances().into_iter().filter(in_district).collect();
    json.field("balances", &balances, 1);
    json.field("open_contests", &contests, 1);
    json.key("requests", 1);
    json.begin(b'[');
    let mut requests = Rows::<RequestRow>::new(log, REQUEST, cut);
    while let Some((id, row)) = requests.next(&mut folded).await? {
        let Some(view) = row.view(id).filter(|view| inside(view.station)) else { continue };
        json.item(&view, 2);
        json.hand_over_full().await?;
    }
    json.end(b']', 2);
    json.end(b'}', 1);
    json.hand_over().await
}

/// [`write_state`] into `out`, each chunk written as it comes: a file or a terminal. An error
/// writing `out` stops the replay and is the one returned.
pub async fn write_state_into(
    log: &EventLog,
    kept: Kept,
    district: Option<Uuid>,
    style: JsonStyle,
    progress: impl FnMut(u64) + Send,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), WriteStateError> {
    let (chunks, mut receiver) = mpsc::channel::<Vec<u8>>(2);
    let writing = write_state(log, kept, district, style, progress, chunks);
    // The receiver goes with this block: an output error drops it, which stops the replay.
    let copying = async move {
        while let Some(chunk) = receiver.recv().await {
            out.write_all(&chunk)?;
        }
        Ok(())
    };
    match tokio::join!(writing, copying) {
        (_, Err(error)) => Err(WriteStateError::Output(error)),
        (written, Ok(())) => written,
    }
}

/// How many events a replay has folded, told to its `progress` every page.
struct Folded<'a> {
    count: u64,
    progress: &'a mut (dyn FnMut(u64) + Send),
}

impl Folded<'_> {
    fn one(&mut self) {
        self.count += 1;
        if self.count % u64::from(PAGE_EVENTS) == 0 {
            (self.progress)(self.count);
        }
    }
}

/// Organisations, the catalogue and the ledgers, up to the cut.
async fn kept_state(log: &EventLog, cut: Cut, folded: &mut Folded<'_>) -> Result<Projection, ServiceError> {
    let mut projection = Projection::default();
    for category in KEPT {
        let mut events =
            std::pin::pin!(log.stream_category(&category_of(category), cut.position, PAGE_EVENTS));
        while let Some(event) = events.try_next().await? {
            projection.fold(&event).map_err(projection_error)?;
            folded.one();
        }
    }
    projection.stop_at(cut.position, cut.recorded_at);
    (folded.progress)(folded.count);
    Ok(projection)
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<RecordedEvent, StoreError>> + Send>>;

/// The streams of one category folded one at a time, in id order, up to the cut.
struct Rows<R> {
    events: Events,
    /// The stream being folded: its name, its id, its state so far.
    current: Option<(String, Uuid, R)>,
}

impl<R: StreamFold> Rows<R> {
    fn new(log: &EventLog, category: &str, cut: Cut) -> Self {
        let events = log.stream_category(&category_of(category), cut.position, PAGE_EVENTS);
        Self { events: Box::pin(events), current: None }
    }

    /// The next stream's id and state, once its last event up to the cut is folded in.
    async fn next(&mut self, folded: &mut Folded<'_>) -> Result<Option<(Uuid, R)>, ServiceError> {
        while let Some(event) = self.events.try_next().await? {
            let same_stream = self.current.as_ref().is_some_and(|(stream, ..)| *stream == event.stream);
            let finished = match same_stream {
                true => None,
                false => {
                    let id = entity_id(&event).map_err(projection_error)?;
                    self.current.replace((event.stream.clone(), id, R::default()))
                }
            };
            let (_, _, row) = self.current.as_mut().expect("a stream is being folded");
            row.fold(&event).map_err(projection_error)?;
            folded.one();
            if let Some((_, id, row)) = finished {
                return Ok(Some((id, row)));
            }
        }
        (folded.progress)(folded.count);
        Ok(self.current.take().map(|(_, id, row)| (id, row)))
    }
}

fn category_of(name: &str) -> Category {
    Category::parse(name).expect("the projection's categories are valid")
}

fn projection_error(error: ProjectionError) -> ServiceError {
    ServiceError::Projection(error.to_string())
}

/// JSON written piece by piece as `serde_json` writes a whole value, compact or pretty (two
/// spaces an indent, `"key": value`), so that long arrays can be written one item at a time.
/// Each value is serialized on its own; a pretty one is indented to its depth, which is exact
/// because pretty JSON holds no line break inside a string.
struct JsonWriter {
    style: JsonStyle,
    out: Vec<u8>,
    chunks: mpsc::Sender<Vec<u8>>,
    /// Whether the innermost open object or array has nothing in it yet.
    first: bool,
}

impl JsonWriter {
    fn begin(&mut self, bracket: u8) {
        self.out.push(bracket);
        self.first = true;
    }

    /// What goes before a member at `depth`: a comma after the first, and in pretty JSON a
    /// new line and the indent.
    fn separate(&mut self, depth: usize) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        self.newline(depth);
    }

    fn newline(&mut self, depth: usize) {
        if self.style == JsonStyle::Pretty {
            self.out.push(b'\n');
            self.out.extend(std::iter::repeat_n(b' ', 2 * depth));
        }
    }

    fn key(&mut self, key: &str, depth: usize) {
        self.separate(depth);
        self.value(key, depth);
        self.out.extend_from_slice(match self.style {
            JsonStyle::Pretty => b": ",
            JsonStyle::Compact => b":",
        });
    }

    fn field(&mut self, key: &str, value: &impl Serialize, depth: usize) {
        self.key(key, depth);
        self.value(value, depth);
    }

    fn item(&mut self, value: &impl Serialize, depth: usize) {
        self.separate(depth);
        self.value(value, depth);
    }

    /// Closes the innermost object or array, opened at `depth - 1`.
    fn end(&mut self, bracket: u8, depth: usize) {
        if !std::mem::replace(&mut self.first, false) {
            self.newline(depth - 1);
        }
        self.out.push(bracket);
    }

    /// `value` as JSON, its lines indented to `depth`.
    fn value(&mut self, value: &(impl Serialize + ?Sized), depth: usize) {
        // Our views serialize infallibly: no maps with non-string keys, no failing impls.
        let written = match self.style {
            JsonStyle::Compact => serde_json::to_writer(&mut self.out, value),
            JsonStyle::Pretty => {
                let pretty = serde_json::to_vec_pretty(value);
                pretty.map(|pretty| {
                    let mut lines = pretty.split(|byte| *byte == b'\n');
                    self.out.extend_from_slice(lines.next().unwrap_or_default());
                    for line in lines {
                        self.newline(depth);
                        self.out.extend_from_slice(line);
                    }
                })
            }
        };
        written.expect("views serialize to JSON");
    }

    /// Hands over what is written once it fills a chunk.
    async fn hand_over_full(&mut self) -> Result<(), WriteStateError> {
        match self.out.len() >= CHUNK_BYTES {
            true => self.hand_over().await,
            false => Ok(()),
        }
    }

    async fn hand_over(&mut self) -> Result<(), WriteStateError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(2 * CHUNK_BYTES));
        self.chunks.send(chunk).await.map_err(|_| WriteStateError::Closed)
    }
}
