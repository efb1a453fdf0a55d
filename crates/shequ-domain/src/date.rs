//! Calendar dates: a mandate's deadline, a request's expected date.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A day of the Gregorian calendar, written `YYYY-MM-DD` (ISO 8601), checked when made: a
/// real day of a real month. Its text is its JSON form, so dates compare as text in order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date(String);

/// In JSON a string, `YYYY-MM-DD`.
impl utoipa::PartialSchema for Date {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .into()
    }
}

impl utoipa::ToSchema for Date {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a YYYY-MM-DD date")]
pub struct DateError(pub String);

impl Date {
    /// The date `text` names, if it is one.
    pub fn parse(text: &str) -> Result<Self, DateError> {
        let invalid = || DateError(text.to_owned());
        let bytes = text.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
        if !shaped {
            return Err(invalid());
        }
        let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().map_err(|_| invalid());
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(invalid()),
        };
        match (1..=days).contains(&day) {
            true => Ok(Date(text.to_owned())),
            false => Err(invalid()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Date {
    type Error = DateError;

    fn try_from(text: String) -> Result<Self, DateError> {
        Date::parse(&text)
    }
}

impl From<Date> for String {
    fn from(date: Date) -> String {
        date.0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_days_are_dates() {
        for text in ["2026-12-31", "2024-02-29", "2000-02-29", "0001-01-01"] {
            assert_eq!(Date::parse(text).map(|date| date.to_string()), Ok(text.to_owned()));
        }
        for text in [
            "soon",
            "2026-1-31",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-02-29",
            "1900-02-29",
            "2026-12-31T00:00:00Z",
            "２０２６-12-31",
            "",
        ] {
            assert_eq!(Date::parse(text), Err(DateError(text.to_owned())), "{text}");
        }
    }

    #[test]
    fn a_date_is_its_text_in_json() {
        let date = Date::parse("2026-12-31").unwrap();
        assert_eq!(serde_json::to_string(&date).unwrap(), "\"2026-12-31\"");
        assert_eq!(serde_json::from_str::<Date>("\"2026-12-31\"").unwrap(), date);
        assert!(serde_json::from_str::<Date>("\"2026-02-30\"").is_err());
    }
}
