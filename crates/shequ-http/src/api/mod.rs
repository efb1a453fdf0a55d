//! `/api/v1`: every capability over JSON, each request authenticated by a bearer token and
//! authorised by the command path (`policies/authz`).
//!
//! One module per resource, each with its routes and their operations: [`mandates`],
//! [`ledger`], [`organisations`] (and the catalogue), [`requests`] and [`audit`]. What a
//! handler reads from a request is in [`extract`]; pages of lists in [`page`]; the error
//! answers every operation documents in [`responses`]. A handler parses, calls the service,
//! and renders; an error's status is its kind's (`crate::error`).

mod audit;
mod extract;
mod ledger;
mod mandates;
mod organisations;
mod page;
mod requests;
pub(crate) mod responses;

use axum::http::StatusCode;
use axum::Json;
use shequ_domain::Fen;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::AppState;

/// Every `/api/v1` route with its OpenAPI operation: what is routed is what is documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(organisations::router())
        .merge(mandates::router())
        .merge(requests::router())
        .merge(ledger::router())
        .merge(audit::router())
}

/// A handler's answer: JSON, or an error.
type Reply<T> = Result<Json<T>, ApiError>;

/// A command's answer when it created what it names: 201 and JSON, or an error.
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

/// An amount of money sent in a body's `field`, as a [`Fen`].
fn fen(field: &str, amount: i64) -> Result<Fen, ApiError> {
    Fen::parse(amount).map_err(|error| ApiError::bad_request(format!("{field}: {error}")))
}

/// A date field, `YYYY-MM-DD`: a 400 naming the field if it is no real day.
fn date(field: &str, text: &str) -> Result<shequ_domain::Date, ApiError> {
    shequ_domain::Date::parse(text).map_err(|error| ApiError::bad_request(format!("{field}: {error}")))
}
