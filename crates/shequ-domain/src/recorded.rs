//! A policy input as recorded with its decision.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The input a policy decided on, kept as the JSON text it was recorded as: the service writes
/// it once ([`RecordedInput::of`]), the policy decides on that text, and the event carries it
/// byte for byte (inputs hold no floats, whose text alone could differ). It is the largest
/// part of a decision's events, and nothing but a re-decision reads it, so it is neither
/// parsed when an event is read (a fold copies the text) nor copied when a command, its events
/// or their states are cloned (they share it).
#[derive(Debug, Clone)]
pub struct RecordedInput(Arc<RawValue>);

impl RecordedInput {
    /// The input as JSON text, exactly as recorded.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// `input` written as compact JSON text, once: what the policy is given and what is
    /// recorded with its decision.
    pub fn of<T: Serialize + ?Sized>(input: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(input).map(|raw| Self(Arc::from(raw)))
    }

    /// The input, parsed. Text read from a log is only skimmed when an event is read, so it
    /// can still fail here (nesting deeper than serde_json parses, a lone surrogate).
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl From<&serde_json::Value> for RecordedInput {
    fn from(value: &serde_json::Value) -> Self {
        let text = serde_json::to_string(value).expect("a JSON value serialises");
        Self(Arc::from(RawValue::from_string(text).expect("a serialised value is valid JSON")))
    }
}

impl From<serde_json::Value> for RecordedInput {
    fn from(value: serde_json::Value) -> Self {
        Self::from(&value)
    }
}

/// `null`: what a view keeps once the input has served its fold.
impl Default for RecordedInput {
    fn default() -> Self {
        Self::from(serde_json::Value::Null)
    }
}

/// The same JSON value. The service writes inputs compact with one serialiser, so equal
/// inputs are nearly always equal text; text written otherwise (spacing, key order) is
/// compared parsed.
impl PartialEq for RecordedInput {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
            || matches!((self.value(), other.value()), (Ok(mine), Ok(theirs)) if mine == theirs)
    }
}

impl Eq for RecordedInput {}

impl Serialize for RecordedInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RecordedInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| Self(Arc::from(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_the_same_text_inside_an_event() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            input: RecordedInput,
            after: u32,
        }
        let value = serde_json::json!({"matter": {"code": "EMP-001", "powers": ["a", "b"]}, "fen": 3000});
        let holder = Holder { input: RecordedInput::from(&value), after: 7 };
        let text = serde_json::to_string(&holder).unwrap();
        assert_eq!(text, format!(r#"{{"input":{value},"after":7}}"#));
        let read: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(read, holder);
        assert_eq!(read.input.value().unwrap(), value);
        // From a parsed value too: it is written out again, compact, as it was recorded.
        let through_value: Holder = serde_json::from_value(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(through_value, holder);
        assert_eq!(RecordedInput::default().get(), "null");
        // Equal as JSON, whatever the spacing and key order; unequal values stay unequal.
        let spaced: Holder = serde_json::from_str(
            r#"{"after": 7, "input": { "fen" : 3000,
            "matter": {"powers": ["a", "b"], "code": "EMP-001"}}}"#,
        )
        .unwrap();
        assert_eq!(spaced, holder);
        assert_ne!(spaced.input, RecordedInput::from(serde_json::json!({"fen": 3001})));
    }
}
