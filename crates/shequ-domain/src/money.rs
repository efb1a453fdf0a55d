//! Money in fen (分), the smallest unit of the yuan. Never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A non-negative amount of money in fen (分): a JSON integer, 0 to 10^15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Fen(i64);

/// In JSON a plain integer of fen, which the schema bounds as [`Fen::parse`] does.
impl utoipa::PartialSchema for Fen {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(FEN_MAX))
            .description(Some("An amount of money in fen (分, 1/100 yuan): an integer, never a float."))
            .into()
    }
}

impl utoipa::ToSchema for Fen {}

impl TryFrom<i64> for Fen {
    type Error = FenError;

    fn try_from(amount: i64) -> Result<Self, FenError> {
        Fen::parse(amount)
    }
}

impl From<Fen> for i64 {
    fn from(amount: Fen) -> i64 {
        amount.0
    }
}

/// The largest amount shequ accepts in one figure: 10^15 fen (ten trillion yuan), far above
/// any budget and far below `i64::MAX`, so sums of a few thousand figures cannot overflow.
pub const FEN_MAX: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an amount must be 0 to {FEN_MAX} fen, not {0}")]
pub struct FenError(pub i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn parse(amount: i64) -> Result<Self, FenError> {
        match (0..=FEN_MAX).contains(&amount) {
            true => Ok(Fen(amount)),
            false => Err(FenError(amount)),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).and_then(|sum| Fen::parse(sum).ok())
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).and_then(|difference| Fen::parse(difference).ok())
    }

    pub fn checked_mul(self, factor: u32) -> Option<Fen> {
        self.0.checked_mul(i64::from(factor)).and_then(|product| Fen::parse(product).ok())
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} fen", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_negative_and_absurd_amounts() {
        assert_eq!(Fen::parse(-1), Err(FenError(-1)));
        assert_eq!(Fen::parse(FEN_MAX + 1), Err(FenError(FEN_MAX + 1)));
        assert_eq!(Fen::parse(30_000).unwrap().to_string(), "30000 fen");
        assert_eq!(Fen::parse(5).unwrap().checked_sub(Fen::parse(6).unwrap()), None);
        assert_eq!(Fen::parse(3_000).unwrap().checked_mul(10), Some(Fen::parse(30_000).unwrap()));
    }

    #[test]
    fn deserialisation_is_plain_integer() {
        let amount: Fen = serde_json::from_str("12000").unwrap();
        assert_eq!(amount.get(), 12_000);
        assert_eq!(serde_json::to_string(&amount).unwrap(), "12000");
        // Deserialising is parsing: no negative amount gets in through JSON.
        assert!(serde_json::from_str::<Fen>("-100").is_err());
    }
}
