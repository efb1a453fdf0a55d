//! `shequ export` and `shequ import`: the log to a directory and back, across backends, with
//! the same positions, hashes and Merkle root.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Parser;
use shequ::{Cli, Outcome};
use shequ_store::canonical::{chain_hash, GENESIS_HASH};
use shequ_store::{EventLog, ExpectedRevision, LogHead, NewEvent, RecordedEvent, StoreError};

use crate::cli::shequ;
use crate::helpers::{event, stream, tests, Db, ExtraDb, TestFn};

/// Tests that make a store on the other backend too: not run when PostgreSQL is unreachable.
pub const ACROSS_BACKENDS: &[&str] = &["round_trips_across_backends_with_equal_hashes_and_roots"];

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        round_trips_across_backends_with_equal_hashes_and_roots,
        stream_documents_are_kurrentdb_events_documents,
        import_refuses_a_store_that_is_not_empty,
        import_refuses_an_altered_event_naming_its_position,
        import_refuses_a_forged_stream_revision,
        export_refuses_a_directory_that_is_not_empty,
        appends_continue_after_an_import,
    ]
}

/// Everything an export must carry over: every event as stored (with its time and hash), the
/// head, and the Merkle root.
async fn contents(log: &EventLog) -> (Vec<RecordedEvent>, LogHead, [u8; 32]) {
    let head = log.head().await.unwrap();
    let events = log.read_all(1, 10_000).await.unwrap();
    assert_eq!(events.len() as u64, head.position, "the test logs fit one page");
    (events, head, log.merkle_root(head.position).await.unwrap())
}

/// Every file under `directory`, by relative path, with its bytes.
fn files(directory: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => pending.push(path),
                false => {
                    let name = path.strip_prefix(directory).unwrap().display().to_string();
                    found.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    found
}

async fn export_to(url: &str, out: &Path) -> String {
    let (outcome, report) =
        shequ(&["--db", url, "export", "--format", "kurrentdb", "--out", path(out)]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    report
}

async fn import_from(url: &str, from: &Path) -> String {
    let (outcome, report) = shequ(&["--db", url, "import", "--from", path(from)]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success, "{report}");
    report
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `count` events, one per new stream of `category`, with data `{"n":N}`.
async fn fill(log: &EventLog, category: &str, count: u32) {
    for n in 0..count {
        log.append(
            &stream(category),
            ExpectedRevision::NoStream,
            vec![event("Filed", &format!("{{\"n\":{n}}}"))],
        )
        .await
        .unwrap();
    }
}

async fn round_trips_across_backends_with_equal_hashes_and_roots(db: Db) {
    let directory = tempfile::tempdir().unwrap();
    let key = directory.path().join("checkpoint.key");
    // The first store: the demo world, an event whose JSON texts have white space around and
    // between their tokens (which embedding as JSON alone would lose), and a signed checkpoint.
    let (outcome, _) = shequ(&["--db", &db.url, "demo"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    let log = EventLog::open(&db.url).await.unwrap();
    let spaced = NewEvent {
        data: " {\"名称\" :\n \"东城区\", \"s\": \"a b\"}\t".to_owned(),
        metadata: "{ }\r\n".to_owned(),
        ..event("Filed", "{}")
    };
    log.append(&stream("request"), ExpectedRevision::NoStream, vec![spaced]).await.unwrap();
    let (outcome, _) = shequ(&["--db", &db.url, "--checkpoint-key-file", path(&key), "checkpoint"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    let original = contents(&log).await;
    assert!(original.1.position > 100, "the demo fills the log");

    // db → the other backend → db's backend again, exporting each.
    let second = ExtraDb::create(db.backend.other()).await;
    let third = ExtraDb::create(db.backend).await;
    let exports: Vec<_> = (1..=3).map(|n| directory.path().join(format!("export-{n}"))).collect();
    let report = export_to(&db.url, &exports[0]).await;
    let head = format!("head at position {}, hash {}", original.1.position, hex::encode(original.1.hash));
    assert!(report.contains(&head) && report.contains(&hex::encode(original.2)), "{report}");
    for (store, (from, to)) in [&second, &third].into_iter().zip([(0, 1), (1, 2)]) {
        let report = import_from(&store.db.url, &exports[from]).await;
        assert!(report.contains(&format!("imported {} events", original.1.position)), "{report}");
        assert!(report.contains(&head), "{report}");
        let imported = EventLog::open(&store.db.url).await.unwrap();
        assert_eq!(contents(&imported).await, original, "positions, texts, times, hashes and root are kept");
        let (outcome, report) = shequ(&["--db", &store.db.url, "verify"]).await;
        assert_eq!(outcome.unwrap(), Outcome::Success, "{report}");
        assert!(report.contains("1 signed checkpoints hold"), "{report}");
        export_to(&store.db.url, &exports[to]).await;
        imported.close().await;
    }
    let first = files(&exports[0]);
    assert!(first.contains_key("log.jsonl") && first.contains_key("manifest.json"), "{:?}", first.keys());
    assert_eq!(files(&exports[1]), first, "the export of the imported store is byte for byte the same");
    assert_eq!(files(&exports[2]), first);
    log.close().await;
}

async fn stream_documents_are_kurrentdb_events_documents(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let odd = "request-A/b:c".to_owned();
    let events = vec![event("Filed", r#"{"n":1}"#), event("Answered", r#"{"n":2}"#)];
    let ids: Vec<String> = events.iter().map(|event| event.event_id.to_string()).collect();
    log.append(&odd, ExpectedRevision::NoStream, events).await.unwrap();
    fill(&log, "mandate", 2).await;
    log.append(&odd, ExpectedRevision::Exact(1), vec![event("Closed", "[]")]).await.unwrap();
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("out");
    let report = export_to(&db.url, &out).await;
    assert!(report.starts_with("exported 5 events in 3 streams to "), "{report}");

    let document = out.join("streams").join("request-%41%2Fb%3Ac.json");
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&document).unwrap()).unwrap();
    let items = document.as_array().unwrap();
    assert_eq!(items.len(), 3, "{document}");
    for item in items {
        let mut keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["data", "eventId", "eventType", "metadata"], "exactly KurrentDB's members");
    }
    assert_eq!(items[0]["eventId"], ids[0].as_str());
    assert_eq!(items[1]["eventId"], ids[1].as_str());
    assert_eq!(items[1]["eventType"], "Answered");
    assert_eq!(items[1]["data"], serde_json::json!({"n": 2}));
    assert_eq!(items[2]["eventType"], "Closed", "in revision order");
    assert_eq!(items[0]["metadata"]["actor"], "system:test");
    assert_eq!(std::fs::read_dir(out.join("streams")).unwrap().count(), 3);

    let lines = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> =
        lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4]["position"], 5);
    assert_eq!(lines[4]["stream"], odd.as_str());
    assert_eq!(lines[4]["revision"], 2);
    assert_eq!(lines[4]["data"], serde_json::json!([]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let head = log.head().await.unwrap();
    assert_eq!(manifest["formatVersion"], 1);
    assert_eq!(manifest["events"], 5);
    assert_eq!(manifest["streams"], 3);
    assert_eq!(manifest["headHash"], hex::encode(head.hash));
    assert_eq!(manifest["merkleRoot"], hex::encode(log.merkle_root(5).await.unwrap()));
}

async fn import_refuses_a_store_that_is_not_empty(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    fill(&log, "request", 3).await;
    let directory = tempfile::tempdir().unwrap();
    export_to(&db.url, directory.path()).await;
    let before = contents(&log).await;
    let (outcome, _) = shequ(&["--db", &db.url, "import", "--from", path(directory.path())]).await;
    let error = shequ::chain(&outcome.unwrap_err());
    assert_eq!(
        error,
        "the store is not empty (its log head is at position 3): import only into a new, empty store"
    );
    // The store's own refusal, for callers of the library.
    let nothing = futures::stream::iter(Vec::<Result<RecordedEvent, StoreError>>::new());
    let refused = log.import(nothing, |_| {}).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotEmpty { head: 3 }), "{refused}");
    assert_eq!(contents(&log).await, before, "nothing changed");
}

async fn import_refuses_an_altered_event_naming_its_position(db: Db) {
    let source = ExtraDb::create(db.backend).await;
    let source_log = EventLog::open(&source.db.url).await.unwrap();
    fill(&source_log, "request", 5).await;
    let directory = tempfile::tempdir().unwrap();
    export_to(&source.db.url, directory.path()).await;
    let log_file = directory.path().join("log.jsonl");
    let exported = std::fs::read_to_string(&log_file).unwrap();
    let lines: Vec<&str> = exported.lines().collect();
    let rewrite = |lines: Vec<String>| std::fs::write(&log_file, lines.join("\n") + "\n").unwrap();
    let refusal = |lines: Vec<String>| {
        rewrite(lines);
        let url = db.url.clone();
        let from = directory.path().to_owned();
        async move {
            let (outcome, _) = shequ(&["--db", &url, "import", "--from", path(&from)]).await;
            shequ::chain(&outcome.unwrap_err())
        }
    };

    // One event's data altered: its recomputed hash no longer matches.
    let mut altered: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
    assert!(altered[2].contains(r#""data":{"n":2}"#), "{}", altered[2]);
    altered[2] = altered[2].replace(r#""data":{"n":2}"#, r#""data":{"n":9}"#);
    let error = refusal(altered).await;
    assert!(error.starts_with("import refused at position 3: the exported hash does not match"), "{error}");

    // One event left out.
    let mut missing: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
    missing.remove(3);
    let error = refusal(missing).await;
    assert_eq!(error, "import refused at position 4: expected position 4, found 5");

    // The tail cut off: the chain holds, the manifest does not.
    let cut: Vec<String> = lines[..4].iter().map(|line| line.to_string()).collect();
    let error = refusal(cut).await;
    assert!(
        error.starts_with("log.jsonl does not match the manifest: 4 events, the manifest says 5"),
        "{error}"
    );

    // Nothing was imported by any of them: the whole file is checked before writing.
    let log = EventLog::open(&db.url).await.unwrap();
    assert_eq!(log.head().await.unwrap().position, 0);
    rewrite(lines.iter().map(|line| line.to_string()).collect());
    import_from(&db.url, directory.path()).await;
    assert_eq!(contents(&log).await, contents(&source_log).await);
    source_log.close().await;
}

async fn import_refuses_a_forged_stream_revision(db: Db) {
    // A log whose chain is recomputed over a stream revision that skips one: the chain alone
    // holds, the revisions do not.
    let forged = stream("request");
    let other = stream("request");
    let mut previous = GENESIS_HASH;
    let mut events = Vec::new();
    for (position, stream, revision) in [(1, &forged, 0), (2, &forged, 1), (3, &other, 0), (4, &forged, 3)] {
        let new = event("Filed", "{}");
        let mut recorded = RecordedEvent {
            position,
            stream: stream.clone(),
            revision,
            event_id: new.event_id,
            event_type: new.event_type,
            event_version: new.event_version,
            data: new.data,
            metadata: new.metadata,
            recorded_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            hash: [0; 32],
        };
        recorded.hash = chain_hash(&previous, &recorded);
        previous = recorded.hash;
        events.push(recorded);
    }
    let log = EventLog::open(&db.url).await.unwrap();
    let input = futures::stream::iter(events.clone().into_iter().map(Ok::<_, StoreError>));
    let refused = log.import(input, |_| {}).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("import refused at position 4: stream `{forged}` expected revision 2, found 3")
    );
    assert_eq!(log.head().await.unwrap().position, 0, "the batch is one transaction");

    // An event id used twice, with a consistent chain.
    events[1].event_id = events[0].event_id;
    events[1].hash = chain_hash(&events[0].hash, &events[1]);
    let input = futures::stream::iter(events[..2].iter().cloned().map(Ok::<_, StoreError>));
    let refused = log.import(input, |_| {}).await.unwrap_err();
    assert!(refused.to_string().starts_with("import refused at position 2: event id"), "{refused}");
    assert_eq!(log.head().await.unwrap().position, 0);
}

async fn export_refuses_a_directory_that_is_not_empty(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    fill(&log, "request", 2).await;
    let directory = tempfile::tempdir().unwrap();
    let notes = directory.path().join("notes.txt");
    std::fs::write(&notes, "keep me").unwrap();
    let (outcome, _) =
        shequ(&["--db", &db.url, "export", "--format", "kurrentdb", "--out", path(directory.path())]).await;
    let error = shequ::chain(&outcome.unwrap_err());
    assert_eq!(
        error,
        format!(
            "{} exists and is not empty: export writes only into a new or empty directory",
            path(directory.path())
        )
    );
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1, "nothing was written");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "keep me");
    // A file is not a directory.
    let (outcome, _) =
        shequ(&["--db", &db.url, "export", "--format", "kurrentdb", "--out", path(&notes)]).await;
    assert!(shequ::chain(&outcome.unwrap_err()).starts_with("cannot read "), "a file is refused");
    // An empty directory is fine, and kurrentdb is the only format.
    let empty = directory.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    export_to(&db.url, &empty).await;
    let other_format = ["shequ", "export", "--format", "csv", "--out", "x"];
    assert!(Cli::try_parse_from(other_format).is_err());
}

async fn appends_continue_after_an_import(db: Db) {
    let source = ExtraDb::create(db.backend).await;
    let source_log = EventLog::open(&source.db.url).await.unwrap();
    let kept = stream("mandate");
    source_log
        .append(&kept, ExpectedRevision::NoStream, vec![event("Admitted", "{}"), event("Accepted", "{}")])
        .await
        .unwrap();
    fill(&source_log, "request", 3).await;
    let source_events = source_log.read_all(1, 100).await.unwrap();

    // Imported through the library on a log whose writer is already running.
    let log = EventLog::open(&db.url).await.unwrap();
    let input = futures::stream::iter(source_events.clone().into_iter().map(Ok::<_, StoreError>));
    let mut progress = Vec::new();
    let report = log.import(input, |imported| progress.push(imported)).await.unwrap();
    assert_eq!(report.events, 5);
    assert_eq!(progress, [5]);
    assert_eq!(report.head, source_log.head().await.unwrap());

    // Appends pick up the imported stream revisions and chain from the imported head.
    let refused =
        log.append(&kept, ExpectedRevision::NoStream, vec![event("Again", "{}")]).await.unwrap_err();
    assert!(matches!(refused, StoreError::Conflict { actual: Some(1), .. }), "{refused}");
    let appended =
        log.append(&kept, ExpectedRevision::Exact(1), vec![event("Completed", "{}")]).await.unwrap();
    assert_eq!((appended.events[0].position, appended.events[0].revision), (6, 2));
    fill(&log, "request", 1).await;
    assert_eq!(log.read_all(1, 100).await.unwrap()[..5], source_events[..]);
    let (outcome, report) = shequ(&["--db", &db.url, "verify"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success, "{report}");
    assert!(report.starts_with("ok: 7 events, hash chain intact; head at position 7"), "{report}");
    // An event id taken by the import is taken for appends too.
    let reused = NewEvent { event_id: source_events[2].event_id, ..event("Filed", "{}") };
    let refused = log.append(&stream("request"), ExpectedRevision::NoStream, vec![reused]).await.unwrap_err();
    assert!(matches!(refused, StoreError::EventIdReused { .. }), "{refused}");
    source_log.close().await;
}
