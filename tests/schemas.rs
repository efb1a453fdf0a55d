//! The committed schemas are the code's, and they describe what is really there.
//!
//! `schemas/openapi.json` is the OpenAPI document the server generates and serves, and it
//! covers every route; `schemas/events/` holds one JSON Schema per event type (and the
//! metadata's), and every event a demo run records validates against its schema. Every answer
//! that any test gets through [`crate::http::Client`] is checked against the document too
//! ([`check_answer`]): a documented status, and a body of the documented schema.
//!
//! With `SHEQU_UPDATE_SCHEMAS=1` the drift tests write the files instead of comparing them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use axum::http::StatusCode;
use futures::TryStreamExt;
use serde_json::{json, Value};
use shequ::demo;
use shequ_service::checkpoint::CheckpointKey;
use shequ_service::event_schemas::{self, DIALECT, ID_BASE, METADATA};
use shequ_service::Role;
use uuid::Uuid;

use crate::helpers::{tests, Db, TestFn};
use crate::http::{Client, StationDesk};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        the_committed_openapi_document_is_the_generated_one,
        the_served_document_is_the_generated_one_and_covers_every_route,
        the_committed_event_schemas_are_the_generated_ones,
        every_recorded_event_validates_against_its_schema,
    ]
}

const UPDATE: &str = "SHEQU_UPDATE_SCHEMAS";
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn updating() -> bool {
    std::env::var(UPDATE).is_ok_and(|value| value == "1")
}

fn regenerate() -> String {
    format!(
        "If the change is intended, regenerate with `{UPDATE}=1 cargo test -p shequ-tests -- schemas::` \
         and commit schemas/."
    )
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap();
    text.push('\n');
    text
}

/// Compares `text` with the committed `schemas/{relative}`, or writes it when updating.
fn check_or_write(relative: &str, text: &str) {
    let path = schemas_dir().join(relative);
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Both backends' runs write the same bytes: each writes a file of its own, then renames.
        let temporary = path.with_extension(format!("json.{}.tmp", Uuid::now_v7()));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("schemas/{relative}: {error}. {}", regenerate()));
    if committed != text {
        let (line, (ours, theirs)) = committed
            .lines()
            .chain(std::iter::repeat(""))
            .zip(text.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (committed, generated))| committed != generated)
            .unwrap_or((0, ("", "")));
        panic!(
            "schemas/{relative} is not what the code generates; first difference at line {}:\n  \
             committed: {ours}\n  generated: {theirs}\n{}",
            line + 1,
            regenerate()
        );
    }
}

fn generated_document() -> Value {
    serde_json::to_value(shequ_http::openapi::document()).unwrap()
}

async fn the_committed_openapi_document_is_the_generated_one(_: Db) {
    let text = shequ_http::openapi::render(&shequ_http::openapi::document());
    check_or_write("openapi.json", std::str::from_utf8(&text).unwrap());
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(schemas_dir().join("openapi.json")).unwrap()).unwrap();
    let version = committed["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "schemas/openapi.json is OpenAPI {version:?}, not 3.1.x");
    assert_eq!(committed["info"]["title"], "shequ");
    assert!(committed["info"]["version"].is_string());
}

/// A concrete path for a template: ids are fresh UUIDs, an action is `accept`.
fn concrete(template: &str) -> String {
    let id = Uuid::now_v7().to_string();
    template.replace("{id}", &id).replace("{action}", "accept")
}

async fn the_served_document_is_the_generated_one_and_covers_every_route(db: Db) {
    let client = Client::new(&db).await;
    // Caught up, as a server is once it has started: `/ready` answers 200.
    client.state.service.read_model().catch_up().await.unwrap();
    let (status, served) = client.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let document = generated_document();
    assert!(served == document, "GET /openapi.json is not the generated document");

    let paths = document["paths"].as_object().unwrap();
    let api_paths = paths.keys().filter(|path| path.starts_with("/api/v1/")).count();
    assert!(api_paths >= 25, "only {api_paths} /api/v1 paths documented");
    for (template, item) in paths {
        for method in METHODS {
            let operation = &item[method.to_lowercase()];
            let (status, body) = client.call(method, &concrete(template), None, None).await;
            if operation.is_null() {
                // The router answers 405 to a method it does not route: routed means documented.
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is routed but not documented"
                );
                continue;
            }
            let secured = operation["security"] == json!([{ "bearer": [] }]);
            let public = template == "/api/v1/audit/public-key" || !template.starts_with("/api/");
            assert_eq!(
                secured, !public,
                "{method} {template}: bearer security on /api/v1 but its public key"
            );
            let expected = if secured { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
            assert_eq!(status, expected, "{method} {template} without a token: {body}");
        }
    }

    // The check every answer of the suite goes through catches what it should.
    let json = Some("application/json");
    assert!(answer_problem("GET", "/health", StatusCode::OK, json, br#"{"status": 1}"#).is_some());
    assert!(answer_problem("GET", "/health", StatusCode::IM_A_TEAPOT, None, b"").is_some());
    assert!(answer_problem("GET", "/health", StatusCode::OK, json, br#"{"status": "ok"}"#).is_none());

    // Every /api/v1 route is added with its operation (`routes!`), never past the document.
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/shequ-http/src/api");
    let files: Vec<PathBuf> =
        std::fs::read_dir(&sources).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert!(files.len() >= 5, "the /api/v1 modules are not in {}", sources.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let file = file.display();
        for bypass in [".route(", ".route_service(", ".nest_service(", "axum::Router"] {
            assert!(!text.contains(bypass), "{file} routes with `{bypass}`: use `.routes(routes!(…))`");
        }
    }
}

async fn the_committed_event_schemas_are_the_generated_ones(_: Db) {
    let generated = event_schemas::event_schemas();
    for (name, schema) in &generated {
        assert_eq!(schema["$schema"], DIALECT, "{name}");
        assert_eq!(schema["$id"], format!("{ID_BASE}{name}.json"), "{name}");
        check_or_write(&format!("events/{name}.json"), &pretty(schema));
    }
    for committed in committed_event_schemas().keys() {
        if generated.contains_key(committed) {
            continue;
        }
        let path = schemas_dir().join(format!("events/{committed}.json"));
        match updating() {
            true => std::fs::remove_file(path).unwrap(),
            false => panic!("schemas/events/{committed}.json is no event type of the code. {}", regenerate()),
        }
    }
    for event_type in
        ["PolicyBundleRecorded", "CheckpointSigned", "MandateProposed", "TransferRecorded", METADATA]
    {
        assert!(generated.contains_key(event_type), "no schema for {event_type}");
    }
}

/// `schemas/events/*.json` by stem.
fn committed_event_schemas() -> BTreeMap<String, Value> {
    let mut schemas = BTreeMap::new();
    for entry in std::fs::read_dir(schemas_dir().join("events")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "json") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            schemas.insert(stem, serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    schemas
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|error| panic!("{}: not a valid schema: {error}", schema["$id"]))
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path().as_str()))
        .collect()
}

/// The demo, service requests taken through every step (one rejected), a contest dismissed,
/// the catalogue amended and a signed checkpoint; then every recorded event against
/// `schemas/events`. (No API renames an organisation, and the demo's mandates are not yet due
/// to complete: those two types are checked against the code only.)
async fn every_recorded_event_validates_against_its_schema(db: Db) {
    let StationDesk { client, places, resident, worker, department } = StationDesk::open(&db).await;
    let request = Uuid::now_v7();
    let filing = |request: Uuid, code: &str| {
        json!({
            "request_id": request, "matter_code": code, "channel": "web",
            "description": "Registration help", "address": "多福巷 12号", "lat": 39.915, "long": 116.404,
            "attributes": { "floor": "3" },
        })
        .to_string()
    };
    let (status, filed) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(filing(request, "EMP-001"))).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let steps = [
        (&worker, "forward", json!({ "note": "to the bureau" })),
        (&department, "accept", json!({})),
        (&department, "start", json!({ "note": "on it" })),
        (&department, "resolve", json!({ "note": "registered" })),
        (&resident, "close", json!({})),
        (&resident, "rate", json!({ "rating": 4, "comment": "fine" })),
    ];
    for (token, action, body) in steps {
        let path = format!("/api/v1/requests/{request}/{action}");
        let (status, answer) = client.call("POST", &path, Some(token), Some(body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{action}: {answer}");
    }
    // EMP-001 is mandated to the first community: its station handles it, and may reject it.
    let first = places.communities[0].0;
    let rejected = Uuid::now_v7();
    let first_resident = client.token(Role::Resident, first);
    let body = filing(rejected, "EMP-001");
    let (status, filed) = client.call("POST", "/api/v1/requests", Some(&first_resident), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let path = format!("/api/v1/requests/{rejected}/reject");
    let reason = json!({ "reason": "not ours" }).to_string();
    let first_worker = client.token(Role::Community, first);
    let (status, answer) = client.call("POST", &path, Some(&first_worker), Some(reason)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // A contest dismissed; the catalogue amended, one matter retired.
    let district = client.token(Role::District, places.district);
    let review = format!("/api/v1/mandates/{}/review", demo::demo_id("mandate/PMD-002"));
    let dismiss = json!({ "outcome": "dismiss", "reason": "funded as agreed" }).to_string();
    let (status, answer) = client.call("POST", &review, Some(&district), Some(dismiss)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut matters = shequ_policy::starting_catalogue().unwrap();
    matters[0].legal_basis.push_str(" (amended)");
    matters.pop();
    client.state.service.publish_catalogue_as_operator(matters).await.unwrap();
    let directory = tempfile::tempdir().unwrap();
    let key = CheckpointKey::load_or_create(&directory.path().join("checkpoint.key")).unwrap();
    key.sign(&client.state.log).await.unwrap();

    let schemas = committed_event_schemas();
    let validators: BTreeMap<&str, jsonschema::Validator> =
        schemas.iter().map(|(name, schema)| (name.as_str(), validator(schema))).collect();
    let events: Vec<_> = client.state.log.stream_all(1, 1_000).try_collect().await.unwrap();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for event in &events {
        let at = format!("position {} ({}, {})", event.position, event.stream, event.event_type);
        seen.insert(event.event_type.clone());
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let metadata: Value = serde_json::from_str(&event.metadata).unwrap();
        match validators.get(event.event_type.as_str()) {
            None => failures.push(format!("{at}: no schemas/events/{}.json", event.event_type)),
            Some(validator) => {
                failures.extend(errors(validator, &data).into_iter().map(|e| format!("{at}: {e}")))
            }
        }
        let in_metadata = errors(&validators[METADATA], &metadata);
        failures.extend(in_metadata.into_iter().map(|error| format!("{at}: metadata {error}")));
    }
    assert!(
        failures.is_empty(),
        "{} of {} events do not validate against schemas/events:\n{}",
        failures.len(),
        events.len(),
        failures.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // And they catch what the code does not write: a negative amount, a property too many.
    let transfer = events.iter().find(|event| event.event_type == "TransferRecorded").unwrap();
    let recorded: Value = serde_json::from_str(&transfer.data).unwrap();
    let mut negative = recorded.clone();
    negative["transfer"]["amount_fen"] = json!(-1);
    let mut extra = recorded;
    extra["transfer"]["debit"]["note"] = json!("?");
    for wrong in [negative, extra] {
        assert!(!errors(&validators["TransferRecorded"], &wrong).is_empty(), "{wrong} passes");
    }
    let expected =
        ["PolicyBundleRecorded", "CheckpointSigned", "RequestRejected", "ContestDismissed", "MatterRetired"];
    for expected in expected {
        assert!(seen.contains(expected), "the run recorded no {expected}");
    }
    let unseen: Vec<&String> =
        schemas.keys().filter(|name| *name != METADATA && !seen.contains(*name)).collect();
    if !unseen.is_empty() {
        eprintln!(
            "schemas: no recorded example of {unseen:?} (their schemas are checked against the code only)"
        );
    }
}

/// The documented answers of one operation, compiled once: status → (content type → schema).
type Answers = BTreeMap<String, BTreeMap<String, Option<Arc<jsonschema::Validator>>>>;

struct Document {
    paths: Vec<(String, Vec<String>)>,
    document: Value,
    answers: Mutex<HashMap<(String, String), Arc<Answers>>>,
}

static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
    let document = generated_document();
    let paths = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|template| (template.clone(), template.split('/').map(str::to_owned).collect()))
        .collect();
    Document { paths, document, answers: Mutex::new(HashMap::new()) }
});

impl Document {
    /// The template a concrete path is routed by, as the router picks it (literal segments
    /// beat parameters), if it documents `method`.
    fn template(&self, method: &str, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('?').next().unwrap_or_default().split('/').collect();
        let (template, _) = self
            .paths
            .iter()
            .filter(|(_, parts)| {
                parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| part.starts_with('{') || part == segment)
            })
            .max_by_key(|(_, parts)| parts.iter().filter(|part| !part.starts_with('{')).count())?;
        let documented = self.document["paths"][template][method.to_lowercase()].is_object();
        documented.then_some(template.as_str())
    }

    fn answers(&self, method: &str, template: &str) -> Arc<Answers> {
        let key = (method.to_owned(), template.to_owned());
        if let Some(answers) = self.answers.lock().unwrap().get(&key) {
            return answers.clone();
        }
        let operation = &self.document["paths"][template][method.to_lowercase()];
        let mut answers = Answers::new();
        for (status, response) in operation["responses"].as_object().unwrap() {
            // A shared response (`#/components/responses/…`) is checked as the one it names.
            let response = match response["$ref"].as_str() {
                Some(shared) => {
                    &self.document["components"]["responses"]
                        [shared.trim_start_matches("#/components/responses/")]
                }
                None => response,
            };
            let contents = answers.entry(status.clone()).or_default();
            for (content_type, content) in response["content"].as_object().into_iter().flatten() {
                let compiled =
                    content.get("schema").filter(|_| content_type == "application/json").map(|schema| {
                        // Within the document, so that `#/components/schemas/…` resolves.
                        let wrapped = json!({
                            "$schema": DIALECT,
                            "components": self.document["components"],
                            "allOf": [schema],
                        });
                        Arc::new(validator(&wrapped))
                    });
                contents.insert(content_type.clone(), compiled);
            }
        }
        let answers = Arc::new(answers);
        self.answers.lock().unwrap().insert(key, answers.clone());
        answers
    }
}

/// Checks one answer against the OpenAPI document: its status is documented for the
/// operation, and its body has a documented content type and, for JSON, the documented schema.
/// Paths the document does not route (unknown ones, `/openapi.json`) are not checked.
pub fn check_answer(method: &str, path: &str, status: StatusCode, content_type: Option<&str>, body: &[u8]) {
    if let Some(problem) = answer_problem(method, path, status, content_type, body) {
        panic!("{problem}");
    }
}

fn answer_problem(
    method: &str,
    path: &str,
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
    let template = DOCUMENT.template(method, path)?;
    let answers = DOCUMENT.answers(method, template);
    let operation = format!("{method} {template} ({path})");
    let Some(contents) = answers.get(status.as_str()) else {
        return Some(format!("{operation} answered {status}, which the OpenAPI document does not list"));
    };
    let Some(content_type) = content_type.filter(|_| !body.is_empty()) else {
        return (!contents.is_empty())
            .then(|| format!("{operation} answered {status} with no body, documented with one"));
    };
    let Some(schema) = contents.get(content_type) else {
        return Some(format!(
            "{operation} answered {status} in {content_type}, documented as {:?}",
            contents.keys()
        ));
    };
    let value: Value = match (schema, serde_json::from_slice(body)) {
        (None, _) => return None,
        (Some(_), Err(error)) => {
            return Some(format!("{operation} answered {status} with bad JSON: {error}"))
        }
        (Some(_), Ok(value)) => value,
    };
    let found = errors(schema.as_ref()?, &value);
    (!found.is_empty())
        .then(|| format!("{operation} answered {status} off its documented schema:\n{}", found.join("\n")))
}
