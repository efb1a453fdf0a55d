//! `/metrics` in the Prometheus text format: requests by status, denied attempts, request
//! durations, the log's head position and how far the projection has folded it. Counts only:
//! nothing here names a person or a key.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use shequ_store::WriterCounts;

use crate::AppState;

/// The server's counters. Cheap to clone: the counters are shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    denied: IntCounter,
    duration: Histogram,
    head: IntGauge,
    projection: IntGauge,
    merkle_leaves_kept: IntGauge,
    writer: WriterMetrics,
}

/// The event log writer's counters, brought up to its own at each scrape.
#[derive(Clone)]
struct WriterMetrics {
    batches: IntCounter,
    events: IntCounter,
    failed_batches: IntCounter,
    commit_seconds: Counter,
    /// One update at a time: two scrapes at once would each add the same difference.
    updating: std::sync::Arc<std::sync::Mutex<()>>,
}

impl WriterMetrics {
    fn new() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("a valid metric");
        Self {
            batches: counter(
                "shequ_log_batches_total",
                "Batches the event log's writer committed, each one durable commit",
            ),
            events: counter("shequ_log_events_appended_total", "Events those batches appended"),
            failed_batches: counter(
                "shequ_log_failed_batches_total",
                "Batches that failed as a whole, nothing of them written",
            ),
            commit_seconds: Counter::new(
                "shequ_log_commit_seconds_total",
                "Time the writer spent committing batches: near 1 per second, it is the bottleneck",
            )
            .expect("a valid metric"),
            updating: std::sync::Arc::default(),
        }
    }

    fn collectors(&self) -> [Box<dyn prometheus::core::Collector>; 4] {
        [
            Box::new(self.batches.clone()),
            Box::new(self.events.clone()),
            Box::new(self.failed_batches.clone()),
            Box::new(self.commit_seconds.clone()),
        ]
    }

    /// Counters only go up: each is raised by what the writer did since the last scrape.
    fn update(&self, counts: WriterCounts) {
        // A poisoned lock only means another scrape panicked midway; the counters stand.
        let _one_at_a_time = self.updating.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let raise = |counter: &IntCounter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        raise(&self.batches, counts.batches);
        raise(&self.events, counts.events);
        raise(&self.failed_batches, counts.failed_batches);
        let seconds = counts.commit_micros as f64 / 1e6;
        self.commit_seconds.inc_by((seconds - self.commit_seconds.get()).max(0.0));
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics(…)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("shequ_http_requests_total", "HTTP requests answered, by status code"),
            &["status"],
        )
        .expect("a valid metric");
        let denied = IntCounter::new("shequ_http_denied_total", "Requests refused for role or place (403)")
            .expect("a valid metric");
        let duration = Histogram::with_opts(HistogramOpts::new(
            "shequ_http_request_duration_seconds",
            "Time to answer a request",
        ))
        .expect("a valid metric");
        let head = IntGauge::new("shequ_log_head_position", "The event log's last position")
            .expect("a valid metric");
        let projection = IntGauge::new(
            "shequ_projection_position",
            "The last position the live projection has folded: behind the head while it catches up",
        )
        .expect("a valid metric");
        let merkle_leaves_kept = IntGauge::new(
            "shequ_merkle_leaves_kept",
            "Events the Merkle tree's kept subtrees cover: proofs within them read at most two chunks (ADR 0019)",
        )
        .expect("a valid metric");
        let writer = WriterMetrics::new();
        let own: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(requests.clone()),
            Box::new(denied.clone()),
            Box::new(duration.clone()),
            Box::new(head.clone()),
            Box::new(projection.clone()),
            Box::new(merkle_leaves_kept.clone()),
        ];
        for collector in own.into_iter().chain(writer.collectors()) {
            registry.register(collector).expect("each metric is registered once");
        }
        Self { registry, requests, denied, duration, head, projection, merkle_leaves_kept, writer }
    }
}

/// Counts every response; a 403 also counts as a denied attempt (the command path has logged
/// who, what and why).
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics.duration.observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[response.status().as_str()]).inc();
    if response.status() == StatusCode::FORBIDDEN {
        metrics.denied.inc();
    }
    response
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (
            status = 200,
            description = "Prometheus text exposition format 0.0.4",
            body = String,
            content_type = "text/plain; version=0.0.4"
        ),
        (status = 500, description = "The metrics could not be encoded (empty body)")
    )
)]
pub async fn render(State(state): State<AppState>) -> Response {
    if let Ok(head) = state.log.head().await {
        state.metrics.head.set(i64::try_from(head.position).unwrap_or(i64::MAX));
    }
    let folded = state.service.read_model().position().await;
    state.metrics.projection.set(i64::try_from(folded).unwrap_or(i64::MAX));
    let kept = state.log.merkle_leaves_kept();
    state.metrics.merkle_leaves_kept.set(i64::try_from(kept).unwrap_or(i64::MAX));
    state.metrics.writer.update(state.log.writer_counts());
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.metrics.registry.gather(), &mut body) {
        Ok(()) => ([("content-type", prometheus::TEXT_FORMAT)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
