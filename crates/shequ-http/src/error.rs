//! Every error an API handler returns, mapped to a status once: bad input → 400 naming the
//! field, no or bad token → 401, outside the role or place → 403, 404, a revision conflict →
//! 409 (retry), a business refusal → 422 citing the rule, anything else → 500 with no internals.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shequ_domain::mandate::Violation;
use shequ_service::ServiceError;
use shequ_store::StoreError;

use crate::auth::AuthError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    TooLarge,
    Unauthorized(String),
    Service(ServiceError),
    /// A proposal the access policy refused: recorded, and answered with every violation.
    Refused {
        mandate: uuid::Uuid,
        violations: Vec<Violation>,
    },
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mandate: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violations: Option<&'a [Violation]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, message) = match &self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message.clone()),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {} bytes", crate::BODY_BYTES_MAX),
            ),
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "unauthorized", message.clone()),
            ApiError::Refused { violations, .. } => {
                let rules: Vec<String> = violations
                    .iter()
                    .map(|violation| format!("{} ({})", violation.rule, violation.clause))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "refused",
                    format!("refused by the access rules: {}", rules.join(", ")),
                )
            }
            ApiError::Service(error) => match error {
                ServiceError::Forbidden(reason) => (StatusCode::FORBIDDEN, "forbidden", reason.clone()),
                ServiceError::NotFound(what) => {
                    (StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
                }
                ServiceError::Invalid(message) => (StatusCode::BAD_REQUEST, "bad_request", message.clone()),
                ServiceError::Store(StoreError::Conflict { .. }) => (
                    StatusCode::CONFLICT,
                    "conflict",
                    "the record changed meanwhile; read it again and retry".to_owned(),
                ),
                ServiceError::Request(shequ_domain::request::RequestError::Invalid(message)) => {
                    (StatusCode::BAD_REQUEST, "bad_request", message.clone())
                }
                ServiceError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused", error.to_string()),
                ServiceError::Organisation(_)
                | ServiceError::Request(_)
                | ServiceError::Catalogue(_)
                | ServiceError::Mandate(_)
                | ServiceError::Ledger(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused", error.to_string()),
                ServiceError::Store(
                    StoreError::InvalidAppend(message) | StoreError::InvalidRequest(message),
                ) => (StatusCode::BAD_REQUEST, "bad_request", message.clone()),
                ServiceError::Policy(_) | ServiceError::Projection(_) | ServiceError::Store(_) => {
                    // Logged once here, shown to nobody: it may carry internals.
                    tracing::error!(%error, "internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error; it has been logged".to_owned(),
                    )
                }
            },
        };
        let (mandate, violations) = match &self {
            ApiError::Refused { mandate, violations } => (Some(*mandate), Some(violations.as_slice())),
            ApiError::Service(ServiceError::Refused(violations)) => (None, Some(violations.as_slice())),
            _ => (None, None),
        };
        (status, Json(Body { error, message, mandate, violations })).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::Service(error)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Unauthorized(error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge
            }
            // serde's message names the field and where: "missing field `volume` at line 1 column 40".
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}
