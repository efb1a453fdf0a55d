//! `/api/v1/audit`: the inspectors' views. The past (the district's state and balances as of a
//! point of the log), a mandate's timeline, and the Merkle proofs and key that let anyone
//! check the log.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shequ_service::projection::{AsOf, BalanceView, StateDocument};
use shequ_service::replay::{JsonStyle, WriteStateError};
use shequ_service::Timeline;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::responses::error_responses;
use super::Reply;
use crate::error::ApiError;
use crate::AppState;

/// The audit routes with their operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(state_as_of))
        .routes(routes!(mandate_timeline))
        .routes(routes!(balances_as_of))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
        .routes(routes!(public_key))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AsOfQuery {
    /// A position, an RFC 3339 time, or `head` (the default).
    as_of: Option<String>,
}

impl AsOfQuery {
    /// The point of the log asked for.
    fn point(self) -> Result<AsOf, ApiError> {
        match self.as_of {
            None => Ok(AsOf::Head),
            Some(text) => {
                AsOf::parse(&text).map_err(|reason| ApiError::bad_request(format!("as_of: {reason}")))
            }
        }
    }
}

/// The caller's district's state at one point of the log.
// What `state_as_of` streams, as `replay::write_state` writes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DistrictState {
    district: Uuid,
    #[serde(flatten)]
    state: StateDocument,
}

/// The district's whole state as of a time or position, rebuilt from the log (inspectors).
#[utoipa::path(get, path = "/audit/state", tag = "audit", security(("bearer" = [])),
    params(AsOfQuery),
    responses((status = 200, description = "The district's state as of the point asked, rebuilt from the log", body = DistrictState), AsOfErrors)
)]
async fn state_as_of(caller: Caller, ApiQuery(query): ApiQuery<AsOfQuery>) -> Result<Response, ApiError> {
    let as_of = query.point()?;
    // Refusals and a bad `as_of` are answered before the first byte of the state.
    let district_state = caller.service().state_as_of(caller.actor(), as_of).await?;
    // The state is replayed and sent a chunk at a time, one mandate or request in memory at a
    // time, however long the log; a client that hangs up stops the replay.
    let body = streamed(|chunks| district_state.write(JsonStyle::Compact, chunks));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A response body of the chunks that `write` hands over, written by a task of its own. The
/// task is stopped when the body is dropped; if it fails, the body ends with an error, so the
/// client sees a broken response rather than a shorter document that parses.
fn streamed<Write, Writing>(write: Write) -> Body
where
    Write: FnOnce(tokio::sync::mpsc::Sender<Vec<u8>>) -> Writing,
    Writing: std::future::Future<Output = Result<(), WriteStateError>> + Send + 'static,
{
    let (chunks, receiver) = tokio::sync::mpsc::channel(STATE_CHUNKS_QUEUED);
    let writing = WritingTask(tokio::spawn(write(chunks)));
    let body = futures::stream::unfold((receiver, Some(writing)), |(mut receiver, writing)| async move {
        if let Some(chunk) = receiver.recv().await {
            return Some((Ok(Bytes::from(chunk)), (receiver, writing)));
        }
        // Every chunk is out: the body ends here if the writing went through.
        let failed = match (&mut writing?.0).await {
            Ok(Ok(())) => return None,
            Ok(Err(error)) => std::io::Error::other(error.to_string()),
            Err(error) => std::io::Error::other(error.to_string()),
        };
        tracing::error!(error = %failed, "a streamed response stopped half-way");
        Some((Err(failed), (receiver, None)))
    });
    Body::from_stream(body)
}

/// Chunks of the state waiting for the client, at most (`replay::CHUNK_BYTES` each).
const STATE_CHUNKS_QUEUED: usize = 2;

/// The task that writes a response body. Dropping the body (a client that hung up, a server
/// shutting down) stops it at once, not at its next chunk.
struct WritingTask(tokio::task::JoinHandle<Result<(), WriteStateError>>);

impl Drop for WritingTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[utoipa::path(get, path = "/audit/mandates/{id}/timeline", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id")),
    responses((status = 200, description = "Every event of the mandate and every transfer made for it", body = Timeline), TimelineErrors)
)]
async fn mandate_timeline(caller: Caller, ApiPath(id): ApiPath<Uuid>) -> Reply<Timeline> {
    Ok(Json(caller.service().mandate_timeline(caller.actor(), id).await?))
}

/// The district's balances at one point of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BalancesAsOf {
    district: Uuid,
    position: u64,
    balances: Vec<BalanceView>,
}

/// The ledger's balances as of a date (or position), for inspectors and the district.
#[utoipa::path(get, path = "/audit/balances", tag = "audit", security(("bearer" = [])),
    params(AsOfQuery),
    responses((status = 200, description = "The district's balances as of the point asked", body = BalancesAsOf), AsOfErrors)
)]
async fn balances_as_of(caller: Caller, ApiQuery(query): ApiQuery<AsOfQuery>) -> Reply<BalancesAsOf> {
    let as_of = query.point()?;
    let (district, position, balances) = caller.service().balances_as_of(caller.actor(), as_of).await?;
    Ok(Json(BalancesAsOf { district, position, balances }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    /// The event's position in the log (its leaf index + 1).
    position: u64,
    /// The size of the tree to prove inclusion in: at least `position`, at most the log's head.
    tree_size: u64,
}

/// RFC 6962 / 9162 field meanings; hashes in hex. Leaf index = position − 1.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InclusionProof)]
struct InclusionView {
    position: u64,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
    root_hash: String,
}

#[utoipa::path(get, path = "/audit/proof/inclusion", tag = "audit", security(("bearer" = [])),
    params(InclusionQuery),
    responses((status = 200, description = "An RFC 6962 inclusion proof", body = InclusionView), InclusionErrors)
)]
async fn inclusion_proof(caller: Caller, ApiQuery(query): ApiQuery<InclusionQuery>) -> Reply<InclusionView> {
    let proof = caller.service().inclusion_proof(caller.actor(), query.position, query.tree_size).await?;
    Ok(Json(InclusionView {
        position: proof.position,
        leaf_index: proof.position - 1,
        tree_size: proof.tree_size,
        leaf_hash: hex::encode(proof.leaf_hash),
        audit_path: proof.audit_path.iter().map(hex::encode).collect(),
        root_hash: hex::encode(proof.root_hash),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The smaller tree size.
    first: u64,
    /// The larger tree size, at most the log's head.
    second: u64,
}

/// RFC 6962 / 9162 field meanings; hashes in hex.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsistencyProof)]
struct ConsistencyView {
    first: u64,
    second: u64,
    first_root_hash: String,
    second_root_hash: String,
    consistency: Vec<String>,
}

#[utoipa::path(get, path = "/audit/proof/consistency", tag = "audit", security(("bearer" = [])),
    params(ConsistencyQuery),
    responses((status = 200, description = "An RFC 6962 consistency proof", body = ConsistencyView), ConsistencyErrors)
)]
async fn consistency_proof(
    caller: Caller,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Reply<ConsistencyView> {
    let proof = caller.service().consistency_proof(caller.actor(), query.first, query.second).await?;
    Ok(Json(ConsistencyView {
        first: proof.first,
        second: proof.second,
        first_root_hash: hex::encode(proof.first_root),
        second_root_hash: hex::encode(proof.second_root),
        consistency: proof.proof.iter().map(hex::encode).collect(),
    }))
}

/// The key that signs checkpoints (`docs/audit-format.md`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CheckpointPublicKey)]
struct PublicKeyView {
    /// Always `Ed25519`.
    algorithm: &'static str,
    /// The public key, hex.
    public_key: String,
}

/// The key that signs checkpoints, so anyone holding a published checkpoint can check it.
/// Public by nature: no token needed.
#[utoipa::path(get, path = "/audit/public-key", tag = "audit",
    responses((status = 200, description = "The Ed25519 key that signs checkpoints; public, no token needed", body = PublicKeyView))
)]
async fn public_key(State(state): State<AppState>) -> Json<PublicKeyView> {
    Json(PublicKeyView { algorithm: "Ed25519", public_key: state.checkpoint_public_key.to_string() })
}

// The errors each operation documents, beside the shared ones (`responses.rs`).

error_responses!(
    AsOfErrors: BadRequest("`as_of` is neither a position, an RFC 3339 time nor `head`"),
    Forbidden,
    NotFound("The caller's organisation is unknown"),
);

error_responses!(TimelineErrors: Forbidden, NotFound("No such mandate"));

error_responses!(
    InclusionErrors: BadRequest("Missing or malformed parameters, or a position outside the tree"),
    Forbidden,
    NotFound("The caller's organisation is unknown"),
);

error_responses!(
    ConsistencyErrors: BadRequest("Missing or malformed parameters, or sizes outside the log"),
    Forbidden,
    NotFound("The caller's organisation is unknown"),
);

#[cfg(test)]
mod tests {
    use super::*;

    async fn collected(body: Body) -> Vec<Result<Bytes, String>> {
        use futures::StreamExt;
        body.into_data_stream().map(|chunk| chunk.map_err(|error| error.to_string())).collect().await
    }

    #[tokio::test]
    async fn a_streamed_body_is_every_chunk_then_its_end_or_an_error() {
        let whole = streamed(|chunks| async move {
            for chunk in [b"{\"a\":".to_vec(), b"1}".to_vec()] {
                chunks.send(chunk).await.map_err(|_| WriteStateError::Closed)?;
            }
            Ok(())
        });
        assert_eq!(collected(whole).await, [Ok(Bytes::from("{\"a\":")), Ok(Bytes::from("1}"))]);

        let broken = streamed(|chunks| async move {
            chunks.send(b"{\"a\":".to_vec()).await.map_err(|_| WriteStateError::Closed)?;
            Err(shequ_service::ServiceError::Projection("position 7: unreadable".into()).into())
        });
        let parts = collected(broken).await;
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0], Ok(Bytes::from("{\"a\":")));
        assert!(parts[1].as_ref().is_err_and(|error| error.contains("position 7")), "{parts:?}");
    }

    #[tokio::test]
    async fn dropping_a_streamed_body_stops_its_writer() {
        let (stopped, is_stopped) = tokio::sync::oneshot::channel::<()>();
        let body = streamed(|_chunks| async move {
            // Held until the task is dropped: aborted, or finished.
            let _stopped = stopped;
            std::future::pending::<Result<(), WriteStateError>>().await
        });
        tokio::task::yield_now().await;
        drop(body);
        tokio::time::timeout(std::time::Duration::from_secs(5), is_stopped)
            .await
            .expect("the writer stops when the body is dropped")
            .expect_err("the writer never finishes by itself");
    }
}
