//! shequ's command path, shared by the HTTP API and the command line.
//!
//! Every command goes the same way: authorise the actor by role and place (`policies/authz`),
//! look up what the command needs from the live projection (catalogue, hierarchy, balances),
//! ask the access policy where the plan's rules apply, and run the aggregate (`service/runner.rs`:
//! through esrs's `AggregateManager` on a short stream, pipelined on a long or joined one),
//! with the actor, correlation and decision in every event's metadata. What belongs to one
//! command travels in its `CommandScope`; the operator's set-up and the service's own timers
//! say so in their names (`…_as_operator`) or run as the system.

mod actor;
pub mod audit;
pub mod checkpoint;
mod clock;
mod error;
pub mod event_schemas;
pub mod key_file;
pub mod projection;
pub mod read_model;
pub mod replay;
mod service;

pub use actor::{Actor, Role};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ServiceError;
pub use read_model::ReadModel;
pub use service::{
    Allocation, CommandScope, LedgerView, MandateFilter, MandateOutcome, NewOrganisation,
    PolicyBundleRecorded, RequestFilter, Service, StateAsOf, Timeline, TimelineEntry, TransferEntry,
    TransferFilter, CONTEST_DAYS_DEFAULT,
};
