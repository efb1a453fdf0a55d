//! Stream names in the KurrentDB/EventStoreDB convention: `category-id`.

use std::fmt;

use uuid::Uuid;

/// The longest category we accept, in bytes. Categories are aggregate names, so short.
pub const CATEGORY_LENGTH_MAX: usize = 64;

/// A stream category, e.g. `mandate`. Lower-case ASCII letters, digits and `_`; never a `-`,
/// because the first `-` of a stream name separates the category from the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(String);

impl Category {
    pub fn parse(text: &str) -> Result<Self, StreamNameError> {
        let valid_characters =
            text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        if text.is_empty() || text.len() > CATEGORY_LENGTH_MAX || !valid_characters {
            return Err(StreamNameError::InvalidCategory(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stream name: `category-uuid`, e.g. `mandate-0190f3c4-…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName {
    category: Category,
    id: Uuid,
}

impl StreamName {
    pub fn new(category: Category, id: Uuid) -> Self {
        Self { category, id }
    }

    /// Parses `category-uuid`; the category is everything before the first `-`.
    pub fn parse(text: &str) -> Result<Self, StreamNameError> {
        let Some((category, id)) = text.split_once('-') else {
            return Err(StreamNameError::MissingSeparator(text.to_owned()));
        };
        let category = Category::parse(category)?;
        let id = Uuid::parse_str(id).map_err(|_| StreamNameError::InvalidId(text.to_owned()))?;
        Ok(Self { category, id })
    }

    pub fn category(&self) -> &Category {
        &self.category
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.category.0, self.id.hyphenated())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    #[error("stream category `{0}` must be 1–64 characters of a–z, 0–9 or `_` (no `-`)")]
    InvalidCategory(String),
    #[error("stream name `{0}` must be `category-uuid`")]
    MissingSeparator(String),
    #[error("stream name `{0}` does not end in a UUID")]
    InvalidId(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = Uuid::now_v7();
        let name = StreamName::new(Category::parse("mandate").unwrap(), id);
        let text = name.to_string();
        assert_eq!(text, format!("mandate-{id}"));
        assert_eq!(StreamName::parse(&text).unwrap(), name);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(Category::parse("man-date"), Err(StreamNameError::InvalidCategory(_))));
        assert!(matches!(Category::parse(""), Err(StreamNameError::InvalidCategory(_))));
        assert!(matches!(Category::parse("Mandate"), Err(StreamNameError::InvalidCategory(_))));
        assert!(matches!(StreamName::parse("mandate"), Err(StreamNameError::MissingSeparator(_))));
        assert!(matches!(StreamName::parse("mandate-42"), Err(StreamNameError::InvalidId(_))));
    }
}
