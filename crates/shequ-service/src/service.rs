//! The command path: one file per concern.
//!
//! - `scope.rs`: a command's own state ([`CommandScope`]: actor, key, digest, expected
//!   revision, recorder), who runs it (`Caller`), and the idempotent retry under a key.
//! - `runner.rs`: load, decide, append; the two ways an append goes (through esrs for a short
//!   stream, pipelined for a long or joined one), chosen in one place; `state_cache.rs`: the
//!   long streams' states kept between commands.
//! - `authz.rs`: authorisation by role and place (`policies/authz`).
//! - `setup.rs`: organisations, the catalogue, budgets and the policy bundle's record.
//! - `mandates.rs` and `funds.rs`: the mandate commands, and the money that moves with them.
//! - `requests.rs`: residents' service requests. `reads.rs`: lists and the inspectors' views;
//!   `proofs.rs`: the Merkle proofs. `timers.rs`: the contest timers. `turns.rs`: keyed
//!   commands taking turns.

use std::sync::Arc;

use shequ_policy::Policies;
use shequ_store::EventLog;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::error::ServiceError;
use crate::read_model::ReadModel;

mod authz;
mod funds;
mod mandates;
mod proofs;
mod reads;
mod requests;
mod runner;
mod scope;
mod setup;
mod state_cache;
mod timers;
mod turns;

pub use mandates::MandateOutcome;
pub use reads::{
    LedgerView, MandateFilter, StateAsOf, Timeline, TimelineEntry, TransferEntry, TransferFilter,
};
pub use requests::RequestFilter;
pub use scope::CommandScope;
pub use setup::{Allocation, NewOrganisation, PolicyBundleRecorded};

/// Days a contest may stay unanswered before it escalates to the district by itself.
pub const CONTEST_DAYS_DEFAULT: i64 = 15;

/// The command path: the handles every command shares. Cheap to clone; what belongs to one
/// command travels in its [`CommandScope`].
#[derive(Debug, Clone)]
pub struct Service {
    log: EventLog,
    policies: Policies,
    clock: Arc<dyn Clock>,
    contest_days: i64,
    timers: Arc<Mutex<timers::ContestTimers>>,
    read_model: ReadModel,
    states: Arc<state_cache::StateCache>,
    /// Attempts at commands named by the same key take turns, in this process.
    turns: Arc<turns::CommandTurns>,
}

impl Service {
    /// Makes the command path over `log`, and records the policy bundle in the log if this
    /// bundle (by digest) is not there yet, so every decision can be re-run on its text.
    pub async fn new(log: EventLog, policies: Policies, clock: Arc<dyn Clock>) -> Result<Self, ServiceError> {
        let service = Self {
            policies,
            clock,
            contest_days: CONTEST_DAYS_DEFAULT,
            timers: Arc::default(),
            read_model: ReadModel::new(log.clone()),
            turns: Arc::default(),
            states: Arc::default(),
            log,
        };
        service.record_bundle().await?;
        Ok(service)
    }

    pub fn with_contest_days(mut self, days: i64) -> Self {
        self.contest_days = days;
        self
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The live projection, caught up on each read.
    pub fn read_model(&self) -> &ReadModel {
        &self.read_model
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }
}
