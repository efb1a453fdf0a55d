//! Two writer processes on one database: positions and the chain are decided inside the
//! database transaction, not by one process's memory.

use std::process::{ExitCode, Stdio};

use shequ_store::{EventLog, ExpectedRevision, StoreError};

use crate::helpers::{event, stream, tests, Db, TestFn};

/// Appends each child makes to a stream of its own.
const OWN_APPENDS: u64 = 150;
/// Every this many appends, a child also appends to the stream both share.
const SHARED_EVERY: u64 = 5;

const CHILD_ROLE: &str = "SHEQU_TEST_CHILD";
const CHILD_DB: &str = "SHEQU_TEST_CHILD_DB";
const CHILD_SHARED_STREAM: &str = "SHEQU_TEST_CHILD_SHARED_STREAM";

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![two_writer_processes_share_one_chain]
}

async fn two_writer_processes_share_one_chain(db: Db) {
    let shared = stream("mandate");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .env(CHILD_ROLE, "writer")
                .env(CHILD_DB, &db.url)
                .env(CHILD_SHARED_STREAM, &shared)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success(), "a writer failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let log = EventLog::open(&db.url).await.unwrap();
    let shared_appends = 2 * OWN_APPENDS / SHARED_EVERY;
    let total = 2 * OWN_APPENDS + shared_appends;
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!((report.events, report.failure), (total, None));
    let revisions: Vec<u64> =
        log.read_stream(&shared).await.unwrap().iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (0..shared_appends).collect::<Vec<_>>());
}

/// When this binary was started as a child writer, does the writing and returns its exit code.
pub fn run_child_if_asked() -> Option<ExitCode> {
    if std::env::var(CHILD_ROLE).ok()? != "writer" {
        return None;
    }
    let url = std::env::var(CHILD_DB).expect("the parent passes the database URL");
    let shared = std::env::var(CHILD_SHARED_STREAM).expect("the parent passes the shared stream");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let result = runtime.block_on(write_as_child(&url, &shared));
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("child writer: {error}");
            ExitCode::FAILURE
        }
    })
}

async fn write_as_child(url: &str, shared: &str) -> Result<(), StoreError> {
    let log = EventLog::open(url).await?;
    let own = stream("request");
    let mut expected = ExpectedRevision::NoStream;
    for count in 1..=OWN_APPENDS {
        expected =
            log.append(&own, expected, vec![event("Step", "{}")]).await?.next_expected_revision().unwrap();
        if count % SHARED_EVERY == 0 {
            append_to_shared(&log, shared).await?;
        }
    }
    log.close().await;
    Ok(())
}

/// Appends one event to the shared stream, re-reading and retrying on a conflict, as a
/// command handler would.
async fn append_to_shared(log: &EventLog, shared: &str) -> Result<(), StoreError> {
    loop {
        let expected = match log.read_stream(shared).await?.last() {
            None => ExpectedRevision::NoStream,
            Some(last) => ExpectedRevision::Exact(last.revision),
        };
        match log.append(shared, expected, vec![event("Shared", "{}")]).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
}
