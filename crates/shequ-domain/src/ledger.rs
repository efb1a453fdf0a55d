//! The funding ledger: double-entry transfers in integer fen, as events. Funds follow tasks
//! (`plan:3.4.2-R4`, `plan:5.2-F`): budgets are allocated down the hierarchy; offered funds are
//! reserved from the delegating unit on admission, posted to the community's mandate account
//! on acceptance, spent against the mandate, returned on withdrawal, and moved with the task
//! on reassignment.
//!
//! One ledger stream per district, so that every transfer is checked against every balance in
//! one place: no holding account is ever overdrawn, and the sum of all balances is always
//! zero (every debit has its credit).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::DomainEvent;
use crate::money::Fen;

/// The longest memo, in characters.
pub const MEMO_CHARS_MAX: usize = 500;

/// An account. `Fiscal` is where allocations come from and `Expenditure` where spending
/// goes: they stand for the world outside the ledger. Every other account holds money and is
/// never below zero.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Account {
    Fiscal,
    Expenditure,
    /// An organisation's budget account.
    Organisation {
        organisation: Uuid,
    },
    /// Funds reserved from the delegating unit for an admitted mandate.
    Reserved {
        mandate: Uuid,
    },
    /// Funds posted to a community for a mandate it carries.
    Mandate {
        mandate: Uuid,
        community: Uuid,
    },
}

impl Account {
    /// Whether the account holds money (and so may never go below zero).
    pub fn is_holding(self) -> bool {
        !matches!(self, Account::Fiscal | Account::Expenditure)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Fiscal => formatter.write_str("fiscal"),
            Account::Expenditure => formatter.write_str("expenditure"),
            Account::Organisation { organisation } => write!(formatter, "organisation:{organisation}"),
            Account::Reserved { mandate } => write!(formatter, "reserved:{mandate}"),
            Account::Mandate { mandate, community } => write!(formatter, "mandate:{mandate}@{community}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Allocation,
    Reservation,
    Posting,
    Spending,
    Return,
    Move,
}

/// One transfer: `amount` leaves `debit` and arrives in `credit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transfer {
    /// Chosen by the client: a retry with the same id and content records nothing.
    pub transfer_id: Uuid,
    pub kind: TransferKind,
    pub debit: Account,
    pub credit: Account,
    pub amount_fen: Fen,
    pub mandate: Option<Uuid>,
    pub memo: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCommand {
    /// Money for `organisation`, from the fiscal budget or from its parent organisation.
    Allocate {
        transfer_id: Uuid,
        from: Option<Uuid>,
        to: Uuid,
        amount_fen: Fen,
        memo: String,
    },
    Reserve {
        transfer_id: Uuid,
        mandate: Uuid,
        from: Uuid,
        amount_fen: Fen,
    },
    /// Everything reserved for the mandate goes to the community's mandate account.
    Post {
        transfer_id: Uuid,
        mandate: Uuid,
        community: Uuid,
    },
    Spend {
        transfer_id: Uuid,
        mandate: Uuid,
        community: Uuid,
        amount_fen: Fen,
        memo: String,
    },
    /// Whatever is left for the mandate (reserved or posted) goes back to the delegating unit.
    ReturnUnspent {
        transfer_id: Uuid,
        mandate: Uuid,
        community: Option<Uuid>,
        to: Uuid,
    },
    /// The mandate moved to another community: its posted funds move with it.
    Move {
        transfer_id: Uuid,
        mandate: Uuid,
        from_community: Uuid,
        to_community: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[serde(tag = "eventType", content = "data")]
pub enum LedgerEvent {
    TransferRecorded { transfer: Transfer },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{account} holds {balance} fen and cannot pay {amount} fen: no overdraft, ever (plan:5.2-F)")]
    InsufficientFunds { account: Account, balance: i64, amount: Fen },
    #[error("transfer {0} was already recorded with different content")]
    TransferIdReused(Uuid),
    #[error("an amount must be more than 0 fen")]
    ZeroAmount,
    #[error("nothing to transfer for mandate {0}")]
    NothingToTransfer(Uuid),
    #[error("memo longer than {MEMO_CHARS_MAX} characters")]
    MemoTooLong,
    #[error("an organisation cannot allocate to itself")]
    SelfAllocation,
    #[error("{0} would leave the range of the ledger's figures")]
    Overflow(Account),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    pub balances: BTreeMap<Account, i64>,
    pub transfers: HashMap<Uuid, Transfer>,
}

impl LedgerState {
    pub fn balance(&self, account: Account) -> i64 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    /// Funds left for a mandate: reserved and not yet posted, plus posted and not yet spent.
    pub fn mandate_funds(&self, mandate: Uuid) -> Vec<(Account, i64)> {
        self.balances
            .iter()
            .filter(|(account, balance)| {
                **balance > 0
                    && matches!(account, Account::Reserved { mandate: id } | Account::Mandate { mandate: id, .. } if *id == mandate)
            })
            .map(|(account, balance)| (*account, *balance))
            .collect()
    }

    /// All the funds left for a mandate, reserved and posted, in fen.
    pub fn funds_held(&self, mandate: Uuid) -> i64 {
        self.mandate_funds(mandate).iter().map(|(_, balance)| balance).sum()
    }
}

crate::aggregate!(Ledger, "ledger", LedgerState, LedgerCommand, LedgerEvent, LedgerError);

/// Decides a command on the state: the events it records, or why it is refused.
fn decide(state: &LedgerState, command: LedgerCommand) -> Result<Vec<LedgerEvent>, LedgerError> {
    use LedgerCommand as C;
    // A transfer whose amount comes from the balances (posting, return, move) is answered
    // by its id alone when retried: the balances it drained have moved on since.
    if let C::Post { transfer_id, .. } | C::ReturnUnspent { transfer_id, .. } | C::Move { transfer_id, .. } =
        &command
    {
        if state.transfers.contains_key(transfer_id) {
            return Ok(vec![]);
        }
    }
    let transfers = transfers_for(state, command)?;
    checked_events(state, transfers)
}

/// The state an event leaves.
fn evolve(mut state: LedgerState, event: LedgerEvent) -> LedgerState {
    let LedgerEvent::TransferRecorded { transfer } = event;
    *state.balances.entry(transfer.debit).or_default() -= transfer.amount_fen.get();
    *state.balances.entry(transfer.credit).or_default() += transfer.amount_fen.get();
    state.transfers.insert(transfer.transfer_id, transfer);
    state
}

fn transfer(
    transfer_id: Uuid,
    kind: TransferKind,
    debit: Account,
    credit: Account,
    amount_fen: Fen,
    mandate: Option<Uuid>,
    memo: String,
) -> Transfer {
    Transfer { transfer_id, kind, debit, credit, amount_fen, mandate, memo }
}

/// The transfers a command asks for, their amounts taken from the balances where the command
/// names none.
fn transfers_for(state: &LedgerState, command: LedgerCommand) -> Result<Vec<Transfer>, LedgerError> {
    use LedgerCommand as C;
    let transfers = match command {
        C::Allocate { transfer_id, from, to, amount_fen, memo } => {
            if from == Some(to) {
                return Err(LedgerError::SelfAllocation);
            }
            let debit = from.map_or(Account::Fiscal, |organisation| Account::Organisation { organisation });
            let credit = Account::Organisation { organisation: to };
            vec![transfer(transfer_id, TransferKind::Allocation, debit, credit, amount_fen, None, memo)]
        }
        C::Reserve { transfer_id, mandate, from, amount_fen } => {
            let debit = Account::Organisation { organisation: from };
            let credit = Account::Reserved { mandate };
            vec![transfer(
                transfer_id,
                TransferKind::Reservation,
                debit,
                credit,
                amount_fen,
                Some(mandate),
                String::new(),
            )]
        }
        C::Post { transfer_id, mandate, community } => {
            let reserved = Account::Reserved { mandate };
            let amount = positive(state.balance(reserved)).ok_or(LedgerError::NothingToTransfer(mandate))?;
            let credit = Account::Mandate { mandate, community };
            vec![transfer(
                transfer_id,
                TransferKind::Posting,
                reserved,
                credit,
                amount,
                Some(mandate),
                String::new(),
            )]
        }
        C::Spend { transfer_id, mandate, community, amount_fen, memo } => {
            let debit = Account::Mandate { mandate, community };
            vec![transfer(
                transfer_id,
                TransferKind::Spending,
                debit,
                Account::Expenditure,
                amount_fen,
                Some(mandate),
                memo,
            )]
        }
        C::ReturnUnspent { transfer_id, mandate, community, to } => {
            returns(state, transfer_id, mandate, community, to)?
        }
        C::Move { transfer_id, mandate, from_community, to_community } => {
            let debit = Account::Mandate { mandate, community: from_community };
            let credit = Account::Mandate { mandate, community: to_community };
            match positive(state.balance(debit)) {
                None => vec![],
                Some(amount) => vec![transfer(
                    transfer_id,
                    TransferKind::Move,
                    debit,
                    credit,
                    amount,
                    Some(mandate),
                    String::new(),
                )],
            }
        }
    };
    Ok(transfers)
}

/// What is still held for a mandate (reserved, and posted to `community`), back to `to`.
fn returns(
    state: &LedgerState,
    transfer_id: Uuid,
    mandate: Uuid,
    community: Option<Uuid>,
    to: Uuid,
) -> Result<Vec<Transfer>, LedgerError> {
    let credit = Account::Organisation { organisation: to };
    let mut sources = vec![Account::Reserved { mandate }];
    sources.extend(community.map(|community| Account::Mandate { mandate, community }));
    let returns: Vec<Transfer> = sources
        .into_iter()
        .filter_map(|account| positive(state.balance(account)).map(|amount| (account, amount)))
        .enumerate()
        .map(|(index, (account, amount))| {
            // One client id, possibly two transfers: the second id is derived from it.
            let id = match index {
                0 => transfer_id,
                _ => Uuid::new_v5(&transfer_id, b"return-posted"),
            };
            transfer(id, TransferKind::Return, account, credit, amount, Some(mandate), String::new())
        })
        .collect();
    if returns.is_empty() {
        return Err(LedgerError::NothingToTransfer(mandate));
    }
    Ok(returns)
}

/// The events recording `transfers`, each checked against the balances as the ones before it
/// left them: no holding account below zero, no overflow, no id reused for another transfer.
fn checked_events(state: &LedgerState, transfers: Vec<Transfer>) -> Result<Vec<LedgerEvent>, LedgerError> {
    let mut events = Vec::with_capacity(transfers.len());
    // The balances this command's transfers have moved so far, over the state's: a command
    // touches a few accounts, while the ledger holds one or two for every mandate.
    let mut moved: HashMap<Account, i64> = HashMap::with_capacity(2 * transfers.len());
    let balance = |moved: &HashMap<Account, i64>, account: Account| {
        moved.get(&account).copied().unwrap_or_else(|| state.balance(account))
    };
    for transfer in transfers {
        if transfer.amount_fen == Fen::ZERO {
            return Err(LedgerError::ZeroAmount);
        }
        if transfer.memo.chars().count() > MEMO_CHARS_MAX {
            return Err(LedgerError::MemoTooLong);
        }
        match state.transfers.get(&transfer.transfer_id) {
            Some(recorded) if *recorded == transfer => continue,
            Some(_) => return Err(LedgerError::TransferIdReused(transfer.transfer_id)),
            None => {}
        }
        let debit_balance = balance(&moved, transfer.debit);
        if transfer.debit.is_holding() && debit_balance < transfer.amount_fen.get() {
            return Err(LedgerError::InsufficientFunds {
                account: transfer.debit,
                balance: debit_balance,
                amount: transfer.amount_fen,
            });
        }
        let amount = transfer.amount_fen.get();
        let credit_balance = balance(&moved, transfer.credit);
        let debited = debit_balance.checked_sub(amount).ok_or(LedgerError::Overflow(transfer.debit))?;
        let credited = credit_balance.checked_add(amount).ok_or(LedgerError::Overflow(transfer.credit))?;
        moved.insert(transfer.debit, debited);
        moved.insert(transfer.credit, credited);
        events.push(LedgerEvent::TransferRecorded { transfer });
    }
    Ok(events)
}

fn positive(balance: i64) -> Option<Fen> {
    match balance > 0 {
        true => Fen::parse(balance).ok(),
        false => None,
    }
}

#[cfg(test)]
mod tests;
