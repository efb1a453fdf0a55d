//! JSON Schemas (draft 2020-12) of every event type's data exactly as the log stores it, and
//! of the events' metadata, generated from the code.
//!
//! The source is the types' utoipa schemas, i.e. their serde attributes: an OpenAPI 3.1 schema
//! object is a JSON Schema 2020-12 schema. An event enum is adjacently tagged
//! (`eventType`/`data`) and the log keeps the type apart from the data, so each variant's
//! `data` schema becomes one document; a variant without data is stored as `{}`. Referenced
//! types go into `$defs`. Objects are closed (`additionalProperties: false`): the code writes
//! exactly these properties, so anything else in a recorded event is drift.
//!
//! The documents are committed under `schemas/events/` (`docs/api.md`); the suite checks them
//! against this code and validates real recorded events against them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use shequ_domain::catalogue::CatalogueEvent;
use shequ_domain::ledger::LedgerEvent;
use shequ_domain::mandate::MandateEvent;
use shequ_domain::organisation::OrganisationEvent;
use shequ_domain::request::RequestEvent;
use shequ_store::EventMetadata;
use utoipa::ToSchema;

use crate::checkpoint::{Checkpoint, CHECKPOINT_EVENT};
use crate::PolicyBundleRecorded;

/// The dialect every document declares.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";
/// Where the documents say they live: `{ID_BASE}{name}.json`.
pub const ID_BASE: &str = "https://shequ.invalid/schemas/events/";
/// The file stem of the metadata's schema.
pub const METADATA: &str = "metadata";

const COMPONENTS: &str = "#/components/schemas/";
const DEFS: &str = "#/$defs/";

/// Every event type's schema by its type name, and the metadata's under [`METADATA`]: the
/// files of `schemas/events/` by stem.
pub fn event_schemas() -> BTreeMap<String, Value> {
    let mut documents = BTreeMap::new();
    variants::<OrganisationEvent>("organisation-{id}", &mut documents);
    variants::<CatalogueEvent>("catalogue-{id}", &mut documents);
    variants::<MandateEvent>("mandate-{id}", &mut documents);
    variants::<LedgerEvent>("ledger-{district}", &mut documents);
    variants::<RequestEvent>("request-{id}", &mut documents);
    let bundle = "PolicyBundleRecorded";
    documents.insert(bundle.into(), of_type::<PolicyBundleRecorded>(bundle, "policy-{digest}"));
    documents.insert(CHECKPOINT_EVENT.into(), of_type::<Checkpoint>(CHECKPOINT_EVENT, "checkpoint-{id}"));
    let (schema, components) = schema_of::<EventMetadata>();
    let description = "Every event's metadata as the log stores it (docs/audit-format.md).";
    documents.insert(METADATA.into(), document(METADATA, description, schema, &components));
    documents
}

/// The schema of `T` and of every type it references, by name, as JSON.
fn schema_of<T: ToSchema>() -> (Value, BTreeMap<String, Value>) {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    let components = referenced
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).expect("a schema is JSON")))
        .collect();
    (serde_json::to_value(T::schema()).expect("a schema is JSON"), components)
}

/// One document per variant of an adjacently tagged event enum.
fn variants<E: ToSchema>(stream: &str, documents: &mut BTreeMap<String, Value>) {
    let (schema, components) = schema_of::<E>();
    let variants = schema["oneOf"].as_array().expect("an event enum is a oneOf of its variants");
    for variant in variants {
        let properties = &variant["properties"];
        let event_type = properties["eventType"]["enum"][0].as_str().expect("each variant names its type");
        // A variant without data is stored as `{}`.
        let data = match properties.get("data") {
            Some(data) => data.clone(),
            None => {
                json!({ "type": "object", "maxProperties": 0, "description": "No data: stored as `{}`." })
            }
        };
        let description = format!("{}{}", own(variant), stored(event_type, stream));
        let previous =
            documents.insert(event_type.into(), document(event_type, &description, data, &components));
        assert!(previous.is_none(), "two event enums name the type {event_type}");
    }
}

/// The document of a bookkeeping event whose data is one type.
fn of_type<T: ToSchema>(event_type: &str, stream: &str) -> Value {
    let (schema, components) = schema_of::<T>();
    document(event_type, &stored(event_type, stream), schema, &components)
}

/// A schema's own description, as the first paragraph of a longer one.
fn own(schema: &Value) -> String {
    match schema.get("description").and_then(Value::as_str) {
        Some(own) => format!("{own}\n\n"),
        None => String::new(),
    }
}

fn stored(event_type: &str, stream: &str) -> String {
    format!(
        "The data of a `{event_type}` event (stream `{stream}`) as the log stores it; the type is not \
         repeated inside (docs/audit-format.md)."
    )
}

/// `schema` as a standalone document titled `title`, with the types it references in `$defs`;
/// `description` follows the schema's own.
fn document(title: &str, description: &str, schema: Value, components: &BTreeMap<String, Value>) -> Value {
    let description = format!("{}{description}", own(&schema));
    let Value::Object(mut schema) = schema else { panic!("the schema of {title} is not an object") };
    schema.remove("description");
    let mut out = Map::new();
    out.insert("$schema".into(), DIALECT.into());
    out.insert("$id".into(), format!("{ID_BASE}{title}.json").into());
    out.insert("title".into(), title.into());
    out.insert("description".into(), description.into());
    let mut definitions = Map::new();
    let mut wanted: Vec<String> = referenced(&Value::Object(schema.clone())).into_iter().collect();
    while let Some(name) = wanted.pop() {
        if definitions.contains_key(&name) {
            continue;
        }
        let definition =
            components.get(&name).unwrap_or_else(|| panic!("{title} references {name}, which has no schema"));
        wanted.extend(referenced(definition));
        definitions.insert(name, definition.clone());
    }
    for (key, value) in schema {
        out.insert(key, value);
    }
    if !definitions.is_empty() {
        out.insert("$defs".into(), Value::Object(definitions));
    }
    let mut out = Value::Object(out);
    close_and_relink(&mut out);
    out
}

/// The component names `value` references.
fn referenced(value: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                if let Some(name) = object.get("$ref").and_then(Value::as_str) {
                    names.insert(name.strip_prefix(COMPONENTS).unwrap_or(name).to_owned());
                }
                stack.extend(object.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// Points references at `$defs` and closes every object that lists its properties.
fn close_and_relink(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref") {
                if let Some(name) = reference.strip_prefix(COMPONENTS) {
                    *reference = format!("{DEFS}{name}");
                }
            }
            if object.contains_key("properties") && !object.contains_key("additionalProperties") {
                object.insert("additionalProperties".into(), false.into());
            }
            object.values_mut().for_each(close_and_relink);
        }
        Value::Array(items) => items.iter_mut().for_each(close_and_relink),
        _ => {}
    }
}
