//! `/api/v1/ledger` and a mandate's spending: the funding ledger's allocations, spending,
//! transfers and balances.

use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use shequ_domain::ledger::TransferKind;
use shequ_service::{Allocation, TransferEntry, TransferFilter};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller, CommandHeaders, CreateJson};
use super::page::{self, Page};
use super::responses::{error_responses, MandateCommandErrors};
use super::{Created, Reply};
use crate::AppState;

/// The ledger routes with their operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(spend))
        .routes(routes!(allocate))
        .routes(routes!(balances))
        .routes(routes!(list_transfers))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SpendRequest {
    /// Chosen by the client: a retry records nothing new.
    transfer_id: Uuid,
    amount_fen: i64,
    memo: String,
}

/// A transfer recorded, and what the call appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TransferRecorded)]
struct Recorded {
    transfer_id: Uuid,
    /// What this call appended (none for a retry of a recorded transfer).
    events: Vec<RecordedRef>,
}

#[utoipa::path(post, path = "/mandates/{id}/spending", tag = "ledger", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id")),
    request_body = SpendRequest,
    responses((status = 201, description = "Recorded (or a retry of a recorded transfer)", body = Recorded), MandateCommandErrors)
)]
async fn spend(
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    CreateJson(request): CreateJson<SpendRequest>,
) -> Created<Recorded> {
    let amount = super::fen("amount_fen", request.amount_fen)?;
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "spend", &()).await;
    caller.service().spend(&scope, id, request.transfer_id, amount, &request.memo).await?;
    Ok((StatusCode::CREATED, Json(Recorded { transfer_id: request.transfer_id, events: recorder.take() })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AllocateRequest {
    transfer_id: Uuid,
    /// The paying organisation: the caller's own account (absent: the fiscal budget, district only).
    from: Option<Uuid>,
    to: Uuid,
    amount_fen: i64,
    #[serde(default)]
    memo: String,
}

#[utoipa::path(post, path = "/ledger/allocations", tag = "ledger", security(("bearer" = [])),
    request_body = AllocateRequest,
    responses((status = 201, description = "Recorded (or a retry of a recorded transfer)", body = Recorded), AllocateErrors)
)]
async fn allocate(caller: Caller, CreateJson(request): CreateJson<AllocateRequest>) -> Created<Recorded> {
    let amount = super::fen("amount_fen", request.amount_fen)?;
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "allocate", &()).await;
    let allocation = Allocation {
        transfer_id: request.transfer_id,
        from: request.from,
        to: request.to,
        amount_fen: amount,
        memo: &request.memo,
    };
    caller.service().allocate(&scope, allocation).await?;
    Ok((StatusCode::CREATED, Json(Recorded { transfer_id: request.transfer_id, events: recorder.take() })))
}

/// One account's balance; the account as text (`organisation:{id}`, `mandate:{id}@{community}`, …).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AccountBalance)]
struct BalanceView {
    account: String,
    balance_fen: i64,
}

/// The balances of the caller's district's ledger that the caller may read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LedgerBalances)]
struct BalancesView {
    district: Uuid,
    /// How many transfers moved money into or out of the accounts shown.
    transfers: usize,
    balances: Vec<BalanceView>,
}

#[utoipa::path(get, path = "/ledger/balances", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "The balances the caller may read: every account of the district for the district, its departments and inspectors; the accounts of its street and its communities for a street office; its own for a community", body = BalancesView), DistrictReadErrors)
)]
async fn balances(caller: Caller) -> Reply<BalancesView> {
    let ledger = caller.service().read_ledger(caller.actor()).await?;
    let balances = ledger
        .balances
        .iter()
        .map(|(account, balance)| BalanceView { account: account.to_string(), balance_fen: *balance })
        .collect();
    Ok(Json(BalancesView { district: ledger.district, transfers: ledger.transfers, balances }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TransferQuery {
    /// Only transfers of this kind.
    kind: Option<TransferKind>,
    /// Only transfers made for this mandate.
    mandate: Option<Uuid>,
    /// Only transfers into or out of this organisation's budget account or, for a community,
    /// its mandate accounts.
    organisation: Option<Uuid>,
    /// The position after which to continue: the `next_cursor` of the page before.
    cursor: Option<u64>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/ledger/transfers", tag = "ledger", security(("bearer" = [])),
    params(TransferQuery),
    responses((status = 200, description = "The transfers the caller may read (those into or out of an account `GET /ledger/balances` shows it) that the filters keep, in log order. A page looks through at most 10 ledger events for each transfer it may hold (500 for the default `limit` of 50), so a page can hold fewer than `limit`, even none, and still have a `next_cursor`: the list ends only where `next_cursor` is null", body = Page<TransferEntry>), TransferListErrors)
)]
async fn list_transfers(
    caller: Caller,
    ApiQuery(query): ApiQuery<TransferQuery>,
) -> Reply<Page<TransferEntry>> {
    let limit = page::limit(query.limit)?;
    let filter =
        TransferFilter { kind: query.kind, mandate: query.mandate, organisation: query.organisation };
    let (items, next) =
        caller.service().list_transfers(caller.actor(), &filter, query.cursor.unwrap_or(0), limit).await?;
    Ok(Json(Page { items, next_cursor: next.map(|position| position.to_string()) }))
}

// The errors each operation documents, beside the shared ones (`responses.rs`).

error_responses!(AllocateErrors: BadRequest, Forbidden, NotFound("An organisation is unknown"), Conflict, Refused);

error_responses!(
    /// A read of the caller's own district's: its organisation may be gone.
    DistrictReadErrors: Forbidden,
    NotFound("The caller's organisation is unknown"),
);

error_responses!(
    TransferListErrors: BadRequest("A malformed filter, cursor or limit (1–500), naming it"),
    Forbidden,
    NotFound("The caller's organisation is unknown"),
);
