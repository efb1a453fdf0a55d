//! What went wrong, classified once for every face: bad input → 400 naming the field, no or
//! bad token → 401, outside the role or place → 403, 404, a revision conflict → 409 (retry),
//! a body too large → 413, a business refusal → 422 citing the rule, anything else → 500 with
//! no internals. [`Failure`] is a service error so classified; `/api/v1` renders it as an
//! [`ErrorBody`] ([`ApiError`]), Open311 in the spec's own format (`open311::errors`).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shequ_domain::mandate::{MandateError, Violation};
use shequ_domain::organisation::OrganisationError;
use shequ_domain::request::RequestError;
use shequ_service::ServiceError;
use shequ_store::StoreError;

use crate::auth::AuthError;

/// What kind of error, for programs: one per status.
// The one classification of errors: each kind has its status, whichever face answers. It is
// also the `error` field of `/api/v1`'s body, documented as `ErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ErrorCode)]
pub enum ErrorKind {
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

impl ErrorKind {
    /// Every kind, in the order of their statuses.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::TooLarge,
        ErrorKind::Refused,
        ErrorKind::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error classified: its kind, what to tell people, and the rules a refusal broke.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: ErrorKind,
    /// For people: what was wrong, naming the field or the rule where there is one.
    pub message: String,
    /// Every access rule a refusal broke, with its plan clause.
    pub violations: Option<Vec<Violation>>,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), violations: None }
    }

    /// A body larger than [`crate::BODY_BYTES_MAX`].
    pub fn too_large() -> Self {
        Self::new(ErrorKind::TooLarge, format!("the body is larger than {} bytes", crate::BODY_BYTES_MAX))
    }
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        use ErrorKind::{BadRequest, Conflict, Forbidden, Internal, NotFound, Refused};
        let (kind, message) = match &error {
            ServiceError::Forbidden(reason) => (Forbidden, reason.clone()),
            ServiceError::NotFound(what) => (NotFound, format!("{what} not found")),
            ServiceError::Invalid(message)
            | ServiceError::Request(RequestError::Invalid(message))
            | ServiceError::Mandate(MandateError::InvalidProposal(message))
            | ServiceError::Store(StoreError::InvalidAppend(message) | StoreError::InvalidRequest(message)) => {
                (BadRequest, message.clone())
            }
            ServiceError::Organisation(OrganisationError::InvalidCode | OrganisationError::InvalidName) => {
                (BadRequest, error.to_string())
            }
            // Which mandate or request, and the revision it is at against the one expected:
            // what the client needs to read again. (Another stream's conflict, the ledger's,
            // is the command path's own, and not the client's to read.)
            ServiceError::Store(conflict @ StoreError::Conflict { stream, .. })
                if stream.starts_with("mandate-") || stream.starts_with("request-") =>
            {
                (Conflict, format!("{conflict}; read it again and retry"))
            }
            ServiceError::Store(StoreError::Conflict { .. } | StoreError::Unfounded { .. }) => {
                (Conflict, "the record changed meanwhile; read it again and retry".to_owned())
            }
            // The IETF Idempotency-Key draft's answer to a key reused for another request.
            ServiceError::KeyReused(message) => (Refused, message.clone()),
            ServiceError::Refused(violations) => {
                return Self {
                    kind: Refused,
                    message: error.to_string(),
                    violations: Some(violations.clone()),
                }
            }
            ServiceError::Organisation(_)
            | ServiceError::Request(_)
            | ServiceError::Catalogue(_)
            | ServiceError::Mandate(_)
            | ServiceError::Ledger(_) => (Refused, error.to_string()),
            ServiceError::Policy(_) | ServiceError::Projection(_) | ServiceError::Store(_) => {
                // Logged once here, shown to nobody: it may carry internals.
                tracing::error!(%error, "internal error");
                (Internal, "internal error; it has been logged".to_owned())
            }
        };
        Self::new(kind, message)
    }
}

/// Every error an `/api/v1` handler returns: a [`Failure`], and for a refused proposal or
/// reassignment the mandate it was recorded under.
#[derive(Debug)]
pub struct ApiError {
    failure: Failure,
    mandate: Option<uuid::Uuid>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure::new(kind, message).into()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// A proposal the access policy refused: recorded, and answered with every violation.
    pub fn refused(mandate: uuid::Uuid, violations: Vec<Violation>) -> Self {
        let rules: Vec<String> =
            violations.iter().map(|violation| format!("{} ({})", violation.rule, violation.clause)).collect();
        let message = format!("refused by the access rules: {}", rules.join(", "));
        let failure = Failure { kind: ErrorKind::Refused, message, violations: Some(violations) };
        Self { failure, mandate: Some(mandate) }
    }
}

/// The body of every error answer under `/api/v1`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorKind,
    /// For people: what was wrong, naming the field or the rule where there is one.
    pub message: String,
    /// The mandate a refused proposal or reassignment was recorded under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandate: Option<uuid::Uuid>,
    /// Every access rule a refusal broke, with its plan clause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Failure { kind, message, violations } = self.failure;
        let body = ErrorBody { error: kind, message, mandate: self.mandate, violations };
        (kind.status(), Json(body)).into_response()
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        Self { failure, mandate: None }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Failure::from(error).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        Self::new(ErrorKind::Unauthorized, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Failure::too_large().into()
            }
            // serde's message names the field and where: "missing field `volume` at line 1 column 40".
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}
