//! What `/api/v1` reads from a request, each answered in the JSON error body when malformed:
//! the caller (a bearer token's claims), path parameters, query strings, JSON bodies whose errors name the
//! field, and a command's headers (`Idempotency-Key`, `Expected-Revision`), from which
//! [`CommandHeaders::command`] builds the command's handle on the service.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shequ_service::{Actor, CommandScope, Service};
use shequ_store::Recorder;
use uuid::Uuid;

use crate::auth::{AuthError, Claims};
use crate::error::ApiError;
use crate::AppState;

/// The bearer of a valid token, and the application they call.
pub struct Caller {
    state: AppState,
    claims: Claims,
}

impl Caller {
    pub fn service(&self) -> &Service {
        &self.state.service
    }

    pub fn actor(&self) -> Actor {
        self.claims.actor()
    }

    /// Who the bearer is (the token's `sub`), for the audit trail.
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| AuthError::Invalid("expected `Authorization: Bearer <token>`".into()))?;
        Ok(Caller { claims: state.keys.verify(token)?, state: state.clone() })
    }
}

/// The optional headers of a command on an existing mandate or request, parsed and
/// documented once. A malformed one is answered 400 naming the header.
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// A UUID the client chose for this command, bare or quoted (the IETF draft's form): a
    /// retry with the same key returns the first result (the events the command appended to
    /// the mandate or request, and its state as it stands) instead of running it again. A
    /// retry sent while the first attempt still runs waits for it, then answers the same.
    #[param(rename = "Idempotency-Key", value_type = Option<Uuid>)]
    idempotency_key: Option<Uuid>,
    /// The `revision` the client last read the mandate or request at: the command goes
    /// through only if it is still there, and is answered 409 otherwise (read it again and
    /// decide again). Without it, the command acts on the state as it stands.
    #[param(rename = "Expected-Revision", value_type = Option<u64>, minimum = 0)]
    expected_revision: Option<u64>,
}

impl CommandHeaders {
    /// The headers of a command that takes none ([`CreateJson`]).
    pub const NONE: CommandHeaders = CommandHeaders { idempotency_key: None, expected_revision: None };

    /// The scope of this command (`action`, with the body it was sent) for `caller`, and the
    /// recorder of the events it appends: the one place a command's scope is built from what
    /// the request says. The digest of the action and its body, as parsed, goes with a keyed
    /// command's events: the same key sent with another body is refused.
    pub async fn scope(
        &self,
        caller: &Caller,
        action: &str,
        body: &impl Serialize,
    ) -> (CommandScope, Recorder) {
        let scope = CommandScope::new(caller.actor());
        let scope = match self.idempotency_key {
            Some(key) => {
                let body = serde_json::to_vec(body).expect("a parsed body serialises");
                let mut hasher = Sha256::new();
                hasher.update(action.as_bytes());
                hasher.update(b"\n");
                hasher.update(&body);
                scope.keyed(caller.service(), key, Some(hex::encode(hasher.finalize()))).await
            }
            None => scope,
        };
        scope.expecting(self.expected_revision).recording()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).map(|value| value.to_str().unwrap_or("").trim());
        let idempotency_key = match header("idempotency-key") {
            None => None,
            Some(value) => Some(
                Uuid::parse_str(value.trim_matches('"'))
                    .map_err(|_| ApiError::bad_request("Idempotency-Key: must be a UUID"))?,
            ),
        };
        let expected_revision = match header("expected-revision") {
            None => None,
            Some(value) => Some(value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "Expected-Revision: must be a revision number, the `revision` of the record as read",
                )
            })?),
        };
        Ok(CommandHeaders { idempotency_key, expected_revision })
    }
}

/// The JSON body of a command that creates its record (a mandate, a request, an organisation,
/// a transfer under its own id), and so takes no `Expected-Revision`: a client that sends the
/// header expects a check this command does not make, and is told so (400) instead of having
/// it ignored.
pub struct CreateJson<T>(pub T);

impl<T, S> FromRequest<S> for CreateJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if request.headers().contains_key("expected-revision") {
            return Err(ApiError::bad_request(
                "Expected-Revision: this command takes none (it creates its record, or names its \
                 own transfer id); send it only on an action on an existing mandate or request",
            ));
        }
        Ok(CreateJson(ApiJson::from_request(request, state).await?.0))
    }
}

/// A path parameter, with a malformed one answered 400 in the JSON error body naming it
/// (axum's own answer is plain text).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// A query string, with a malformed one answered 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// JSON in, with malformed input answered 400 naming the field (axum's own answer is 422).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

/// [`ApiJson`] for a body the client may leave out: a request with no body at all (no
/// `Content-Type`, nothing sent), or a JSON `null`, stands for `T::default()`. Any other body
/// is read as [`ApiJson`] reads it.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
        let headers = request.headers();
        let left_out = !headers.contains_key(CONTENT_TYPE)
            && !headers.contains_key(TRANSFER_ENCODING)
            && headers.get(CONTENT_LENGTH).is_none_or(|length| length.as_bytes() == b"0");
        match left_out {
            true => Ok(OptionalJson(T::default())),
            // `null` stands for the default as well, as the OpenAPI document allows it.
            false => Ok(OptionalJson(
                ApiJson::<Option<T>>::from_request(request, state).await?.0.unwrap_or_default(),
            )),
        }
    }
}
