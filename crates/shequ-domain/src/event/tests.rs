//! The direct decode (`event_from`) gives exactly what the decode through
//! `serde_json::Value` (`event_from_value`) gives: the same event, or the same error.

use std::fmt::Debug;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{data_in, data_of, data_of_value, event_from, event_from_value, DecodeError, Tagged};
use crate::catalogue::CatalogueEvent;
use crate::ledger::LedgerEvent;
use crate::mandate::MandateEvent;
use crate::organisation::OrganisationEvent;
use crate::request::RequestEvent;

/// Real events' data as the log stores it, one line per event type that the demo and the
/// benchmark's episodes record (`shequ-bench replay`): stream category, type, data text.
const CORPUS: &str = include_str!("corpus.jsonl");

struct Sample {
    category: String,
    event_type: String,
    data: String,
}

fn corpus() -> Vec<Sample> {
    CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a corpus line is JSON");
            let field = |name: &str| value[name].as_str().expect("corpus fields are strings").to_owned();
            Sample { category: field("category"), event_type: field("eventType"), data: field("data") }
        })
        .collect()
}

/// Decodes both ways as `E`; they must agree. Returns whether the decode succeeded.
fn agree_as<E: DeserializeOwned + PartialEq + Debug>(event_type: &str, data: &str) -> bool {
    let direct: Result<E, DecodeError> = event_from(event_type, data);
    let reference: Result<E, DecodeError> = event_from_value(event_type, data);
    match (direct, reference) {
        (Ok(direct), Ok(reference)) => {
            assert_eq!(direct, reference, "{event_type} {data:?}");
            true
        }
        (Err(direct), Err(reference)) => {
            assert_eq!(direct.to_string(), reference.to_string(), "{event_type} {data:?}");
            false
        }
        (direct, reference) => {
            panic!("{event_type} {data:?}: direct {direct:?}, through Value {reference:?}")
        }
    }
}

fn agree(category: &str, event_type: &str, data: &str) -> bool {
    match category {
        "organisation" => agree_as::<OrganisationEvent>(event_type, data),
        "catalogue" => agree_as::<CatalogueEvent>(event_type, data),
        "mandate" => agree_as::<MandateEvent>(event_type, data),
        "ledger" => agree_as::<LedgerEvent>(event_type, data),
        "request" => agree_as::<RequestEvent>(event_type, data),
        other => panic!("no event enum for `{other}`"),
    }
}

/// Whether the direct read alone (no fallback) decodes it.
fn direct_reads(category: &str, event_type: &str, data: &str) -> bool {
    fn read<'a, E: Deserialize<'a>>(event_type: &'a str, data: &'a str) -> bool {
        E::deserialize(Tagged { event_type, data }).is_ok()
    }
    match category {
        "organisation" => read::<OrganisationEvent>(event_type, data),
        "catalogue" => read::<CatalogueEvent>(event_type, data),
        "mandate" => read::<MandateEvent>(event_type, data),
        "ledger" => read::<LedgerEvent>(event_type, data),
        "request" => read::<RequestEvent>(event_type, data),
        other => panic!("no event enum for `{other}`"),
    }
}

#[test]
fn real_events_decode_the_same_and_directly() {
    let samples = corpus();
    assert!(samples.len() >= 20, "the corpus holds {} samples", samples.len());
    for sample in &samples {
        assert!(agree(&sample.category, &sample.event_type, &sample.data), "{}", sample.event_type);
        // Only a unit variant's `{}` needs the way through `Value`.
        let unit = sample.data == "{}";
        assert_eq!(
            direct_reads(&sample.category, &sample.event_type, &sample.data),
            !unit,
            "{}",
            sample.event_type
        );
    }
}

/// Writes a real event's data both ways: the direct write gives the same JSON as the write
/// through `Value` (its keys in the types' order, not sorted), and reads back as the event.
fn write_agrees_as<E: DeserializeOwned + serde::Serialize + PartialEq + Debug>(event_type: &str, data: &str) {
    let event: E = event_from(event_type, data).unwrap();
    let direct = data_of(&event, event_type).unwrap();
    let reference = data_of_value(&event, event_type).unwrap();
    let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(parsed(&direct), parsed(&reference), "{event_type}");
    assert_eq!(event_from::<E>(event_type, &direct).unwrap(), event, "{event_type}");
    // Not a tree written out again: the data is the event's own text.
    let whole = serde_json::to_string(&event).unwrap();
    assert!(whole.contains(&format!(r#","data":{direct}}}"#)) || direct == "{}", "{event_type}");
}

#[test]
fn real_events_write_their_data_directly_as_through_value() {
    let samples = corpus();
    for sample in &samples {
        let (event_type, data) = (sample.event_type.as_str(), sample.data.as_str());
        match sample.category.as_str() {
            "organisation" => write_agrees_as::<OrganisationEvent>(event_type, data),
            "catalogue" => write_agrees_as::<CatalogueEvent>(event_type, data),
            "mandate" => write_agrees_as::<MandateEvent>(event_type, data),
            "ledger" => write_agrees_as::<LedgerEvent>(event_type, data),
            "request" => write_agrees_as::<RequestEvent>(event_type, data),
            other => panic!("no event enum for `{other}`"),
        }
    }
    // A recorded decision's policy input is copied as its text, not parsed and written anew
    // (the corpus, written through `Value`, has its keys sorted; the text stays so).
    let decided =
        samples.iter().find(|sample| sample.event_type == "MandateAdmitted").expect("in the corpus");
    let event: MandateEvent = event_from(&decided.event_type, &decided.data).unwrap();
    let MandateEvent::MandateAdmitted { decision } = &event else { unreachable!("decoded as its type") };
    let direct = data_of(&event, &decided.event_type).unwrap();
    assert!(direct.contains(&format!(r#""input":{}"#, decision.input.get())), "{direct}");
    // An input written from types keeps their order; through `Value` its keys came out sorted.
    let mut unsorted = decision.clone();
    #[derive(serde::Serialize)]
    struct Unsorted {
        z: u8,
        a: [u8; 1],
    }
    unsorted.input = crate::recorded::RecordedInput::of(&Unsorted { z: 1, a: [2] }).unwrap();
    let written = MandateEvent::MandateAdmitted { decision: unsorted };
    assert_eq!(unsorted_input_order(&written), r#"{"z":1,"a":[2]}"#);
    assert!(data_of(&written, "MandateAdmitted").unwrap().contains(r#""input":{"z":1,"a":[2]}"#));
    assert!(data_of_value(&written, "MandateAdmitted").unwrap().contains(r#""input":{"a":[2],"z":1}"#));
}

fn unsorted_input_order(event: &MandateEvent) -> &str {
    match event {
        MandateEvent::MandateAdmitted { decision } => decision.input.get(),
        _ => unreachable!("built as MandateAdmitted"),
    }
}

#[test]
fn only_the_tagged_shape_is_cut_out() {
    assert_eq!(data_in(r#"{"eventType":"MandateAccepted"}"#), Some("{}"));
    assert_eq!(data_in(r#"{"eventType":"A","data":{"x":[1,"}"]}}"#), Some(r#"{"x":[1,"}"]}"#));
    assert_eq!(data_in(r#"{"eventType":"A","data":7}"#), Some("7"));
    for odd in [
        r#"{"data":{},"eventType":"A"}"#,
        r#"{"eventType":"A\"B","data":{}}"#,
        r#"{"eventType":"A","x":1}"#,
        "[]",
        "",
    ] {
        assert_eq!(data_in(odd), None, "{odd}");
    }
}

#[test]
fn unit_variants_decode_the_same() {
    for data in ["{}", "{ }", " {}\n", "null", "[]", "", "{\"x\":1}", "{}}", "0"] {
        agree_as::<MandateEvent>("MandateAccepted", data);
    }
    assert!(agree_as::<MandateEvent>("MandateAccepted", "{}"));
    assert!(agree_as::<MandateEvent>("MandateAccepted", "{ }"));
}

#[test]
fn odd_texts_decode_the_same() {
    for sample in corpus() {
        let (category, event_type, data) = (&sample.category, &sample.event_type, &sample.data);
        for odd in [
            format!(" {data}\n"),
            format!("{data} x"),
            format!("{data}}}"),
            format!("[{data}]"),
            data.chars().take(data.chars().count() / 2).collect(),
            "null".to_owned(),
            "\"text\"".to_owned(),
        ] {
            agree(category, event_type, &odd);
        }
        // An unknown type, and another category's type.
        agree(category, "NoSuchEvent", data);
        agree(if category == "request" { "mandate" } else { "request" }, event_type, data);
        // A key given twice: through `Value` the last one counts; the direct read refuses it
        // and leaves the decision to the way through `Value`.
        if let Ok(serde_json::Value::Object(members)) = serde_json::from_str(data) {
            if let Some((key, value)) = members.iter().next() {
                let rest = data.trim_start().strip_prefix('{').expect("an object");
                let twice = format!("{{{}:{value},{rest}", serde_json::to_string(key).expect("a key"));
                assert_eq!(agree(category, event_type, &twice), agree(category, event_type, data), "{twice}");
            }
        }
    }
}

/// Characters that matter to JSON, and a few that do not.
const EDITS: &[char] =
    &['{', '}', '[', ']', '"', ':', ',', '0', '1', '-', '.', 'e', 'n', '\\', ' ', 'a', 'é'];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn edited_data_decodes_the_same(
        sample in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        edit in 0..3u8,
        with in any::<prop::sample::Index>(),
    ) {
        let samples = corpus();
        let sample = &samples[sample.index(samples.len())];
        let mut characters: Vec<char> = sample.data.chars().collect();
        let at = at.index(characters.len() + 1);
        let with = EDITS[with.index(EDITS.len())];
        match (edit, at < characters.len()) {
            (0, true) => {
                characters.remove(at);
            }
            (1, true) => characters[at] = with,
            _ => characters.insert(at, with),
        }
        let edited: String = characters.into_iter().collect();
        agree(&sample.category, &sample.event_type, &edited);
    }
}
