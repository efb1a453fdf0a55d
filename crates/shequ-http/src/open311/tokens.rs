//! `tokens/{token}.{fmt}`: requests are filed synchronously, so a request's token is its id.

use axum::http::HeaderMap;

use super::params::Params;
use super::requests::read_one;
use super::wire::{Document, Node};
use super::Answer;
use crate::AppState;

/// The request a token stands for: `[{service_request_id, token}]`.
pub async fn request_from_token(
    state: &AppState,
    token: &str,
    params: &Params,
    headers: &HeaderMap,
) -> Answer {
    let view = read_one(state, token, params, headers, "get_service_request_id", "token").await?;
    Ok(Document::list(
        "service_requests",
        "request",
        vec![Node::Record(vec![
            ("service_request_id", Node::text(view.request.to_string())),
            ("token", Node::text(view.request.to_string())),
        ])],
    ))
}
