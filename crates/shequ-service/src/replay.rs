//! Replays: the state as of a point of the log, rebuilt from the log alone.
//!
//! Every part of the [`Projection`] is the fold of one stream and reads no other (see
//! [`Projection::fold`]), so a replay reads the log category by category, each category's
//! streams in name order and each stream in revision order, up to one position: the cut. That
//! gives the same state as folding the log in position order up to the cut, and it lets
//! [`write_state`] hold one mandate or one request at a time: it writes each as soon as its
//! stream has been read, and keeps in memory only organisations, the catalogue, balances and
//! open contests. Memory follows those, not the length of the log (BENCHMARKS.md, issue 5).

use std::io::Write;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use shequ_domain::Category;
use shequ_store::{EventLog, RecordedEvent};
use uuid::Uuid;

use crate::projection::{entity_id, AsOf, ContestView, MandateRow, Projection, ProjectionError, RequestRow};
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

/// The whole state as of `as_of`, in memory: for the inspectors' views over HTTP and for
/// tests. `progress` is called with the number of events folded so far, every page.
pub async fn replay(
    log: &EventLog,
    as_of: AsOf,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Projection, ServiceError> {
    let cut = cut(log, as_of).await?;
    let mut folded = Folded { count: 0, progress: &mut progress };
    let mut projection = kept_state(log, cut, &mut folded).await?;
    rows::<MandateRow>(log, MANDATE, cut, &mut folded, |id, row| {
        projection.insert_mandate(id, row);
        Ok(())
    })
    .await?;
    rows::<RequestRow>(log, REQUEST, cut, &mut folded, |id, row| {
        projection.insert_request(id, row);
        Ok(())
    })
    .await?;
    Ok(projection)
}

/// Only the balances (and organisations and catalogue) as of `as_of`: the ledger as of a date,
/// without reading a single mandate or request.
pub async fn replay_ledgers(log: &EventLog, as_of: AsOf) -> Result<Projection, ServiceError> {
    let cut = cut(log, as_of).await?;
    kept_state(log, cut, &mut Folded { count: 0, progress: &mut |_| {} }).await
}

/// Why [`write_state`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteStateError {
    #[error(transparent)]
    Replay(#[from] ServiceError),
    #[error("cannot write the state: {0}")]
    Output(#[from] std::io::Error),
}

/// Writes the state as of `as_of` to `out` as pretty JSON, byte for byte what
/// `serde_json::to_writer_pretty(&replay(..).document())` writes, holding one mandate or one
/// request at a time. Returns where it stopped. On an error, what was written so far is not
/// a whole document: write to a temporary file and keep it only on success.
pub async fn write_state(
    log: &EventLog,
    as_of: AsOf,
    mut progress: impl FnMut(u64) + Send,
    out: &mut (dyn Write + Send),
) -> Result<Cut, WriteStateError> {
    let cut = cut(log, as_of).await?;
    let mut folded = Folded { count: 0, progress: &mut progress };
    let kept = kept_state(log, cut, &mut folded).await?;

    let mut document = PrettyObject::begin(out)?;
    document.field("as_of", &kept.as_of())?;
    document.field("organisations", &kept.organisations().collect::<Vec<_>>())?;
    document.field("catalogue", &kept.catalogue_view())?;
    let mut contests: Vec<ContestView> = Vec::new();
    let mut mandates = document.array("mandates")?;
    let written = rows::<MandateRow>(log, MANDATE, cut, &mut folded, |id, row| {
        let Some(view) = row.view(id) else { return Ok(()) };
        contests.extend(view.contest.clone());
        mandates.item(&view)
    })
    .await;
    mandates.end(written)?;
    document.field("balances", &kept.all_balances())?;
    document.field("open_contests", &contests)?;
    let mut requests = document.array("requests")?;
    let written = rows::<RequestRow>(log, REQUEST, cut, &mut folded, |id, row| match row.view(id) {
        Some(view) => requests.item(&view),
        None => Ok(()),
    })
    .await;
    requests.end(written)?;
    document.end()?;
    Ok(cut)
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

/// A mandate's or a request's state, folded from its stream alone.
trait Row: Default + Send {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;
}

impl Row for MandateRow {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        MandateRow::fold(self, event)
    }
}

impl Row for RequestRow {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        RequestRow::fold(self, event)
    }
}

/// Folds each stream of `category` up to the cut and hands its state to `each` as soon as the
/// stream ends, in id order. One stream's state is in memory at a time.
async fn rows<R: Row>(
    log: &EventLog,
    category: &str,
    cut: Cut,
    folded: &mut Folded<'_>,
    mut each: impl FnMut(Uuid, R) -> std::io::Result<()> + Send,
) -> Result<(), RowsError> {
    let mut events = std::pin::pin!(log.stream_category(&category_of(category), cut.position, PAGE_EVENTS));
    let mut current: Option<(String, Uuid, R)> = None;
    while let Some(event) = events.try_next().await.map_err(|error| RowsError::Replay(error.into()))? {
        let same_stream = current.as_ref().is_some_and(|(stream, ..)| *stream == event.stream);
        if !same_stream {
            if let Some((_, id, row)) = current.take() {
                each(id, row).map_err(RowsError::Output)?;
            }
            let id = event.stream.split_once('-').and_then(|(_, id)| entity_id(id)).ok_or_else(|| {
                RowsError::Replay(projection_error(ProjectionError {
                    position: event.position,
                    stream: event.stream.clone(),
                    event_type: event.event_type.clone(),
                    reason: "the stream name does not end in a UUID (lower-case, hyphenated)".into(),
                }))
            })?;
            current = Some((event.stream.clone(), id, R::default()));
        }
        let (_, _, row) = current.as_mut().expect("a stream is being folded");
        row.fold(&event).map_err(|error| RowsError::Replay(projection_error(error)))?;
        folded.one();
    }
    if let Some((_, id, row)) = current {
        each(id, row).map_err(RowsError::Output)?;
    }
    (folded.progress)(folded.count);
    Ok(())
}

/// Why [`rows`] stopped.
enum RowsError {
    Replay(ServiceError),
    Output(std::io::Error),
}

impl From<RowsError> for ServiceError {
    fn from(error: RowsError) -> Self {
        match error {
            RowsError::Replay(error) => error,
            // Only `write_state` writes rows out; the others keep them.
            RowsError::Output(error) => ServiceError::Invalid(format!("cannot write the state: {error}")),
        }
    }
}

impl From<RowsError> for WriteStateError {
    fn from(error: RowsError) -> Self {
        match error {
            RowsError::Replay(error) => WriteStateError::Replay(error),
            RowsError::Output(error) => WriteStateError::Output(error),
        }
    }
}

fn category_of(name: &str) -> Category {
    Category::parse(name).expect("the projection's categories are valid")
}

fn projection_error(error: ProjectionError) -> ServiceError {
    ServiceError::Projection(error.to_string())
}

/// A JSON object written field by field as `serde_json`'s pretty printer writes it (two
/// spaces an indent, `"key": value`), so that a long array can be written one item at a time.
/// Each value is pretty-printed on its own and indented to its depth: pretty JSON holds no
/// line break inside a string, so indenting every line is exact.
struct PrettyObject<'a> {
    out: &'a mut (dyn Write + Send),
    fields: usize,
}

impl<'a> PrettyObject<'a> {
    fn begin(out: &'a mut (dyn Write + Send)) -> std::io::Result<Self> {
        out.write_all(b"{")?;
        Ok(Self { out, fields: 0 })
    }

    fn key(&mut self, key: &str) -> std::io::Result<()> {
        self.out.write_all(if self.fields == 0 { b"\n  " } else { b",\n  " })?;
        self.fields += 1;
        serde_json::to_writer(&mut *self.out, key)?;
        self.out.write_all(b": ")
    }

    fn field(&mut self, key: &str, value: &impl Serialize) -> std::io::Result<()> {
        self.key(key)?;
        write_indented(&mut *self.out, value, b"\n  ")
    }

    fn array(&mut self, key: &str) -> std::io::Result<PrettyArray<'_>> {
        self.key(key)?;
        self.out.write_all(b"[")?;
        Ok(PrettyArray { out: &mut *self.out, items: 0 })
    }

    fn end(self) -> std::io::Result<()> {
        self.out.write_all(if self.fields == 0 { b"}" } else { b"\n}" })
    }
}

/// An array inside a [`PrettyObject`], written one item at a time.
struct PrettyArray<'a> {
    out: &'a mut (dyn Write + Send),
    items: usize,
}

impl PrettyArray<'_> {
    fn item(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        self.out.write_all(if self.items == 0 { b"\n    " } else { b",\n    " })?;
        self.items += 1;
        write_indented(&mut *self.out, value, b"\n    ")
    }

    /// Closes the array once `written`, the filling of it, went through.
    fn end(self, written: Result<(), RowsError>) -> Result<(), WriteStateError> {
        written?;
        self.out.write_all(if self.items == 0 { b"]" } else { b"\n  ]" })?;
        Ok(())
    }
}

fn write_indented(
    out: &mut (dyn Write + Send),
    value: &impl Serialize,
    newline: &[u8],
) -> std::io::Result<()> {
    let pretty = serde_json::to_vec_pretty(value)?;
    let mut lines = pretty.split(|byte| *byte == b'\n');
    if let Some(first) = lines.next() {
        out.write_all(first)?;
    }
    for line in lines {
        out.write_all(newline)?;
        out.write_all(line)?;
    }
    Ok(())
}
