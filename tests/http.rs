//! The HTTP application, driven in process through its router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shequ_http::{app, AppState};
use shequ_store::EventLog;
use tower::ServiceExt;

use crate::helpers::{tests, Db, TestFn};

/// The largest response body a test reads, in bytes.
const BODY_BYTES_MAX: usize = 64 * 1024;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![health_and_readiness]
}

async fn get(log: &EventLog, path: &str) -> (StatusCode, serde_json::Value) {
    let router = app(AppState { log: log.clone() });
    let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), BODY_BYTES_MAX).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn health_and_readiness(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    assert_eq!(get(&log, "/health").await, (StatusCode::OK, serde_json::json!({"status": "ok"})));
    let (status, ready) = get(&log, "/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], log.kind().to_string());
    assert_eq!(ready["position"], 0);

    // With the database gone, the process is alive but not ready.
    log.close().await;
    assert_eq!(get(&log, "/health").await.0, StatusCode::OK);
    let (status, ready) = get(&log, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["status"], "unavailable");
}
