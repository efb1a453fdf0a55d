//! shequ over HTTP. The only crate that speaks HTTP; `main` stays thin and calls [`app`].

mod api;
pub mod auth;
mod error;
pub mod metrics;
pub mod open311;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shequ_store::EventLog;

/// How long readiness may wait for the database before it reports not ready.
const READY_TIMEOUT_MS: u64 = 2_000;

/// The largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// How long a request may take before it is answered 408, unless told otherwise
/// ([`app_with_timeout`]).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// What every handler shares, behind one `Arc`: axum clones the state for each extractor and
/// middleware of every request, and a clone is then one count, not one per part.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct AppParts {
    pub log: EventLog,
    pub service: shequ_service::Service,
    pub keys: auth::TokenKeys,
    pub metrics: metrics::Metrics,
    /// The Ed25519 public key that signs checkpoints, hex.
    pub checkpoint_public_key: Arc<str>,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The whole HTTP application, built once; serving it is the caller's business.
pub fn app(state: AppState) -> Router {
    app_with_timeout(state, Duration::from_millis(REQUEST_TIMEOUT_MS))
}

/// [`app`] with requests that take longer than `request_timeout` (reading their body
/// included) answered 408.
pub fn app_with_timeout(state: AppState, request_timeout: Duration) -> Router {
    let (router, document) = openapi::routes();
    router
        .route("/openapi.json", get(move || openapi::serve(document.clone())))
        // The Open311 face follows its own spec (docs/open311.md), not this OpenAPI document.
        .nest("/open311/v2", open311::router())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: the process answers. Never touches the database.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Ready {
    /// `ready`; `catching_up` while the live projection folds the log after a start; or
    /// `unavailable`.
    status: &'static str,
    /// The event log's backend: `SQLite` or `PostgreSQL`.
    store: String,
    /// The log's head position, when the database answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    /// While catching up: the position the live projection has folded so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    projection: Option<u64>,
}

/// Readiness: the event log's database answers within `READY_TIMEOUT_MS`, and the live
/// projection has caught up with the log since the server started, so that a read does not
/// wait for the whole log to be folded (seconds on a log of millions of events).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The event log's database answers and the projection is caught up", body = Ready),
        (
            status = 503,
            description = "The projection is catching up (`catching_up`), or the database did not answer, or not within 2 s (`unavailable`)",
            body = Ready
        )
    )
)]
async fn ready(State(state): State<AppState>) -> Response {
    let store = state.log.kind().to_string();
    let head = tokio::time::timeout(Duration::from_millis(READY_TIMEOUT_MS), state.log.head()).await;
    match head {
        Ok(Ok(head)) if state.service.read_model().has_caught_up() => {
            Json(Ready { status: "ready", store, position: Some(head.position), projection: None })
                .into_response()
        }
        Ok(Ok(head)) => {
            let model = state.service.read_model();
            model.catch_up_in_background();
            let projection = model.position().await;
            let catching_up = Ready {
                status: "catching_up",
                store,
                position: Some(head.position),
                projection: Some(projection),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(catching_up)).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the event log does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Ready { status: "unavailable", store, position: None, projection: None }),
            )
                .into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: the event log did not answer in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Ready { status: "unavailable", store, position: None, projection: None }),
            )
                .into_response()
        }
    }
}
