//! `shequ export` and `shequ import`: the whole log to a directory and back, keeping
//! positions, hashes and the Merkle root. The layout is specified in `docs/audit-format.md`
//! ("Export format"):
//!
//! ```text
//! DIR/log.jsonl            every event in position order, one JSON object a line
//! DIR/streams/<name>.json  each stream as a KurrentDB events document
//! DIR/manifest.json        events, streams, head position and hash, Merkle root; written last
//! ```
//!
//! Memory stays flat in the log's size: the log is read page by page, `log.jsonl` is written
//! in one pass, and each stream document is appended to as its events come (only the current
//! stream's file is open), so nothing per stream is held. The Merkle root is built leaf by
//! leaf in O(log n). Import reads `log.jsonl` line by line, twice: once to check the whole
//! file against the manifest before anything is written, once to import it.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use shequ_store::canonical::{chain_hash, leaf_hash, GENESIS_HASH};
use shequ_store::merkle::RootBuilder;
use shequ_store::{ChainCheck, EventLog, LogHead, RecordedEvent, StoreError};
use uuid::Uuid;

use crate::{CliError, Outcome};

/// The version of the layout below; an import refuses any other.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "shequ-export";
const LOG_FILE: &str = "log.jsonl";
const STREAMS_DIR: &str = "streams";
const MANIFEST_FILE: &str = "manifest.json";
/// Events read per page while exporting.
const EXPORT_PAGE_EVENTS: u32 = 1_000;
/// The longest line of `log.jsonl` accepted: an event's data and metadata are at most 1 MiB
/// each, and a line may carry each twice (as JSON and as exact text, escaped).
const LINE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The largest `manifest.json` accepted.
const MANIFEST_BYTES_MAX: u64 = 64 * 1024;
/// The longest stream file name kept readable; longer ones are named by a hash.
const FILE_STEM_BYTES_MAX: usize = 200;

/// What `shequ export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// KurrentDB/EventStoreDB events documents (application/vnd.eventstore.events+json), one
    /// per stream, plus the whole log as JSON lines with positions and hashes.
    Kurrentdb,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{} exists and is not empty: export writes only into a new or empty directory", .0.display())]
    OutNotEmpty(PathBuf),
    #[error("cannot {action} {}: {source}", path.display())]
    File { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{}, line {line}: {reason}", path.display())]
    Line { path: PathBuf, line: u64, reason: String },
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{what} does not match the manifest: {reason}")]
    Mismatch { what: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn file_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ExportError + 'a {
    move |source| ExportError::File { action, path: path.to_owned(), source }
}

/// `manifest.json`. Holds nothing that differs between two exports of the same log (no
/// time, no database), so that they are byte for byte equal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    format: String,
    format_version: u32,
    events: u64,
    streams: u64,
    head_position: u64,
    /// Lower-case hex.
    head_hash: String,
    /// RFC 6962 Merkle Tree Hash of all events, lower-case hex.
    merkle_root: String,
}

/// One line of `log.jsonl`, as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogLine<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    event_id: Uuid,
    event_type: &'a str,
    event_version: u32,
    data: &'a RawValue,
    metadata: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_text: Option<&'a str>,
    recorded_at: String,
    hash: String,
}

/// One line of `log.jsonl`, as read back.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadLine<'a> {
    position: u64,
    stream: String,
    revision: u64,
    event_id: Uuid,
    event_type: String,
    event_version: u32,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow)]
    metadata: &'a RawValue,
    #[serde(default)]
    data_text: Option<String>,
    #[serde(default)]
    metadata_text: Option<String>,
    recorded_at: String,
    hash: String,
}

/// One event of a KurrentDB events document (`application/vnd.eventstore.events+json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KurrentEvent<'a> {
    event_id: Uuid,
    event_type: &'a str,
    data: &'a RawValue,
    metadata: &'a RawValue,
}

/// `shequ export --format kurrentdb --out DIR`.
pub async fn export(
    log: &EventLog,
    format: Format,
    dir: &Path,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let Format::Kurrentdb = format;
    prepare_out_dir(dir)?;
    // The export is of the log as it is now: appends while it runs come after this head.
    let head = log.head().await?;
    let streams_dir = dir.join(STREAMS_DIR);
    fs::create_dir(&streams_dir).map_err(file_error("create", &streams_dir))?;
    let log_path = dir.join(LOG_FILE);
    let log_file = File::create_new(&log_path).map_err(file_error("create", &log_path))?;
    let mut lines = BufWriter::new(log_file);
    let mut documents = StreamDocuments::new(streams_dir);
    let mut merkle = RootBuilder::new();
    let mut previous = LogHead { position: 0, hash: GENESIS_HASH };
    let bar = progress_bar(head.position, "exporting");

    let mut events = std::pin::pin!(log.stream_all(1, EXPORT_PAGE_EVENTS));
    while previous.position < head.position {
        let Some(event) = events.try_next().await? else { break };
        // The chain is checked on the way, so that a broken log is not passed on as sound.
        let corrupt = |reason: &str| StoreError::Corrupt {
            position: previous.position + 1,
            reason: format!("{reason}; run `shequ verify`"),
        };
        if event.position != previous.position + 1 {
            return Err(corrupt(&format!("found position {} in its place", event.position)).into());
        }
        if chain_hash(&previous.hash, &event) != event.hash {
            return Err(corrupt("the stored hash does not match the event").into());
        }
        previous = LogHead { position: event.position, hash: event.hash };
        merkle.push(leaf_hash(&event));
        let json = EventJson::of(&event)?;
        write_log_line(&mut lines, &event, &json).map_err(file_error("write", &log_path))?;
        documents.append(&event, &json)?;
        bar.inc(1);
    }
    if previous.position != head.position || previous.hash != head.hash {
        let reason = format!("the log head is at position {} but the log ends before it", head.position);
        return Err(StoreError::Corrupt { position: previous.position + 1, reason }.into());
    }
    lines.flush().map_err(file_error("write", &log_path))?;
    let streams = documents.finish()?;
    bar.finish_and_clear();

    // Last: a directory without a manifest is an export that did not finish.
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        format_version: FORMAT_VERSION,
        events: head.position,
        streams,
        head_position: head.position,
        head_hash: hex::encode(head.hash),
        merkle_root: hex::encode(merkle.root()),
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(&manifest)
        .map_err(|error| ExportError::Manifest { path: manifest_path.clone(), reason: error.to_string() })?;
    text.push('\n');
    fs::write(&manifest_path, text).map_err(file_error("write", &manifest_path))?;
    writeln!(
        out,
        "exported {} events in {streams} streams to {} (kurrentdb)\nhead at position {}, hash {}; Merkle root {}",
        head.position,
        dir.display(),
        head.position,
        manifest.head_hash,
        manifest.merkle_root
    )
    .map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

/// `shequ import --from DIR`: into an empty store only.
pub async fn import(log: &EventLog, dir: &Path, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let manifest = read_manifest(dir)?;
    let head = log.head().await?;
    if head.position != 0 {
        return Err(StoreError::NotEmpty { head: head.position }.into());
    }

    // First pass: the whole file must hold together and match the manifest before a single
    // event is written, so that a tampered or truncated export leaves the store empty.
    let bar = progress_bar(manifest.events, "checking");
    let mut check = ChainCheck::new();
    let mut merkle = RootBuilder::new();
    let mut streams = 0;
    for event in LogLines::open(dir)? {
        let event = event?;
        check.check(&event)?;
        merkle.push(leaf_hash(&event));
        streams += u64::from(event.revision == 0);
        bar.inc(1);
    }
    compare(&manifest, LOG_FILE, check.head(), merkle.root(), Some(streams))?;

    // Second pass: the store checks every event again as it writes it.
    bar.reset();
    bar.set_message("importing");
    let events = futures::stream::iter(LogLines::open(dir)?);
    let report = log.import(events, |imported| bar.set_position(imported)).await.map_err(CliError::from)?;
    bar.finish_and_clear();

    // What the database now holds, read back from it.
    let head = log.head().await?;
    let root = log.merkle_root(head.position).await?;
    compare(&manifest, "the imported log", head, root, None)?;
    writeln!(
        out,
        "imported {} events in {streams} streams into {} from {}\nhead at position {}, hash {}; Merkle root {}: as in the manifest",
        report.events,
        log.kind(),
        dir.display(),
        head.position,
        hex::encode(head.hash),
        hex::encode(root)
    )
    .map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

/// Creates `dir` if missing; refuses one that holds anything.
fn prepare_out_dir(dir: &Path) -> Result<(), ExportError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(ExportError::OutNotEmpty(dir.to_owned())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(file_error("create", dir))
        }
        Err(error) => Err(file_error("read", dir)(error)),
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, ExportError> {
    let path = dir.join(MANIFEST_FILE);
    let invalid = |reason: String| ExportError::Manifest { path: path.clone(), reason };
    let file = File::open(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => invalid(format!(
            "missing: not a `shequ export` directory, or an export that did not finish ({MANIFEST_FILE} is written last)"
        )),
        _ => file_error("read", &path)(source),
    })?;
    let mut text = String::new();
    file.take(MANIFEST_BYTES_MAX + 1).read_to_string(&mut text).map_err(file_error("read", &path))?;
    if text.len() as u64 > MANIFEST_BYTES_MAX {
        return Err(invalid(format!("larger than {MANIFEST_BYTES_MAX} bytes")));
    }
    let manifest: Manifest = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    if manifest.format != FORMAT_NAME || manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format `{}` version {}; this shequ reads `{FORMAT_NAME}` version {FORMAT_VERSION}",
            manifest.format, manifest.format_version
        )));
    }
    Ok(manifest)
}

/// Checks a log's head, root and (where counted) streams against the manifest.
fn compare(
    manifest: &Manifest,
    what: &'static str,
    head: LogHead,
    root: [u8; 32],
    streams: Option<u64>,
) -> Result<(), ExportError> {
    let mismatch = |reason: String| Err(ExportError::Mismatch { what, reason });
    if manifest.events != manifest.head_position {
        return mismatch(format!(
            "the manifest's {} events cannot end at position {}",
            manifest.events, manifest.head_position
        ));
    }
    if head.position != manifest.head_position {
        return mismatch(format!("{} events, the manifest says {}", head.position, manifest.events));
    }
    if hex::encode(head.hash) != manifest.head_hash {
        return mismatch(format!(
            "head hash {}, the manifest says {}",
            hex::encode(head.hash),
            manifest.head_hash
        ));
    }
    if hex::encode(root) != manifest.merkle_root {
        return mismatch(format!(
            "Merkle root {}, the manifest says {}",
            hex::encode(root),
            manifest.merkle_root
        ));
    }
    match streams {
        Some(streams) if streams != manifest.streams => {
            mismatch(format!("{streams} streams, the manifest says {}", manifest.streams))
        }
        _ => Ok(()),
    }
}

/// An event's data and metadata as JSON to embed, and, where embedding would not keep the
/// stored bytes, the exact text too.
struct EventJson<'a> {
    data: Embedded<'a>,
    metadata: Embedded<'a>,
}

struct Embedded<'a> {
    json: Box<RawValue>,
    /// The stored text, when `json` is not byte for byte the same.
    exact: Option<&'a str>,
}

impl<'a> EventJson<'a> {
    fn of(event: &'a RecordedEvent) -> Result<Self, StoreError> {
        let embed = |field: &str, text: &'a str| {
            embed(text).map_err(|error| StoreError::Decode {
                position: event.position,
                reason: format!("{field} is not JSON: {error}"),
            })
        };
        Ok(Self { data: embed("data", &event.data)?, metadata: embed("metadata", &event.metadata)? })
    }
}

/// JSON text is embedded verbatim when that keeps it byte for byte on one line. Otherwise
/// (white space around it, or line breaks between its tokens) the line carries it without
/// white space between tokens as JSON, and the exact stored text as a string beside it.
fn embed(text: &str) -> Result<Embedded<'_>, serde_json::Error> {
    let verbatim = !text.contains(['\n', '\r']) && text.trim_matches([' ', '\t']) == text;
    match verbatim {
        true => Ok(Embedded { json: RawValue::from_string(text.to_owned())?, exact: None }),
        false => Ok(Embedded { json: RawValue::from_string(without_white_space(text))?, exact: Some(text) }),
    }
}

/// JSON text without the white space between its tokens (strings are kept as they are).
fn without_white_space(text: &str) -> String {
    let mut compact = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for character in text.chars() {
        if in_string {
            compact.push(character);
            match (escaped, character) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(character, ' ' | '\t' | '\n' | '\r') {
            in_string = character == '"';
            compact.push(character);
        }
    }
    compact
}

fn write_log_line(
    writer: &mut impl Write,
    event: &RecordedEvent,
    json: &EventJson<'_>,
) -> std::io::Result<()> {
    let line = LogLine {
        position: event.position,
        stream: &event.stream,
        revision: event.revision,
        event_id: event.event_id,
        event_type: &event.event_type,
        event_version: event.event_version,
        data: &json.data.json,
        metadata: &json.metadata.json,
        data_text: json.data.exact,
        metadata_text: json.metadata.exact,
        recorded_at: event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        hash: hex::encode(event.hash),
    };
    serde_json::to_writer(&mut *writer, &line)?;
    writer.write_all(b"\n")
}

/// The stream documents, written by appending each event to its stream's file as the log
/// passes: a stream's first event (revision 0) creates the file and opens the array, later
/// ones append to it, and `finish` closes every array. Only the file of the stream being
/// written is open, and nothing is remembered per stream, so memory does not grow with the
/// number of streams (a second pass per stream would re-read the log from the database once
/// per stream; holding the streams in memory would grow with the log).
struct StreamDocuments {
    dir: PathBuf,
    current: Option<(String, PathBuf, BufWriter<File>)>,
}

impl StreamDocuments {
    fn new(dir: PathBuf) -> Self {
        Self { dir, current: None }
    }

    fn append(&mut self, event: &RecordedEvent, json: &EventJson<'_>) -> Result<(), ExportError> {
        let same_stream = matches!(&self.current, Some((stream, ..)) if *stream == event.stream);
        let (_, path, writer) = match (&mut self.current, same_stream && event.revision > 0) {
            (Some(current), true) => current,
            (current, _) => {
                if let Some((_, path, mut writer)) = current.take() {
                    writer.flush().map_err(file_error("write", &path))?;
                }
                let path = self.dir.join(stream_file_name(&event.stream));
                let file = match event.revision {
                    0 => OpenOptions::new().write(true).create_new(true).open(&path),
                    _ => OpenOptions::new().append(true).open(&path),
                }
                .map_err(file_error("write", &path))?;
                current.insert((event.stream.clone(), path, BufWriter::new(file)))
            }
        };
        let item = KurrentEvent {
            event_id: event.event_id,
            event_type: &event.event_type,
            data: &json.data.json,
            metadata: &json.metadata.json,
        };
        let separator: &[u8] = match event.revision {
            0 => b"[\n",
            _ => b",\n",
        };
        writer
            .write_all(separator)
            .and_then(|()| serde_json::to_writer(&mut *writer, &item).map_err(std::io::Error::from))
            .map_err(file_error("write", path))
    }

    /// Closes every stream's array; returns the number of streams.
    fn finish(mut self) -> Result<u64, ExportError> {
        if let Some((_, path, mut writer)) = self.current.take() {
            writer.flush().map_err(file_error("write", &path))?;
        }
        let mut streams = 0;
        for entry in fs::read_dir(&self.dir).map_err(file_error("read", &self.dir))? {
            let path = entry.map_err(file_error("read", &self.dir))?.path();
            let mut file = OpenOptions::new().append(true).open(&path).map_err(file_error("write", &path))?;
            file.write_all(b"\n]\n").map_err(file_error("write", &path))?;
            streams += 1;
        }
        Ok(streams)
    }
}

/// A file name for a stream's document: bytes other than `a–z 0–9 - _ .` as `%XX` (upper-case
/// hex), so that names are safe on every file system, distinct even where case is not, and
/// the stream name can be read back; names past 200 bytes become `~` and the SHA-256 of the
/// stream name, in hex (the stream is then named in `log.jsonl`).
pub fn stream_file_name(stream: &str) -> String {
    let mut stem = String::with_capacity(stream.len() + 8);
    for byte in stream.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => stem.push(char::from(byte)),
            _ => stem.push_str(&format!("%{byte:02X}")),
        }
    }
    if stem.len() > FILE_STEM_BYTES_MAX {
        stem = format!("~{}", hex::encode(Sha256::digest(stream.as_bytes())));
    }
    stem + ".json"
}

/// The events of `log.jsonl`, one line at a time.
struct LogLines {
    reader: BufReader<File>,
    path: PathBuf,
    line: u64,
    buffer: Vec<u8>,
    failed: bool,
}

impl LogLines {
    fn open(dir: &Path) -> Result<Self, ExportError> {
        let path = dir.join(LOG_FILE);
        let file = File::open(&path).map_err(file_error("read", &path))?;
        Ok(Self { reader: BufReader::new(file), path, line: 0, buffer: Vec::new(), failed: false })
    }

    fn read_next(&mut self) -> Result<Option<RecordedEvent>, ExportError> {
        self.buffer.clear();
        let read = (&mut self.reader)
            .take(LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut self.buffer)
            .map_err(file_error("read", &self.path))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let invalid = |reason: String| ExportError::Line { path: self.path.clone(), line: self.line, reason };
        let Some(text) = self.buffer.strip_suffix(b"\n") else {
            return Err(invalid(match read as u64 > LINE_BYTES_MAX {
                true => format!("longer than {LINE_BYTES_MAX} bytes"),
                false => "the last line does not end in a line break: the file was cut short".to_owned(),
            }));
        };
        parse_line(text).map(Some).map_err(invalid)
    }
}

impl Iterator for LogLines {
    type Item = Result<RecordedEvent, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.read_next().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

fn parse_line(text: &[u8]) -> Result<RecordedEvent, String> {
    let line: ReadLine<'_> = serde_json::from_slice(text).map_err(|error| error.to_string())?;
    let data = stored_text("data", line.data, line.data_text)?;
    let metadata = stored_text("metadata", line.metadata, line.metadata_text)?;
    let recorded_at = DateTime::parse_from_rfc3339(&line.recorded_at)
        .map_err(|error| format!("recordedAt `{}`: {error}", line.recorded_at))?
        .with_timezone(&Utc);
    // Both databases keep microseconds; finer times would not come back as exported.
    if recorded_at.nanosecond() % 1_000 != 0 {
        return Err(format!("recordedAt `{}` is finer than microseconds", line.recorded_at));
    }
    let hash = hex::decode(&line.hash)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| format!("hash `{}` is not 64 hex digits", line.hash))?;
    Ok(RecordedEvent {
        position: line.position,
        stream: line.stream,
        revision: line.revision,
        event_id: line.event_id,
        event_type: line.event_type,
        event_version: line.event_version,
        data,
        metadata,
        recorded_at,
        hash,
    })
}

/// The stored text: the exact text where the line carries one (it must be the same JSON as
/// the embedded one), else the embedded JSON's own bytes.
fn stored_text(field: &str, json: &RawValue, exact: Option<String>) -> Result<String, String> {
    match exact {
        None => Ok(json.get().to_owned()),
        Some(exact) if without_white_space(&exact) == json.get() => Ok(exact),
        Some(_) => Err(format!("{field}Text is not the same JSON as {field}")),
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (pipes, files, tests).
pub(crate) fn progress_bar(length: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_file_names_are_safe_and_distinct() {
        assert_eq!(
            stream_file_name("mandate-0190f3c4-7d1e-7c3a-9a1b-000000000001"),
            "mandate-0190f3c4-7d1e-7c3a-9a1b-000000000001.json"
        );
        assert_eq!(stream_file_name("request-A/b:c%"), "request-%41%2Fb%3Ac%25.json");
        assert_ne!(stream_file_name("request-A"), stream_file_name("request-a"));
        let long = format!("request-{}", "X".repeat(200));
        let name = stream_file_name(&long);
        assert!(name.starts_with('~') && name.len() == 1 + 64 + 5, "{name}");
    }

    #[test]
    fn embedding_keeps_the_stored_bytes() {
        for text in
            [r#"{"a":1}"#, r#"{ "a" : [1, 2] }"#, " {\"a\":\n 1}\t", "[\"x \\\" \\n y\",\r\n 2]", "\"\""]
        {
            let embedded = embed(text).unwrap();
            let stored = stored_text("data", &embedded.json, embedded.exact.map(str::to_owned)).unwrap();
            assert_eq!(stored, text);
            assert!(!embedded.json.get().contains('\n'), "{text:?}");
        }
        let compact = embed("{\n \"a b\" : \"c d\" }").unwrap();
        assert_eq!(compact.json.get(), r#"{"a b":"c d"}"#);
    }
}
