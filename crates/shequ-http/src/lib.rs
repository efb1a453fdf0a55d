//! shequ over HTTP. The only crate that speaks HTTP; `main` stays thin and calls [`app`].

mod api;
pub mod auth;
mod error;
pub mod metrics;
pub mod open311;

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
/// How long a request may take before it is answered 408.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub log: EventLog,
    pub service: shequ_service::Service,
    pub keys: auth::TokenKeys,
    pub metrics: metrics::Metrics,
    /// The Ed25519 public key that signs checkpoints, hex.
    pub checkpoint_public_key: String,
}

/// The whole HTTP application, built once; serving it is the caller's business.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api::router())
        .nest("/open311/v2", open311::router())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
}

/// Liveness: the process answers. Never touches the database.
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize)]
struct Ready {
    status: &'static str,
    store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
}

/// Readiness: the event log's database answers within `READY_TIMEOUT_MS`.
async fn ready(State(state): State<AppState>) -> Response {
    let store = state.log.kind().to_string();
    let head = tokio::time::timeout(Duration::from_millis(READY_TIMEOUT_MS), state.log.head()).await;
    match head {
        Ok(Ok(head)) => Json(Ready { status: "ready", store, position: Some(head.position) }).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the event log does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Ready { status: "unavailable", store, position: None }))
                .into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: the event log did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Ready { status: "unavailable", store, position: None }))
                .into_response()
        }
    }
}
