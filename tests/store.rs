//! The event log's contract, run on both backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use esrs::manager::AggregateManager;
use esrs::store::EventStore;
use esrs::AggregateState;
use shequ_domain::organisation::{Organisation, OrganisationCommand, OrganisationError, OrganisationKind};
use shequ_store::{merkle, CatchUp, CommandContext, EventLog, ExpectedRevision, StoreError, StreamAppend};
use uuid::Uuid;

use crate::helpers::{
    disable_append_only, event, execute_directly, stream, tamper, tests, BackendUnderTest, Db, TestFn,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        appends_and_reads_back_byte_exact,
        expected_revision_is_checked,
        reappending_the_same_ids_returns_the_original_result,
        an_append_queued_on_another_commits_only_on_top_of_it,
        an_append_to_several_streams_commits_all_or_none,
        asking_whether_an_append_is_decided_never_stalls_its_waiter,
        bad_appends_are_refused_and_write_nothing,
        sixteen_writers_on_one_stream_one_winner_per_revision,
        sixteen_writers_on_different_streams_keep_positions_gap_free,
        restart_resumes_the_chain_and_the_subscription,
        subscription_wakes_on_commit,
        aggregates_run_through_the_esrs_manager,
        the_log_refuses_edits_and_deletes,
        verify_names_the_first_altered_row,
        verify_names_the_first_deleted_row,
        verify_names_the_first_deleted_tail_row,
        verify_names_swapped_rows,
        stream_all_reads_what_page_after_page_reads,
        a_category_is_read_stream_by_stream_up_to_a_position,
        the_first_event_recorded_after_a_time_is_found_at_any_precision,
        a_row_the_log_could_not_have_written_is_named_by_its_position,
        verify_builds_the_tree_and_checks_links_across_pages,
        a_proof_given_up_leaves_the_tree_building,
        a_closed_log_refuses_reads,
    ]
}

async fn appends_and_reads_back_byte_exact(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    // Odd spacing, key order, unicode and number forms must survive byte for byte.
    let data = r#"{ "名称" : "东城区",  "fen": 30000, "ratio": 1.50, "a": [ ] }"#;
    let first =
        log.append(&mandate, ExpectedRevision::NoStream, vec![event("MandateProposed", data)]).await.unwrap();
    let second = log
        .append(
            &mandate,
            ExpectedRevision::Exact(0),
            vec![event("MandateAdmitted", "{}"), event("FundsReserved", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(first.events[0].position, 1);
    assert_eq!(first.events[0].revision, 0);
    let positions: Vec<(u64, u64)> =
        second.events.iter().map(|event| (event.position, event.revision)).collect();
    assert_eq!(positions, [(2, 1), (3, 2)]);
    assert_eq!(second.next_expected_revision(), Some(ExpectedRevision::Exact(2)));

    let read = log.read_stream(&mandate).await.unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].data, data);
    assert_eq!(read[0].event_type, "MandateProposed");
    assert_eq!(read[2].event_type, "FundsReserved");
    let metadata: serde_json::Value = serde_json::from_str(&read[0].metadata).unwrap();
    assert_eq!(metadata["actor"], "system:test");
    assert!(metadata["$correlationId"].is_string() && metadata["$causationId"].is_string());

    let all = log.read_all(2, 10).await.unwrap();
    assert_eq!(all.iter().map(|event| event.position).collect::<Vec<_>>(), [2, 3]);
    // One stream's page after a position, among another stream's events.
    let other = stream("mandate");
    log.append(&other, ExpectedRevision::NoStream, vec![event("MandateProposed", "{}")]).await.unwrap();
    log.append(&mandate, ExpectedRevision::Exact(2), vec![event("FundsPosted", "{}")]).await.unwrap();
    let page = |after: u64, limit: u32| {
        let (log, mandate) = (log.clone(), mandate.clone());
        async move {
            let events = log.read_stream_after(&mandate, after, limit).await.unwrap();
            events.iter().map(|event| (event.position, event.revision)).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 2).await, [(1, 0), (2, 1)]);
    assert_eq!(page(2, 10).await, [(3, 2), (5, 3)]);
    assert_eq!(page(3, 10).await, [(5, 3)]);
    assert_eq!(page(5, 10).await, []);
    assert!(log.read_stream(&stream("mandate")).await.unwrap().is_empty());
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!((report.events, report.failure), (5, None));
    assert_eq!(report.head.hash, log.read_all(5, 1).await.unwrap()[0].hash);
}

async fn expected_revision_is_checked(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    log.append(&mandate, ExpectedRevision::NoStream, vec![event("A", "{}"), event("B", "{}")]).await.unwrap();

    let again = log.append(&mandate, ExpectedRevision::NoStream, vec![event("C", "{}")]).await;
    assert!(
        matches!(
            &again,
            Err(StoreError::Conflict { actual: Some(1), expected: ExpectedRevision::NoStream, .. })
        ),
        "{again:?}"
    );
    let stale = log.append(&mandate, ExpectedRevision::Exact(0), vec![event("C", "{}")]).await.unwrap_err();
    assert_eq!(
        stale.to_string(),
        format!("stream `{mandate}` is at revision 1, but the append expected revision 0")
    );
    let missing = log.append(&stream("mandate"), ExpectedRevision::Exact(5), vec![event("C", "{}")]).await;
    assert!(matches!(missing, Err(StoreError::Conflict { actual: None, .. })), "{missing:?}");

    let any = log.append(&mandate, ExpectedRevision::Any, vec![event("C", "{}")]).await.unwrap();
    assert_eq!(any.events[0].revision, 2);
    assert_eq!(log.head().await.unwrap().position, 3, "refused appends wrote nothing");
}

async fn reappending_the_same_ids_returns_the_original_result(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    let events = vec![event("A", "{}"), event("B", "{}")];
    let original = log.append(&mandate, ExpectedRevision::NoStream, events.clone()).await.unwrap();
    // A retry, even with a now-stale expected revision, is answered with the first result.
    let retried = log.append(&mandate, ExpectedRevision::NoStream, events.clone()).await.unwrap();
    assert_eq!(retried, original);
    // With `Any`, the writer's fast path plans it as new; the log's unique event id sends it
    // to the slow path, which finds the original.
    let retried = log.append(&mandate, ExpectedRevision::Any, events.clone()).await.unwrap();
    assert_eq!(retried, original);
    assert_eq!(log.head().await.unwrap().position, 2);

    let swapped = vec![events[1].clone(), events[0].clone()];
    let reused = log.append(&mandate, ExpectedRevision::Any, swapped).await;
    assert!(matches!(reused, Err(StoreError::EventIdReused { .. })), "{reused:?}");
    let elsewhere = log.append(&stream("mandate"), ExpectedRevision::Any, vec![events[0].clone()]).await;
    assert!(
        matches!(elsewhere, Err(StoreError::EventIdReused { event_id }) if event_id == events[0].event_id)
    );
    let mixed = log.append(&mandate, ExpectedRevision::Any, vec![event("C", "{}"), events[1].clone()]).await;
    assert!(matches!(mixed, Err(StoreError::EventIdReused { .. })), "{mixed:?}");

    // Eight concurrent retries of one new append: one write, eight identical answers.
    let retry = event("D", "{}");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (log, mandate, retry) = (log.clone(), mandate.clone(), retry.clone());
            tokio::spawn(async move { log.append(&mandate, ExpectedRevision::Exact(1), vec![retry]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "{answers:?}");
    assert_eq!(answers[0].events[0].revision, 2);
    assert_eq!(log.read_stream(&mandate).await.unwrap().len(), 3);
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

async fn an_append_queued_on_another_commits_only_on_top_of_it(db: Db) {
    use ExpectedRevision::Exact;
    let log = EventLog::open(&db.url).await.unwrap();
    let ledger = stream("ledger");
    let first = event("A", "{}");
    log.append(&ledger, ExpectedRevision::NoStream, vec![first.clone()]).await.unwrap();

    // Three appends queued one on top of the other, none awaited before the next is queued.
    let (b, c, d) = (event("B", "{}"), event("C", "{}"), event("D", "{}"));
    let queued_b = log.enqueue(&ledger, Exact(0), Some(first.event_id), vec![b.clone()]).await.unwrap();
    let queued_c = log.enqueue(&ledger, Exact(1), Some(b.event_id), vec![c.clone()]).await.unwrap();
    let queued_d = log.enqueue(&ledger, Exact(2), Some(c.event_id), vec![d.clone()]).await.unwrap();
    let appended_d = queued_d.await.unwrap();
    assert_eq!(appended_d.events[0].revision, 3);
    // The outcome is decided whether or not anyone awaited it, and clones share it.
    assert_eq!(queued_b.outcome_now().unwrap().unwrap().events[0].revision, 1);
    assert_eq!(queued_c.clone().await.unwrap(), queued_c.outcome_now().unwrap().unwrap());

    // An append queued on one that fails is refused, even though another append filled the
    // revision it expected meanwhile: it would otherwise stand on an event that never was.
    let failing = event("E", "{}");
    let queued_failing = log.enqueue(&ledger, Exact(0), None, vec![failing.clone()]).await.unwrap();
    let queued_other = log.enqueue(&ledger, Exact(3), None, vec![event("F", "{}")]).await.unwrap();
    let phantom = event("G", "{}");
    let queued_phantom =
        log.enqueue(&ledger, Exact(4), Some(failing.event_id), vec![phantom.clone()]).await.unwrap();
    let queued_on_phantom =
        log.enqueue(&ledger, Exact(5), Some(phantom.event_id), vec![event("H", "{}")]).await.unwrap();
    assert!(matches!(queued_failing.await, Err(StoreError::Conflict { actual: Some(3), .. })));
    let other = queued_other.await.unwrap();
    assert_eq!(other.events[0].revision, 4);
    let refused = queued_phantom.await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unfounded { stream, after } if *stream == ledger && *after == failing.event_id),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("not the stream's last committed event"), "{refused}");
    // And what was queued on the refused one finds the stream short of what it expected.
    assert!(matches!(queued_on_phantom.await, Err(StoreError::Conflict { actual: Some(4), .. })));

    // Building on a committed event that is not the stream's last, or on another stream's.
    let stale = log.enqueue(&ledger, Exact(4), Some(d.event_id), vec![event("I", "{}")]).await.unwrap();
    assert!(matches!(stale.await, Err(StoreError::Unfounded { .. })));
    let elsewhere_stream = stream("ledger");
    let elsewhere = event("J", "{}");
    log.append(&elsewhere_stream, ExpectedRevision::NoStream, vec![elsewhere.clone()]).await.unwrap();
    let crossed = log.enqueue(&ledger, Exact(4), Some(elsewhere.event_id), vec![event("K", "{}")]).await;
    assert!(matches!(crossed.unwrap().await, Err(StoreError::Unfounded { .. })));
    let loose = log.enqueue(&ledger, ExpectedRevision::Any, Some(d.event_id), vec![event("L", "{}")]).await;
    assert!(matches!(loose, Err(StoreError::InvalidAppend(_))), "{loose:?}");

    // Another process's writes send this writer to the database to look the event up.
    let other_process = EventLog::open(&db.url).await.unwrap();
    let theirs = event("M", "{}");
    other_process.append(&ledger, Exact(4), vec![theirs.clone()]).await.unwrap();
    let ours = event("N", "{}");
    let on_theirs = log.enqueue(&ledger, Exact(5), Some(theirs.event_id), vec![ours.clone()]).await.unwrap();
    assert_eq!(on_theirs.await.unwrap().events[0].revision, 6);
    other_process.append(&ledger, Exact(6), vec![event("O", "{}")]).await.unwrap();
    let behind = log.enqueue(&ledger, Exact(7), Some(ours.event_id), vec![event("P", "{}")]).await.unwrap();
    assert!(matches!(behind.await, Err(StoreError::Unfounded { .. })));

    let types: Vec<String> =
        log.read_stream(&ledger).await.unwrap().into_iter().map(|event| event.event_type).collect();
    assert_eq!(types, ["A", "B", "C", "D", "F", "M", "N", "O"]);
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

/// A mandate's first events and its reservation on the ledger commit together: when one part
/// is refused, nothing of the other is written, and appends queued beside it are not touched.
async fn an_append_to_several_streams_commits_all_or_none(db: Db) {
    use ExpectedRevision::{Exact, NoStream};
    let part = |stream: &str, expected, after, events| StreamAppend {
        stream: stream.to_owned(),
        expected,
        after,
        events,
    };
    let log = EventLog::open(&db.url).await.unwrap();
    let ledger = stream("ledger");
    let opened = event("A", "{}");
    log.append(&ledger, NoStream, vec![opened.clone()]).await.unwrap();

    // Both parts commit, in the order given, one after the other in the log.
    let first_mandate = stream("mandate");
    let (proposed, admitted, reserved) = (event("B", "{}"), event("C", "{}"), event("D", "{}"));
    let together = vec![
        part(&first_mandate, NoStream, None, vec![proposed.clone(), admitted.clone()]),
        part(&ledger, Exact(0), Some(opened.event_id), vec![reserved.clone()]),
    ];
    let appended = log.append_all(together.clone()).await.unwrap();
    let positions: Vec<(u64, u64)> = appended
        .iter()
        .flat_map(|part| part.events.iter().map(|event| (event.position, event.revision)))
        .collect();
    assert_eq!(positions, [(2, 0), (3, 1), (4, 1)]);
    assert_eq!(appended[0].stream, first_mandate);
    assert_eq!(appended[1].stream, ledger);
    // A retry of the whole append answers as the first time and writes nothing.
    assert_eq!(log.append_all(together).await.unwrap(), appended);
    assert_eq!(log.head().await.unwrap().position, 4);

    // The second part is stale: the first is not written either. An append queued right
    // after it, likely in the same group commit, is not touched and fills the next position.
    let refused_mandate = stream("mandate");
    let queued = log
        .enqueue_all(vec![
            part(&refused_mandate, NoStream, None, vec![event("E", "{}"), event("F", "{}")]),
            part(&ledger, Exact(0), None, vec![event("G", "{}")]),
        ])
        .await
        .unwrap();
    let beside = log.enqueue(&stream("request"), NoStream, None, vec![event("H", "{}")]).await.unwrap();
    for part in queued {
        let refused = part.await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Conflict { stream, actual: Some(1), .. } if *stream == ledger),
            "{refused:?}"
        );
    }
    assert_eq!(beside.await.unwrap().events[0].position, 5);
    assert!(log.read_stream(&refused_mandate).await.unwrap().is_empty());

    // The first part is refused (the mandate exists): the reservation is not written.
    let over_the_mandate = vec![
        part(&first_mandate, NoStream, None, vec![event("I", "{}")]),
        part(&ledger, Exact(1), Some(reserved.event_id), vec![event("J", "{}")]),
    ];
    let refused = log.append_all(over_the_mandate).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict { stream, .. } if *stream == first_mandate),
        "{refused:?}"
    );

    // A part queued on an append that fails is refused, and takes its companion with it.
    let failing = event("K", "{}");
    let queued_failing = log.enqueue(&ledger, Exact(0), None, vec![failing.clone()]).await.unwrap();
    let orphan_mandate = stream("mandate");
    let after_failing = vec![
        part(&orphan_mandate, NoStream, None, vec![event("L", "{}")]),
        part(&ledger, Exact(1), Some(failing.event_id), vec![event("M", "{}")]),
    ];
    let on_failing = log.enqueue_all(after_failing).await.unwrap();
    assert!(matches!(queued_failing.await, Err(StoreError::Conflict { .. })));
    for part in on_failing {
        assert!(matches!(part.await, Err(StoreError::Unfounded { .. })));
    }
    assert!(log.read_stream(&orphan_mandate).await.unwrap().is_empty());

    // What cannot be one append is refused before it is queued.
    let twice = log
        .append_all(vec![
            part(&ledger, Exact(1), None, vec![event("N", "{}")]),
            part(&ledger, Exact(2), None, vec![event("O", "{}")]),
        ])
        .await
        .unwrap_err();
    assert!(twice.to_string().contains("appears in two parts"), "{twice}");
    let shared = event("P", "{}");
    let reused = log
        .append_all(vec![
            part(&stream("mandate"), NoStream, None, vec![shared.clone()]),
            part(&stream("mandate"), NoStream, None, vec![shared]),
        ])
        .await
        .unwrap_err();
    assert!(reused.to_string().contains("appears twice"), "{reused}");
    let none = log.append_all(vec![]).await.unwrap_err();
    assert!(matches!(none, StoreError::InvalidAppend(_)), "{none:?}");

    let types: Vec<String> =
        log.read_all(1, 100).await.unwrap().into_iter().map(|event| event.event_type).collect();
    assert_eq!(types, ["A", "B", "C", "D", "H"]);
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

/// One task awaits a queued append while another keeps asking whether it is decided
/// (`outcome_now`, as a command on a kept ledger asks of the append before it). The asking
/// must never take the wake-up the waiting task needs: polling a clone of a `Shared` future
/// with `now_or_never` can (rust-lang/futures-rs#2706), and a proposal then hung until the
/// server's timeout. Single and joined appends, many times over, on four worker threads.
async fn asking_whether_an_append_is_decided_never_stalls_its_waiter(db: Db) {
    use ExpectedRevision::NoStream;
    let log = EventLog::open(&db.url).await.unwrap();
    for round in 0..300 {
        let queued = match round % 2 {
            0 => vec![log.enqueue(&stream("mandate"), NoStream, None, vec![event("A", "{}")]).await.unwrap()],
            _ => {
                let part = |category: &str| StreamAppend {
                    stream: stream(category),
                    expected: NoStream,
                    after: None,
                    events: vec![event("B", "{}")],
                };
                log.enqueue_all(vec![part("mandate"), part("ledger")]).await.unwrap()
            }
        };
        let asked = queued.clone();
        let asker = tokio::spawn(async move {
            for append in asked {
                while append.outcome_now().is_none() {
                    tokio::task::yield_now().await;
                }
            }
        });
        let waiters: Vec<_> = queued.iter().cloned().map(tokio::spawn).collect();
        for waiter in waiters {
            let appended = tokio::time::timeout(Duration::from_secs(10), waiter).await;
            let appended =
                appended.unwrap_or_else(|_| panic!("round {round}: the waiting task was never woken"));
            appended.unwrap().unwrap();
        }
        asker.await.unwrap();
        for append in &queued {
            assert_eq!(append.outcome_now().unwrap().unwrap(), append.clone().await.unwrap());
        }
    }
    assert_eq!(log.head().await.unwrap().position, 450);
}

async fn bad_appends_are_refused_and_write_nothing(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    let cases: Vec<(String, Vec<shequ_store::NewEvent>, &str)> = vec![
        ("mandate".into(), vec![event("A", "{}")], "must be `category-id`"),
        ("Man-date-1".into(), vec![event("A", "{}")], "must be `category-id`"),
        (mandate.clone(), vec![], "carries 1–1000 events, not 0"),
        (mandate.clone(), vec![event("A", "{not json")], "data of A is not JSON"),
        (mandate.clone(), vec![event("A B", "{}")], "event type `A B`"),
        (mandate.clone(), vec![event("A", &format!("\"{}\"", "x".repeat(1024 * 1024)))], "the limit is"),
    ];
    for (stream, events, message) in cases {
        let refused = log.append(&stream, ExpectedRevision::Any, events).await.unwrap_err();
        assert!(matches!(refused, StoreError::InvalidAppend(_)), "{refused:?}");
        assert!(refused.to_string().contains(message), "`{refused}` should say `{message}`");
    }
    let twice = event("A", "{}");
    let refused = log.append(&mandate, ExpectedRevision::Any, vec![twice.clone(), twice]).await.unwrap_err();
    assert!(refused.to_string().contains("appears twice"), "{refused}");
    assert_eq!(log.head().await.unwrap().position, 0);
}

async fn sixteen_writers_on_one_stream_one_winner_per_revision(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    for round in 0..8u64 {
        let expected = match round {
            0 => ExpectedRevision::NoStream,
            _ => ExpectedRevision::Exact(round - 1),
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (log, mandate, barrier) = (log.clone(), mandate.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    log.append(&mandate, expected, vec![event("Step", "{}")]).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(appended) => {
                    winners += 1;
                    assert_eq!(appended.events[0].revision, round);
                }
                Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(round)),
                Err(other) => panic!("a loser gets a conflict, not {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    let revisions: Vec<u64> =
        log.read_stream(&mandate).await.unwrap().iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (0..8).collect::<Vec<_>>());
}

async fn sixteen_writers_on_different_streams_keep_positions_gap_free(db: Db) {
    const APPENDS: u64 = 40;
    let log = EventLog::open(&db.url).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                let own = stream("request");
                let mut expected = ExpectedRevision::NoStream;
                for _ in 0..APPENDS {
                    let appended = log.append(&own, expected, vec![event("Step", "{}")]).await.unwrap();
                    expected = appended.next_expected_revision().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = log.read_all(1, 10_000).await.unwrap();
    assert_eq!(
        all.iter().map(|event| event.position).collect::<Vec<_>>(),
        (1..=16 * APPENDS).collect::<Vec<_>>()
    );
    let mut revisions: HashMap<&str, Vec<u64>> = HashMap::new();
    for event in &all {
        revisions.entry(&event.stream).or_default().push(event.revision);
    }
    assert_eq!(revisions.len(), 16);
    assert!(revisions.values().all(|revisions| *revisions == (0..APPENDS).collect::<Vec<_>>()));
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!((report.events, report.failure), (16 * APPENDS, None));
}

async fn restart_resumes_the_chain_and_the_subscription(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let requests = stream("request");
    for revision in 0..10 {
        let expected = match revision {
            0 => ExpectedRevision::NoStream,
            _ => ExpectedRevision::Exact(revision - 1),
        };
        log.append(&requests, expected, vec![event("Step", &format!("{{\"n\":{revision}}}"))]).await.unwrap();
    }
    let mut projection = CatchUp::open(&log, "requests-projection").await.unwrap();
    let page = projection.next_page(4, Duration::ZERO).await.unwrap();
    assert_eq!(page.iter().map(|event| event.position).collect::<Vec<_>>(), [1, 2, 3, 4]);
    projection.commit(4).await.unwrap();
    // Read but never committed: must come again after the restart.
    let unhandled = projection.next_page(3, Duration::ZERO).await.unwrap();
    assert_eq!(unhandled.first().map(|event| event.position), Some(5));
    log.close().await;
    drop(projection);
    drop(log);

    let log = EventLog::open(&db.url).await.unwrap();
    assert_eq!(log.head().await.unwrap().position, 10);
    log.append(&requests, ExpectedRevision::Exact(9), vec![event("Step", "{}")]).await.unwrap();
    let mut projection = CatchUp::open(&log, "requests-projection").await.unwrap();
    assert_eq!(projection.checkpoint(), 4);
    let mut seen = Vec::new();
    loop {
        let page = projection.next_page(3, Duration::ZERO).await.unwrap();
        let Some(last) = page.last() else { break };
        let last = last.position;
        seen.extend(page.iter().map(|event| event.position));
        projection.commit(last).await.unwrap();
    }
    assert_eq!(seen, (5..=11).collect::<Vec<_>>(), "nothing missed, nothing repeated");
    assert_eq!(CatchUp::open(&log, "requests-projection").await.unwrap().checkpoint(), 11);
    assert_eq!(CatchUp::open(&log, "another").await.unwrap().checkpoint(), 0);
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!((report.events, report.failure), (11, None));
}

async fn subscription_wakes_on_commit(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mut subscription = CatchUp::open(&log, "waker").await.unwrap();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            log.append(&stream("request"), ExpectedRevision::NoStream, vec![event("Filed", "{}")])
                .await
                .unwrap();
        })
    };
    // Waits up to a minute for news, but a commit in this process must wake it long before
    // the outer five seconds run out.
    let page =
        tokio::time::timeout(Duration::from_secs(5), subscription.next_page(10, Duration::from_secs(60)))
            .await
            .expect("a commit wakes the subscription")
            .unwrap();
    assert_eq!(page.len(), 1);
    writer.await.unwrap();
}

async fn aggregates_run_through_the_esrs_manager(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let context = CommandContext::new("district:dongcheng");
    let manager = AggregateManager::new(log.aggregate_store::<Organisation>(context.clone()));
    let id = Uuid::now_v7();
    let register = OrganisationCommand::Register {
        kind: OrganisationKind::District,
        name: "东城区".into(),
        parent: None,
        code: None,
    };
    let state = manager.handle_command(AggregateState::with_id(id), register.clone()).await.unwrap().unwrap();
    assert_eq!(state.registered.unwrap().name, "东城区");

    // A business refusal is an inner error and writes nothing.
    let loaded = manager.load(id).await.unwrap().unwrap();
    assert_eq!(*loaded.sequence_number(), 1);
    let refused = manager.handle_command(loaded, register).await.unwrap();
    assert_eq!(refused, Err(OrganisationError::AlreadyRegistered));

    // Two commands from the same stale state: the second gets a conflict, not a fork.
    let first = manager.load(id).await.unwrap().unwrap();
    let stale = manager.load(id).await.unwrap().unwrap();
    manager
        .handle_command(first, OrganisationCommand::Rename { name: "Dongcheng".into() })
        .await
        .unwrap()
        .unwrap();
    let conflict =
        manager.handle_command(stale, OrganisationCommand::Rename { name: "Xicheng".into() }).await;
    assert!(matches!(conflict, Err(StoreError::Conflict { actual: Some(1), .. })), "{conflict:?}");

    let locked = manager.lock_and_load(id).await.unwrap();
    assert_eq!(locked.unwrap().inner().registered.as_ref().unwrap().name, "Dongcheng");

    let recorded = log.read_stream(&format!("organisation-{id}")).await.unwrap();
    assert_eq!(
        recorded.iter().map(|event| event.event_type.as_str()).collect::<Vec<_>>(),
        ["OrganisationRegistered", "OrganisationRenamed"]
    );
    let metadata: serde_json::Value = serde_json::from_str(&recorded[0].metadata).unwrap();
    assert_eq!(metadata["actor"], "district:dongcheng");
    assert_eq!(metadata["$correlationId"], context.correlation_id.to_string());
    assert_eq!(recorded[1].data, r#"{"name":"Dongcheng"}"#);

    let store = log.aggregate_store::<Organisation>(context);
    assert!(matches!(store.delete(id).await, Err(StoreError::AppendOnly)));
    assert_eq!(log.read_stream(&format!("organisation-{id}")).await.unwrap().len(), 2);
}

async fn the_log_refuses_edits_and_deletes(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    log.append(&stream("mandate"), ExpectedRevision::NoStream, vec![event("A", "{}")]).await.unwrap();
    for sql in ["UPDATE events SET data = '{}' WHERE position = 1", "DELETE FROM events WHERE position = 1"] {
        let refused = execute_directly(&db, sql).await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

/// Appends ten events to two streams and returns the open log.
async fn ten_events(db: &Db) -> EventLog {
    let log = EventLog::open(&db.url).await.unwrap();
    let (first, second) = (stream("mandate"), stream("mandate"));
    for revision in 0..5u64 {
        let expected = match revision {
            0 => ExpectedRevision::NoStream,
            _ => ExpectedRevision::Exact(revision - 1),
        };
        for mandate in [&first, &second] {
            log.append(mandate, expected, vec![event("Step", &format!("{{\"fen\":{revision}}}"))])
                .await
                .unwrap();
        }
    }
    log
}

async fn verify_names_the_first_altered_row(db: Db) {
    let log = ten_events(&db).await;
    tamper(&db, "UPDATE events SET data = '{\"fen\":999999}' WHERE position = 7;").await;
    let failure = log.verify(|_| {}).await.unwrap().failure.unwrap();
    assert_eq!(failure.position, 7, "{failure:?}");
    assert!(failure.reason.contains("hash does not match"), "{failure:?}");
}

async fn verify_names_the_first_deleted_row(db: Db) {
    let log = ten_events(&db).await;
    tamper(&db, "DELETE FROM events WHERE position = 4;").await;
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!(report.events, 3);
    assert_eq!(report.failure.unwrap().position, 4);
}

async fn verify_names_the_first_deleted_tail_row(db: Db) {
    let log = ten_events(&db).await;
    // Deleting the newest events leaves no gap; the head still remembers how far the log went.
    tamper(&db, "DELETE FROM events WHERE position >= 9;").await;
    let report = log.verify(|_| {}).await.unwrap();
    assert_eq!(report.events, 8);
    let failure = report.failure.unwrap();
    assert_eq!(failure.position, 9);
    assert!(failure.reason.contains("missing"), "{failure:?}");
}

async fn verify_names_swapped_rows(db: Db) {
    let log = ten_events(&db).await;
    // Swap the data of positions 3 and 5 (the same stream), as a reordering would.
    let swap =
        "UPDATE events SET data = CASE position WHEN 3 THEN (SELECT data FROM events WHERE position = 5) \
         ELSE (SELECT data FROM events WHERE position = 3) END WHERE position IN (3, 5);";
    tamper(&db, swap).await;
    assert_eq!(log.verify(|_| {}).await.unwrap().failure.unwrap().position, 3);
}

/// `stream_all` reads several pages at once on a long log; whatever the page size and start,
/// and with gaps in the positions, it must give what reading one page after another gives.
async fn stream_all_reads_what_page_after_page_reads(db: Db) {
    async fn page_after_page(log: &EventLog, from: u64, page_events: u32) -> Vec<shequ_store::RecordedEvent> {
        let (mut events, mut next) = (Vec::new(), from);
        loop {
            let page = log.read_all(next, page_events).await.unwrap();
            let Some(last) = page.last() else { return events };
            next = last.position + 1;
            events.extend(page);
        }
    }
    let log = ten_events(&db).await;
    for gaps in [false, true] {
        if gaps {
            tamper(&db, "DELETE FROM events WHERE position IN (4, 8, 9);").await;
        }
        for from in [1, 2, 3, 5, 10, 11] {
            for page_events in 1..=11 {
                let streamed: Vec<_> = log.stream_all(from, page_events).try_collect().await.unwrap();
                let expected = page_after_page(&log, from, page_events).await;
                assert_eq!(streamed, expected, "from {from}, pages of {page_events}, gaps {gaps}");
            }
        }
        assert_eq!(page_after_page(&log, 1, 3).await.len(), if gaps { 7 } else { 10 });
    }
}

/// Verify hashes each page in the task that read it and checks the first link of a page in
/// its walk: an edit on either side of a page boundary (pages of 5,000) is found, and the
/// Merkle roots built on the way are the log's.
async fn verify_builds_the_tree_and_checks_links_across_pages(db: Db) {
    let streams: Vec<String> = (0..7).map(|_| stream("request")).collect();
    let events: Vec<(&str, i64)> = (0..10_003).map(|n| (streams[n % 7].as_str(), n as i64)).collect();
    let (log, _) = imported(&db, &events).await;
    let sizes: std::collections::BTreeSet<u64> = [1, 2, 4_999, 5_000, 5_001, 8_192, 10_003, 10_004].into();
    let report = log.verify_with_roots(&sizes, |_| {}).await.unwrap();
    assert_eq!((report.events, report.failure), (10_003, None));
    assert_eq!(report.root, log.merkle_root(10_003).await.unwrap());
    assert_eq!(report.roots.keys().copied().collect::<Vec<_>>(), [1, 2, 4_999, 5_000, 5_001, 8_192, 10_003]);
    for (size, root) in &report.roots {
        assert_eq!(*root, log.merkle_root(*size).await.unwrap(), "tree size {size}");
    }
    // Proofs within and across the kept subtrees' chunks verify as RFC 9162 says, against the
    // roots the verify walk built leaf by leaf.
    let root = |size: u64| report.roots[&size];
    for (position, size) in
        [(1, 10_003), (1_024, 5_000), (1_025, 8_192), (7_000, 10_003), (10_003, 10_003), (2, 2)]
    {
        let proof = log.inclusion_proof(position, size).await.unwrap();
        assert_eq!(proof.root_hash, root(size));
        let verified =
            merkle::verify_inclusion(position - 1, size, &proof.leaf_hash, &proof.audit_path, &root(size));
        assert!(verified, "{position} in {size}");
    }
    for (first, second) in [(1, 10_003), (2, 5_001), (4_999, 8_192), (5_000, 10_003), (8_192, 10_003)] {
        let proof = log.consistency_proof(first, second).await.unwrap();
        assert_eq!((proof.first_root, proof.second_root), (root(first), root(second)));
        let verified = merkle::verify_consistency(first, second, &root(first), &root(second), &proof.proof);
        assert!(verified, "{first} to {second}");
    }
    // A tree is never built over a log with a position missing: the leaves would shift. A log
    // opened afterwards finds the gap as it builds its subtrees of whole chunks of leaves.
    tamper(&db, "DELETE FROM events WHERE position = 7000;").await;
    let reopened = EventLog::open(&db.url).await.unwrap();
    for result in [
        reopened.merkle_root(8_000).await.map(|_| ()),
        reopened.inclusion_proof(7_500, 8_000).await.map(|_| ()),
        reopened.consistency_proof(6_000, 8_000).await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::Corrupt { position: 7_000, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(reopened.inclusion_proof(10, 6_999).await.is_ok(), "a tree before the gap is whole");
    // The log that built them before the row went answers from them, as it answered before:
    // the positions they cover were appended once and are never rewritten (ADR 0019); finding
    // the gap is verify's work.
    assert_eq!(log.merkle_root(8_192).await.unwrap(), report.roots[&8_192]);
    // The first event of the second page, then the last of the first.
    for position in [5_001, 5_000] {
        let sql = format!("UPDATE events SET data = '{{\"n\":-1}}' WHERE position = {position};");
        execute_directly(&db, &sql).await.unwrap();
        let report = log.verify(|_| {}).await.unwrap();
        let failure = report.failure.unwrap();
        assert_eq!(failure.position, position, "{failure:?}");
        assert_eq!(report.events, position - 1);
        assert_eq!(report.root, log.merkle_root(position - 1).await.unwrap());
    }
}

/// The first proof builds the Merkle tree's kept subtrees in a task of its own (ADR 0019): a
/// request given up half-way (its client gone, its time out) leaves the build going, and the
/// next proof finds it done.
async fn a_proof_given_up_leaves_the_tree_building(db: Db) {
    let streams: Vec<String> = (0..5).map(|_| stream("request")).collect();
    let events: Vec<(&str, i64)> = (0..60_000).map(|n| (streams[n % 5].as_str(), n as i64)).collect();
    let (log, _) = imported(&db, &events).await;
    assert_eq!(log.merkle_leaves_kept(), 0, "nothing built before a proof");
    let request = tokio::spawn({
        let log = log.clone();
        async move { log.inclusion_proof(1, 60_000).await }
    });
    // Given up once the build has kept its first chunks, long before it reads the last: the
    // log is long enough that it cannot finish between two looks 1 ms apart.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while log.merkle_leaves_kept() == 0 {
        assert!(std::time::Instant::now() < deadline, "the build never kept a chunk");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled(), "the request was given up before it finished");
    while log.merkle_leaves_kept() < 59_392 {
        assert!(std::time::Instant::now() < deadline, "the build stopped at {}", log.merkle_leaves_kept());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(log.merkle_leaves_kept(), 59_392, "whole chunks of 1,024 only");
    let root = log.verify(|_| {}).await.unwrap().root;
    let proof = log.inclusion_proof(59_999, 60_000).await.unwrap();
    assert_eq!(proof.root_hash, root);
    assert!(merkle::verify_inclusion(59_998, 60_000, &proof.leaf_hash, &proof.audit_path, &root));
}

async fn a_closed_log_refuses_reads(db: Db) {
    let log = ten_events(&db).await;
    assert_eq!(log.read_all(1, 100).await.unwrap().len(), 10);
    log.close().await;
    assert!(log.read_all(1, 100).await.is_err());
    assert!(log.stream_all(1, 3).try_collect::<Vec<_>>().await.is_err());
    assert!(log.read_stream(&stream("mandate")).await.is_err());
}

/// A log written by `import` with chosen streams and times: for each `(stream, offset)`, an
/// event at 2026-11-29T08:00:00Z plus `offset` microseconds.
async fn imported(db: &Db, events: &[(&str, i64)]) -> (EventLog, Vec<shequ_store::RecordedEvent>) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-29T08:00:00Z").unwrap().to_utc();
    let mut revisions: HashMap<&str, u64> = HashMap::new();
    let mut previous = shequ_store::canonical::GENESIS_HASH;
    let mut recorded = Vec::new();
    for (index, (stream, offset)) in events.iter().enumerate() {
        let revision = revisions.entry(stream).or_default();
        let new = event("Step", &format!("{{\"n\":{index}}}"));
        let mut event = shequ_store::RecordedEvent {
            position: index as u64 + 1,
            stream: (*stream).to_owned(),
            revision: *revision,
            event_id: new.event_id,
            event_type: new.event_type,
            event_version: 1,
            data: new.data,
            metadata: new.metadata,
            recorded_at: start + chrono::Duration::microseconds(*offset),
            hash: [0; 32],
        };
        *revision += 1;
        event.hash = shequ_store::canonical::chain_hash(&previous, &event);
        previous = event.hash;
        recorded.push(event);
    }
    let log = EventLog::open(&db.url).await.unwrap();
    let stream = futures::stream::iter(recorded.clone().into_iter().map(Ok::<_, StoreError>));
    log.import(stream, |_| {}).await.unwrap();
    (log, recorded)
}

async fn a_category_is_read_stream_by_stream_up_to_a_position(db: Db) {
    let ids: Vec<String> = (1..=3).map(|n| format!("0190f3c4-7d1e-7c3a-9a1b-00000000000{n}")).collect();
    let (a, b, c) =
        (format!("mandate-{}", ids[1]), format!("mandate-{}", ids[0]), format!("mandate-{}", ids[2]));
    // Neighbours in byte order that are not the category: `mandat-`, `mandate_note-`,
    // `mandates-`; and another category between the mandate's events.
    let (shorter, underscore, longer) =
        (format!("mandat-{}", ids[0]), format!("mandate_note-{}", ids[0]), format!("mandates-{}", ids[0]));
    let request = format!("request-{}", ids[0]);
    let streams = [&a, &shorter, &b, &a, &request, &underscore, &c, &b, &longer, &a, &c, &request, &b];
    let events: Vec<(&str, i64)> = streams.iter().map(|stream| (stream.as_str(), 0)).collect();
    let (log, recorded) = imported(&db, &events).await;
    let category = shequ_domain::Category::parse("mandate").unwrap();
    for up_to in 0..=recorded.len() as u64 + 1 {
        let mut expected: Vec<_> = recorded
            .iter()
            .filter(|event| event.stream.starts_with("mandate-") && event.position <= up_to)
            .cloned()
            .collect();
        expected.sort_by(|x, y| (&x.stream, x.revision).cmp(&(&y.stream, y.revision)));
        for page_events in 1..=4 {
            let read: Vec<_> =
                log.stream_category(&category, up_to, page_events).try_collect().await.unwrap();
            assert_eq!(read, expected, "up to {up_to}, pages of {page_events}");
        }
    }
    // Appends made while a read is under way, into streams it has yet to reach and into new
    // ones, are left out: pages end where they ended when the read began, and nothing is lost.
    let before_appends: Vec<_> = log.stream_category(&category, u64::MAX, 5_000).try_collect().await.unwrap();
    let mut reading = std::pin::pin!(log.stream_category(&category, u64::MAX, 1));
    let first = reading.try_next().await.unwrap().unwrap();
    for stream in [&a, &c] {
        let revision = recorded.iter().filter(|event| &event.stream == stream).count() as u64;
        log.append(stream, ExpectedRevision::Exact(revision - 1), vec![event("Late", "{}")]).await.unwrap();
    }
    log.append(&format!("mandate-{}", Uuid::now_v7()), ExpectedRevision::NoStream, vec![event("Late", "{}")])
        .await
        .unwrap();
    let mut during = vec![first];
    during.extend(reading.try_collect::<Vec<_>>().await.unwrap());
    assert_eq!(during, before_appends);

    let all: Vec<_> =
        log.stream_category(&category, recorded.len() as u64, 5_000).try_collect().await.unwrap();
    let order: Vec<(&str, u64)> = all.iter().map(|event| (event.stream.as_str(), event.revision)).collect();
    assert_eq!(
        order,
        [
            (b.as_str(), 0),
            (b.as_str(), 1),
            (b.as_str(), 2),
            (a.as_str(), 0),
            (a.as_str(), 1),
            (a.as_str(), 2),
            (c.as_str(), 0),
            (c.as_str(), 1)
        ],
        "streams in id order, each in revision order"
    );
}

async fn the_first_event_recorded_after_a_time_is_found_at_any_precision(db: Db) {
    // Whole seconds, milliseconds, microseconds; equal times; a clock that stepped back.
    let offsets = [0, 500_000, 500_001, 500_001, 1_000_000, 1_000_100, 990_000, 2_000_000];
    let stream = stream("mandate");
    let events: Vec<(&str, i64)> = offsets.iter().map(|offset| (stream.as_str(), *offset)).collect();
    let (log, recorded) = imported(&db, &events).await;
    let start = recorded[0].recorded_at;
    let mut times: Vec<chrono::DateTime<chrono::Utc>> = Vec::new();
    for event in &recorded {
        for nanos in [-1_000, -1, 0, 1, 999, 1_000] {
            times.push(event.recorded_at + chrono::Duration::nanoseconds(nanos));
        }
    }
    times.extend([start - chrono::Duration::days(1), start + chrono::Duration::days(1)]);
    for time in times {
        let expected = recorded.iter().find(|event| event.recorded_at > time).map(|event| event.position);
        assert_eq!(log.first_recorded_after(time).await.unwrap(), expected, "after {time:?}");
    }
    // Every precision reads back as written, by the bulk reads (on SQLite, rusqlite's) and by
    // the stream read (sqlx's) alike.
    assert_eq!(log.read_all(1, 100).await.unwrap(), recorded);
    assert_eq!(log.stream_all(1, 3).try_collect::<Vec<_>>().await.unwrap(), recorded);
    assert_eq!(log.read_stream(&stream).await.unwrap(), recorded);
}

/// A row that no append could have written (edited in the database) stops a read with the
/// position it is at, never a panic or a wrong event; the rows before it read as they are.
async fn a_row_the_log_could_not_have_written_is_named_by_its_position(db: Db) {
    let mut edits = vec!["event_version = -1"];
    // PostgreSQL's column types refuse the others.
    if db.backend == BackendUnderTest::Sqlite {
        edits.extend([
            "event_id = 'not a uuid'",
            "recorded_at = 'yesterday'",
            // SQLite's own time format, which no append writes (sqlx writes RFC 3339).
            "recorded_at = '2026-11-29 08:00:00'",
            "hash = '0123456789abcdef0123456789abcdef'",
            "data = x'ff'",
            "revision = 'x'",
            "event_version = 1.5",
        ]);
    }
    let mut first_altered = None;
    for edit in edits {
        let log = ten_events(&db).await;
        let head = log.head().await.unwrap().position;
        let position = head - 4;
        // The append-only triggers go once (SQLite drops them).
        let disable = if first_altered.is_none() { disable_append_only(&db) } else { "" };
        let sql = format!("{disable} UPDATE events SET {edit} WHERE position = {position};");
        execute_directly(&db, &sql).await.unwrap();
        for page_events in [1, 3, 100] {
            let first = head - 9;
            let error = log.stream_all(first, page_events).try_collect::<Vec<_>>().await.unwrap_err();
            match error {
                StoreError::Corrupt { position: at, .. } => assert_eq!(at, position, "{edit}"),
                other => panic!("{edit}: {other}"),
            }
            let before = log.read_all(first, u32::try_from(position - first).unwrap()).await.unwrap();
            assert_eq!(before.last().unwrap().position, position - 1, "{edit}");
        }
        // Verify stops at the first altered row of the whole log, and names it.
        let first_altered = *first_altered.get_or_insert(position);
        assert_eq!(log.verify(|_| {}).await.unwrap().failure.unwrap().position, first_altered, "{edit}");
    }
}
