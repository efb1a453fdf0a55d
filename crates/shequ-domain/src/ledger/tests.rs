use esrs::Aggregate;
use proptest::prelude::*;

use super::*;

fn fen(amount: i64) -> Fen {
    Fen::parse(amount).unwrap()
}

fn run(commands: Vec<LedgerCommand>) -> Result<LedgerState, LedgerError> {
    let mut state = LedgerState::default();
    for command in commands {
        for event in Ledger::handle_command(&state, command)? {
            state = Ledger::apply_event(state, event);
        }
    }
    Ok(state)
}

const DISTRICT: Uuid = Uuid::from_u128(1);
const STREET: Uuid = Uuid::from_u128(2);
const COMMUNITY: Uuid = Uuid::from_u128(3);
const OTHER_COMMUNITY: Uuid = Uuid::from_u128(4);
const MANDATE: Uuid = Uuid::from_u128(5);

fn id(n: u128) -> Uuid {
    Uuid::from_u128(1_000 + n)
}

fn funded_street() -> Vec<LedgerCommand> {
    vec![
        LedgerCommand::Allocate {
            transfer_id: id(1),
            from: None,
            to: DISTRICT,
            amount_fen: fen(100_000),
            memo: "2026 budget".into(),
        },
        LedgerCommand::Allocate {
            transfer_id: id(2),
            from: Some(DISTRICT),
            to: STREET,
            amount_fen: fen(40_000),
            memo: String::new(),
        },
    ]
}

#[test]
fn funds_follow_the_task_from_reservation_to_spending_and_return() {
    let mut commands = funded_street();
    commands.extend([
        street_reserves(30_000),
        LedgerCommand::Post { transfer_id: id(4), mandate: MANDATE, community: COMMUNITY },
        LedgerCommand::Spend {
            transfer_id: id(5),
            mandate: MANDATE,
            community: COMMUNITY,
            amount_fen: fen(12_000),
            memo: "home visits".into(),
        },
        LedgerCommand::Move {
            transfer_id: id(6),
            mandate: MANDATE,
            from_community: COMMUNITY,
            to_community: OTHER_COMMUNITY,
        },
        LedgerCommand::ReturnUnspent {
            transfer_id: id(7),
            mandate: MANDATE,
            community: Some(OTHER_COMMUNITY),
            to: STREET,
        },
    ]);
    let state = run(commands).unwrap();
    assert_eq!(state.balance(Account::Organisation { organisation: STREET }), 10_000 + 18_000);
    assert_eq!(state.balance(Account::Organisation { organisation: DISTRICT }), 60_000);
    assert_eq!(state.balance(Account::Expenditure), 12_000);
    assert_eq!(state.balance(Account::Fiscal), -100_000);
    assert!(state.mandate_funds(MANDATE).is_empty());
    assert_eq!(state.balances.values().sum::<i64>(), 0);
}

#[test]
fn no_overdraft_ever() {
    let mut commands = funded_street();
    commands.push(street_reserves(40_001));
    assert_eq!(
        run(commands),
        Err(LedgerError::InsufficientFunds {
            account: Account::Organisation { organisation: STREET },
            balance: 40_000,
            amount: fen(40_001)
        })
    );
}

#[test]
fn retries_are_idempotent_and_ids_are_never_reused() {
    let state = run(funded_street()).unwrap();
    let again = funded_street().remove(1);
    assert_eq!(Ledger::handle_command(&state, again), Ok(vec![]));
    let reused = LedgerCommand::Allocate {
        transfer_id: id(2),
        from: Some(DISTRICT),
        to: STREET,
        amount_fen: fen(1),
        memo: String::new(),
    };
    assert_eq!(Ledger::handle_command(&state, reused), Err(LedgerError::TransferIdReused(id(2))));

    let mut posted = funded_street();
    posted.push(street_reserves(5_000));
    posted.push(LedgerCommand::Post { transfer_id: id(4), mandate: MANDATE, community: COMMUNITY });
    let state = run(posted).unwrap();
    let retry = LedgerCommand::Post { transfer_id: id(4), mandate: MANDATE, community: COMMUNITY };
    assert_eq!(Ledger::handle_command(&state, retry), Ok(vec![]));
    let fresh = LedgerCommand::Post { transfer_id: id(9), mandate: MANDATE, community: COMMUNITY };
    assert_eq!(Ledger::handle_command(&state, fresh), Err(LedgerError::NothingToTransfer(MANDATE)));
}

#[test]
fn zero_amounts_and_self_allocations_are_refused() {
    let zero = LedgerCommand::Allocate {
        transfer_id: id(1),
        from: None,
        to: DISTRICT,
        amount_fen: Fen::ZERO,
        memo: String::new(),
    };
    assert_eq!(run(vec![zero]), Err(LedgerError::ZeroAmount));
    let own = LedgerCommand::Allocate {
        transfer_id: id(1),
        from: Some(DISTRICT),
        to: DISTRICT,
        amount_fen: fen(1),
        memo: String::new(),
    };
    assert_eq!(run(vec![own]), Err(LedgerError::SelfAllocation));
}

fn command() -> impl Strategy<Value = LedgerCommand> {
    let organisation = (0u128..3).prop_map(|n| Uuid::from_u128(100 + n));
    let mandate = (0u128..3).prop_map(|n| Uuid::from_u128(200 + n));
    let community = (0u128..2).prop_map(|n| Uuid::from_u128(300 + n));
    // A small pool of ids, so that retries and reuse happen.
    let transfer_id = (0u128..40).prop_map(|n| Uuid::from_u128(400 + n));
    let amount = (0i64..2_000).prop_map(|amount| Fen::parse(amount).unwrap());
    prop_oneof![
        (
            transfer_id.clone(),
            proptest::option::of(organisation.clone()),
            organisation.clone(),
            amount.clone()
        )
            .prop_map(|(transfer_id, from, to, amount_fen)| LedgerCommand::Allocate {
                transfer_id,
                from,
                to,
                amount_fen,
                memo: String::new()
            }),
        (transfer_id.clone(), mandate.clone(), organisation.clone(), amount.clone()).prop_map(
            |(transfer_id, mandate, from, amount_fen)| LedgerCommand::Reserve {
                transfer_id,
                mandate,
                from,
                amount_fen
            }
        ),
        (transfer_id.clone(), mandate.clone(), community.clone()).prop_map(
            |(transfer_id, mandate, community)| LedgerCommand::Post { transfer_id, mandate, community }
        ),
        (transfer_id.clone(), mandate.clone(), community.clone(), amount).prop_map(
            |(transfer_id, mandate, community, amount_fen)| LedgerCommand::Spend {
                transfer_id,
                mandate,
                community,
                amount_fen,
                memo: String::new()
            }
        ),
        (transfer_id.clone(), mandate.clone(), proptest::option::of(community.clone()), organisation)
            .prop_map(|(transfer_id, mandate, community, to)| LedgerCommand::ReturnUnspent {
                transfer_id,
                mandate,
                community,
                to
            }),
        (transfer_id, mandate, community.clone(), community).prop_map(
            |(transfer_id, mandate, from_community, to_community)| LedgerCommand::Move {
                transfer_id,
                mandate,
                from_community,
                to_community
            }
        ),
    ]
}

proptest! {
    /// Whatever clients send, in whatever order, with whatever retries: debits equal credits
    /// (all balances sum to zero) and no holding account is ever below zero.
    #[test]
    fn any_command_sequence_keeps_the_books_balanced(commands in proptest::collection::vec(command(), 1..80)) {
        let mut state = LedgerState::default();
        for command in commands {
            if let Ok(events) = Ledger::handle_command(&state, command) {
                for event in events {
                    state = Ledger::apply_event(state, event);
                    prop_assert_eq!(state.balances.values().sum::<i64>(), 0);
                    for (account, balance) in &state.balances {
                        prop_assert!(!account.is_holding() || *balance >= 0, "{} at {}", account, balance);
                    }
                }
            }
        }
    }
}

/// The street reserves `amount` fen for the mandate (transfer 3).
fn street_reserves(amount: i64) -> LedgerCommand {
    LedgerCommand::Reserve { transfer_id: id(3), mandate: MANDATE, from: STREET, amount_fen: fen(amount) }
}
