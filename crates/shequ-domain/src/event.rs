//! How domain events cross the stability boundary into the log.
//!
//! An event in the log is an event type (`MandateAdmitted`), a version, and its data as JSON
//! text, the way KurrentDB/EventStoreDB keeps them: the type is not repeated inside the data.
//! Event enums derive serde with `#[serde(tag = "eventType", content = "data")]`; the helpers
//! here split that form into (type, data) and join it back, so no event needs hand-written
//! (de)serialisation.

use serde::{de::DeserializeOwned, Serialize};

/// An event that can be written to and read from the log. An event enum derives serde with
/// `#[serde(tag = "eventType", content = "data")]` and names its types; the data's JSON and
/// the check of the version come with the trait.
pub trait DomainEvent: Sized + Serialize + DeserializeOwned {
    /// The past-tense type name, e.g. `OrganisationRegistered`.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event type's data. Bumped with an upcaster, never by
    /// editing history.
    fn event_version(&self) -> u32 {
        1
    }

    /// The data as JSON text, without the type.
    fn to_data(&self) -> Result<String, DecodeError> {
        data_of(self, self.event_type())
    }

    /// Rebuilds the event from its type, version and data. This build reads version 1; an
    /// event type that moves on overrides this with its upcaster.
    fn from_data(event_type: &str, event_version: u32, data: &str) -> Result<Self, DecodeError> {
        if event_version != 1 {
            return Err(DecodeError::UnknownVersion { event_type: event_type.to_owned(), event_version });
        }
        event_from(event_type, data)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event type `{event_type}` version {event_version} is unknown to this build")]
    UnknownVersion { event_type: String, event_version: u32 },
    #[error("event `{event_type}`: {source}")]
    Json {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Serialises an adjacently tagged event enum (`tag = "eventType", content = "data"`) and
/// returns only its data, as compact JSON text, keys in the order the types declare them.
///
/// The event is written once, straight to text, and its data is the text between the tag and
/// the closing brace: serde writes the tag first. A recorded policy input
/// ([`crate::recorded::RecordedInput`]) is copied as it is, not parsed into a tree. Any other shape (none
/// is known) goes the way through `serde_json::Value`, [`data_of_value`].
pub fn data_of<E: Serialize>(event: &E, event_type: &str) -> Result<String, DecodeError> {
    let json_error = |source| DecodeError::Json { event_type: event_type.to_owned(), source };
    let text = serde_json::to_string(event).map_err(json_error)?;
    match data_in(&text) {
        Some(data) => Ok(data.to_owned()),
        None => data_of_value(event, event_type),
    }
}

/// The data in an adjacently tagged event's compact text: `D` in `{"eventType":"T","data":D}`,
/// and `{}` for a unit variant, `{"eventType":"T"}`. `None` for any other shape.
fn data_in(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"eventType":""#)?;
    let tag_end = rest.find('"')?;
    // An escape in the tag (none of ours has one) would hide its end.
    if rest[..tag_end].contains('\\') {
        return None;
    }
    match &rest[tag_end + 1..] {
        "}" => Some("{}"),
        rest => rest.strip_prefix(r#","data":"#)?.strip_suffix('}'),
    }
}

/// [`data_of`] through `serde_json::Value`: the event as a tree, its `data` member written
/// out (keys sorted, as `Value` keeps them). Its reference.
pub fn data_of_value<E: Serialize>(event: &E, event_type: &str) -> Result<String, DecodeError> {
    let json_error = |source| DecodeError::Json { event_type: event_type.to_owned(), source };
    let mut value = serde_json::to_value(event).map_err(json_error)?;
    let data = value
        .get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
    serde_json::to_string(&data).map_err(json_error)
}

/// The inverse of [`data_of`].
///
/// The event enum first reads the map `{"eventType": event_type, "data": data}` straight
/// from the text of `data` (one whole JSON document), with no intermediate
/// `serde_json::Value`: the tag comes first, so serde decodes the variant's data in place.
/// Whatever that does not read (a unit variant's `{}`, keys given twice, text that is not
/// JSON) goes the way through `Value`, [`event_from_value`], which decides; where the direct
/// read succeeds, it gives what that would (see the tests).
pub fn event_from<E: DeserializeOwned>(event_type: &str, data: &str) -> Result<E, DecodeError> {
    match E::deserialize(Tagged { event_type, data }) {
        Ok(event) => Ok(event),
        Err(_) => event_from_value(event_type, data),
    }
}

/// The inverse of [`data_of`], through `serde_json::Value`: the data is parsed, tagged and
/// converted. The reference for [`event_from`].
pub fn event_from_value<E: DeserializeOwned>(event_type: &str, data: &str) -> Result<E, DecodeError> {
    let json_error = |source| DecodeError::Json { event_type: event_type.to_owned(), source };
    let data: serde_json::Value = serde_json::from_str(data).map_err(json_error)?;
    // A unit variant (`MandateAccepted`) has no data member; `data_of` writes `{}` for it.
    let unit = data.as_object().is_some_and(serde_json::Map::is_empty);
    // Read from text with the tag first, as `Tagged` reads: with the data first, serde would
    // buffer it, and a recorded policy input (`RecordedInput`, raw JSON) cannot be read back
    // from serde's buffer.
    let tag = serde_json::Value::from(event_type);
    let tagged = format!(r#"{{"eventType":{tag},"data":{data}}}"#);
    match serde_json::from_str(&tagged) {
        Err(_) if unit => serde_json::from_str(&format!(r#"{{"eventType":{tag}}}"#)).map_err(json_error),
        result => result.map_err(json_error),
    }
}

/// `{"eventType": …, "data": …}` as a serde map, `data` read from its own JSON text.
struct Tagged<'a> {
    event_type: &'a str,
    data: &'a str,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedEntries { tagged: self, next: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct TaggedEntries<'a> {
    tagged: Tagged<'a>,
    /// How many entries were read: the tag first, then the data.
    next: u8,
}

impl<'de> serde::de::MapAccess<'de> for TaggedEntries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "eventType",
            1 => "data",
            _ => return Ok(None),
        };
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.next += 1;
        match self.next {
            1 => seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(self.tagged.event_type)),
            _ => {
                let mut deserializer = serde_json::Deserializer::from_str(self.tagged.data);
                let value = seed.deserialize(&mut deserializer)?;
                deserializer.end()?;
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests;
