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
/// returns only its data, as compact JSON text.
pub fn data_of<E: Serialize>(event: &E, event_type: &str) -> Result<String, DecodeError> {
    let json_error = |source| DecodeError::Json { event_type: event_type.to_owned(), source };
    let mut value = serde_json::to_value(event).map_err(json_error)?;
    let data = value
        .get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
    serde_json::to_string(&data).map_err(json_error)
}

/// The inverse of [`data_of`].
pub fn event_from<E: DeserializeOwned>(event_type: &str, data: &str) -> Result<E, DecodeError> {
    let json_error = |source| DecodeError::Json { event_type: event_type.to_owned(), source };
    let data: serde_json::Value = serde_json::from_str(data).map_err(json_error)?;
    // A unit variant (`MandateAccepted`) has no data member; `data_of` writes `{}` for it.
    let unit = data.as_object().is_some_and(serde_json::Map::is_empty);
    let tagged = serde_json::json!({ "eventType": event_type, "data": data });
    match serde_json::from_value(tagged) {
        Err(_) if unit => {
            serde_json::from_value(serde_json::json!({ "eventType": event_type })).map_err(json_error)
        }
        result => result.map_err(json_error),
    }
}
