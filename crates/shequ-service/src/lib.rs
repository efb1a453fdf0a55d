//! shequ's command path, shared by the HTTP API and the command line (`shequ demo`).
//!
//! Every command goes the same way: authorise the actor by role and place (`policies/authz`),
//! look up what the command needs from the log (catalogue, hierarchy, balances), ask the
//! access policy where the plan's rules apply, and run the aggregate through esrs's
//! `AggregateManager` with the actor, correlation and decision in every event's metadata.

mod actor;
pub mod audit;
pub mod checkpoint;
mod clock;
pub mod demo;
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
    FileRequest, LedgerView, MandateFilter, MandateOutcome, PolicyBundleRecorded, RequestAction,
    RequestFilter, Service, StateAsOf, Timeline, TimelineEntry, TransferEntry, TransferFilter,
    CONTEST_DAYS_DEFAULT,
};
