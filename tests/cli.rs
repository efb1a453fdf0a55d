//! The `shequ` command, driven in process exactly as its arguments would drive it.

use clap::Parser;
use shequ::{Cli, Outcome};
use shequ_store::{EventLog, ExpectedRevision};

use crate::helpers::{disable_append_only, event, execute_directly, stream, tamper, tests, Db, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        migrate_reports_the_store,
        log_prints_json_lines_verbatim,
        verify_passes_then_names_the_tampered_position,
        a_signed_checkpoint_catches_a_rewritten_history,
        checkpoints_of_every_size_hold_in_one_walk,
        setup_makes_a_store_ready_for_its_district,
    ]
}

/// Runs `shequ ARGS…` and returns its outcome and what it printed.
pub async fn shequ(arguments: &[&str]) -> (Result<Outcome, shequ::CliError>, String) {
    let cli = Cli::try_parse_from(std::iter::once("shequ").chain(arguments.iter().copied())).unwrap();
    let mut out = Vec::new();
    let outcome = shequ::run(cli, &mut out).await;
    (outcome, String::from_utf8(out).unwrap())
}

async fn migrate_reports_the_store(db: Db) {
    // --db after the subcommand works as well as before it.
    let (outcome, out) = shequ(&["migrate", "--db", &db.url]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    let store = match db.backend {
        crate::helpers::BackendUnderTest::Sqlite => "SQLite",
        crate::helpers::BackendUnderTest::Postgres => "PostgreSQL",
    };
    assert_eq!(out, format!("{store} schema is up to date; the log holds 0 events\n"));
    let (outcome, _) = shequ(&["--db", "mysql://user:secret@host/db", "migrate"]).await;
    let error = shequ::chain(&outcome.unwrap_err());
    assert!(error.contains("unsupported database URL scheme `mysql`"), "{error}");
    assert!(!error.contains("secret"), "a URL's password never reaches the output: {error}");
    for memory in ["sqlite::memory:", "sqlite://:memory:", "sqlite://shequ.db?mode=memory"] {
        let (outcome, _) = shequ(&["--db", memory, "migrate"]).await;
        let error = shequ::chain(&outcome.unwrap_err());
        assert!(error.contains("an in-memory SQLite database cannot hold the log"), "{memory}: {error}");
    }
}

async fn log_prints_json_lines_verbatim(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let mandate = stream("mandate");
    let data = r#"{ "名称": "东城区", "fen" : 30000 }"#;
    let events = vec![event("A", "{}"), event("B", data), event("C", "[1, 2]"), event("D", "{}")];
    log.append(&mandate, ExpectedRevision::NoStream, events).await.unwrap();
    let (outcome, out) = shequ(&["--db", &db.url, "log", "--from", "2", "--limit", "2"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains(&format!(r#""data":{data}"#)), "data is printed as stored: {}", lines[0]);
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["position"], 3);
    assert_eq!(second["stream"], mandate.as_str());
    assert_eq!(second["revision"], 2);
    assert_eq!(second["eventType"], "C");
    assert_eq!(second["data"], serde_json::json!([1, 2]));
    assert_eq!(second["metadata"]["actor"], "system:test");
    assert_eq!(second["hash"].as_str().unwrap().len(), 64);
}

async fn verify_passes_then_names_the_tampered_position(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    for _ in 0..5 {
        log.append(&stream("request"), ExpectedRevision::NoStream, vec![event("Filed", "{\"n\":1}")])
            .await
            .unwrap();
    }
    let (outcome, out) = shequ(&["verify", "--db", &db.url]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(out.starts_with("ok: 5 events, hash chain intact; head at position 5"), "{out}");

    tamper(&db, "UPDATE events SET data = '{\"n\":2}' WHERE position = 3;").await;
    let (outcome, out) = shequ(&["verify", "--db", &db.url]).await;
    assert_eq!(outcome.unwrap(), Outcome::Failure);
    assert_eq!(
        out,
        "FAILED at position 3: the stored hash does not match the event\n2 events before it are intact\n"
    );
}

async fn a_signed_checkpoint_catches_a_rewritten_history(db: Db) {
    let directory = tempfile::tempdir().unwrap();
    let key = directory.path().join("checkpoint.key");
    let key = key.to_str().unwrap();
    let log = EventLog::open(&db.url).await.unwrap();
    for n in 0..5 {
        log.append(
            &stream("request"),
            ExpectedRevision::NoStream,
            vec![event("Filed", &format!("{{\"n\":{n}}}"))],
        )
        .await
        .unwrap();
    }
    let (outcome, out) = shequ(&["--db", &db.url, "--checkpoint-key-file", key, "checkpoint"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(out.starts_with("checkpoint: tree size 5, root "), "{out}");
    let (outcome, out) = shequ(&["--db", &db.url, "verify"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(
        out.contains("6 events, hash chain intact") && out.contains("1 signed checkpoints hold"),
        "{out}"
    );
    let root = hex::encode(log.merkle_root(6).await.unwrap());
    assert!(out.contains(&format!("; Merkle root {root};")), "{out}");

    // An attacker with the database rewrites event 2 and recomputes the whole chain and head:
    // the chain alone no longer shows it; the signed root does.
    let mut events = log.read_all(1, 100).await.unwrap();
    events[1].data = "{\"n\":999}".to_owned();
    let mut previous = events[0].hash;
    let unhex = |hash: &[u8; 32]| match db.backend {
        crate::helpers::BackendUnderTest::Sqlite => format!("unhex('{}')", hex::encode(hash)),
        crate::helpers::BackendUnderTest::Postgres => format!("decode('{}', 'hex')", hex::encode(hash)),
    };
    let mut rewrite = disable_append_only(&db).to_owned();
    for event in events.iter_mut().skip(1) {
        event.hash = shequ_store::canonical::chain_hash(&previous, event);
        previous = event.hash;
        rewrite.push_str(&format!(
            " UPDATE events SET data = '{}', hash = {} WHERE position = {};",
            event.data,
            unhex(&event.hash),
            event.position
        ));
    }
    rewrite.push_str(&format!(" UPDATE log_head SET hash = {} WHERE id = 1;", unhex(&previous)));
    execute_directly(&db, &rewrite).await.unwrap();
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None, "the rewritten chain is consistent");
    let (outcome, out) = shequ(&["--db", &db.url, "verify"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Failure);
    assert!(out.starts_with("FAILED at position 6: the checkpoint of tree size 5 does not hold"), "{out}");
}

/// Checkpoints signed on an empty log, on a log of one page and across pages are all checked
/// against the tree that `shequ verify` builds in its one walk; so is one the walk did not
/// know of when it began.
async fn checkpoints_of_every_size_hold_in_one_walk(db: Db) {
    let directory = tempfile::tempdir().unwrap();
    let key = directory.path().join("checkpoint.key");
    let key = key.to_str().unwrap();
    let checkpoint = || async {
        let (outcome, out) = shequ(&["--db", &db.url, "--checkpoint-key-file", key, "checkpoint"]).await;
        assert_eq!(outcome.unwrap(), Outcome::Success, "{out}");
        out
    };
    let (outcome, _) = shequ(&["--db", &db.url, "migrate"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(checkpoint().await.starts_with("checkpoint: tree size 0, root "));
    let log = EventLog::open(&db.url).await.unwrap();
    let filed = |n: usize| event("Filed", &format!("{{\"n\":{n}}}"));
    for pages in [1, 5_001] {
        let events: Vec<_> = (0..pages).map(filed).collect();
        for chunk in events.chunks(1_000) {
            log.append(&stream("request"), ExpectedRevision::NoStream, chunk.to_vec()).await.unwrap();
        }
        checkpoint().await;
    }
    let (outcome, out) = shequ(&["--db", &db.url, "verify"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(
        out.contains("5005 events, hash chain intact") && out.contains("3 signed checkpoints hold"),
        "{out}"
    );

    // A checkpoint signed after the walk's checkpoints were looked up is checked after it.
    let verification = shequ_service::checkpoint::verify_log(&log, |checked| {
        if checked == 5_000 {
            let (url, key) = (db.url.clone(), key.to_owned());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let cli = Cli::try_parse_from([
                        "shequ",
                        "--db",
                        &url,
                        "--checkpoint-key-file",
                        &key,
                        "checkpoint",
                    ]);
                    shequ::run(cli.unwrap(), &mut Vec::new()).await.unwrap();
                });
            })
            .join()
            .unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!((verification.report.failure, verification.failure), (None, None));
    assert_eq!((verification.report.events, verification.checkpoints), (5_006, 4));
}

/// `shequ setup` makes a store usable without the demo: the catalogue and the district, once;
/// the district's token, from `shequ token issue`, then registers what lies under it.
async fn setup_makes_a_store_ready_for_its_district(db: Db) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("shequ.key");
    let key_file = key_file.to_str().unwrap();
    let (outcome, out) = shequ(&["--db", &db.url, "setup", "--district", " 东城区 "]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success, "{out}");
    assert!(out.contains("Published the shipped catalogue: 68 matters (version 68)."), "{out}");
    let id =
        out.split("Registered the district 东城区: ").nth(1).unwrap().split('.').next().unwrap().to_owned();
    let district = uuid::Uuid::parse_str(&id).unwrap();
    // Again: nothing changes.
    let head = EventLog::open(&db.url).await.unwrap().head().await.unwrap().position;
    let (outcome, again) = shequ(&["--db", &db.url, "setup", "--district", "东城区"]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    assert!(
        again.contains("already published: 68 matters")
            && again.contains(&format!("already registered: {id}"))
    );
    assert_eq!(EventLog::open(&db.url).await.unwrap().head().await.unwrap().position, head);
    // The same id under another name is refused, naming what holds it.
    let (outcome, _) = shequ(&["--db", &db.url, "setup", "--district", "西城区", "--id", &id]).await;
    let error = shequ::chain(&outcome.unwrap_err());
    assert!(error.contains("is already the District 东城区"), "{error}");
    // The same name under another id is refused too, naming the id it has: one district each.
    let other = uuid::Uuid::now_v7().to_string();
    let (outcome, _) = shequ(&["--db", &db.url, "setup", "--district", "东城区", "--id", &other]).await;
    let error = shequ::chain(&outcome.unwrap_err());
    assert!(error.contains(&format!("the district 东城区 is already registered as {id}")), "{error}");
    assert_eq!(EventLog::open(&db.url).await.unwrap().head().await.unwrap().position, head);

    let (outcome, token) =
        shequ(&["--key-file", key_file, "token", "issue", "--role", "district", "--org", &id]).await;
    assert_eq!(outcome.unwrap(), Outcome::Success);
    let claims = shequ_http::auth::TokenKeys::load_or_create(std::path::Path::new(key_file))
        .unwrap()
        .verify(token.trim())
        .unwrap();
    let actor = claims.actor();
    assert_eq!((actor.role, actor.organisation), (shequ_service::Role::District, district));
    let log = EventLog::open(&db.url).await.unwrap();
    let policies = shequ_policy::Policies::embedded().unwrap();
    let service = shequ_service::Service::new(log, policies, std::sync::Arc::new(shequ_service::SystemClock))
        .await
        .unwrap();
    let street = uuid::Uuid::now_v7();
    service
        .register_organisation(
            &shequ_service::CommandScope::new(actor),
            shequ_service::NewOrganisation {
                id: street,
                kind: shequ_domain::organisation::OrganisationKind::Street,
                name: "东华门街道",
                parent: Some(district),
                code: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(service.catalogue().await.unwrap().1.len(), 68);
}
