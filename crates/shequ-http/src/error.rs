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

/// The body of every error answer under `/api/v1`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// For people: what was wrong, naming the field or the rule where there is one.
    pub message: String,
    /// The mandate a refused proposal or reassignment was recorded under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandate: Option<uuid::Uuid>,
    /// Every access rule a refusal broke, with its plan clause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
}

/// What kind of error, for programs: one per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed input, naming the field.
    BadRequest,
    /// 401: no token, or not a valid one.
    Unauthorized,
    /// 403: outside the caller's role or place.
    Forbidden,
    /// 404
    NotFound,
    /// 409: the record changed meanwhile; read it again and retry.
    Conflict,
    /// 413: the body is larger than 64 KiB.
    TooLarge,
    /// 422: a business rule refused, citing the rule.
    Refused,
    /// 500: logged, with no internals shown.
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, message) = match &self {
            ApiError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message.clone())
            }
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("the body is larger than {} bytes", crate::BODY_BYTES_MAX),
            ),
            ApiError::Unauthorized(message) => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message.clone())
            }
            ApiError::Refused { violations, .. } => {
                let rules: Vec<String> = violations
                    .iter()
                    .map(|violation| format!("{} ({})", violation.rule, violation.clause))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::Refused,
                    format!("refused by the access rules: {}", rules.join(", ")),
                )
            }
            ApiError::Service(error) => match error {
                ServiceError::Forbidden(reason) => {
                    (StatusCode::FORBIDDEN, ErrorCode::Forbidden, reason.clone())
                }
                ServiceError::NotFound(what) => {
                    (StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
                }
                ServiceError::Invalid(message) => {
                    (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message.clone())
                }
                // Which mandate or request, and the revision it is at against the one
                // expected: what the client needs to read again. (Another stream's conflict,
                // the ledger's, is the command path's own, and not the client's to read.)
                ServiceError::Store(conflict @ StoreError::Conflict { stream, .. })
                    if stream.starts_with("mandate-") || stream.starts_with("request-") =>
                {
                    (
                        StatusCode::CONFLICT,
                        ErrorCode::Conflict,
                        format!("{conflict}; read it again and retry"),
                    )
                }
                ServiceError::Store(StoreError::Conflict { .. } | StoreError::Unfounded { .. }) => (
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    "the record changed meanwhile; read it again and retry".to_owned(),
                ),
                ServiceError::Request(shequ_domain::request::RequestError::Invalid(message))
                | ServiceError::Mandate(shequ_domain::mandate::MandateError::InvalidProposal(message)) => {
                    (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message.clone())
                }
                ServiceError::Organisation(
                    shequ_domain::organisation::OrganisationError::InvalidCode
                    | shequ_domain::organisation::OrganisationError::InvalidName,
                ) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, error.to_string()),
                // The IETF Idempotency-Key draft's answer to a key reused for another request.
                ServiceError::KeyReused(message) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Refused, message.clone())
                }
                ServiceError::Refused(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Refused, error.to_string())
                }
                ServiceError::Organisation(_)
                | ServiceError::Request(_)
                | ServiceError::Catalogue(_)
                | ServiceError::Mandate(_)
                | ServiceError::Ledger(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Refused, error.to_string())
                }
                ServiceError::Store(
                    StoreError::InvalidAppend(message) | StoreError::InvalidRequest(message),
                ) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message.clone()),
                ServiceError::Policy(_) | ServiceError::Projection(_) | ServiceError::Store(_) => {
                    // Logged once here, shown to nobody: it may carry internals.
                    tracing::error!(%error, "internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::Internal,
                        "internal error; it has been logged".to_owned(),
                    )
                }
            },
        };
        let (mandate, violations) = match &self {
            ApiError::Refused { mandate, violations } => (Some(*mandate), Some(violations.clone())),
            ApiError::Service(ServiceError::Refused(violations)) => (None, Some(violations.clone())),
            _ => (None, None),
        };
        (status, Json(ErrorBody { error, message, mandate, violations })).into_response()
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
