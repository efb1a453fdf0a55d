//! The money that moves with a mandate (plan:3.4.2-R4, "funds follow tasks"): reserved when
//! it is admitted, posted to its community when accepted, moved when it is reassigned,
//! returned when it ends early, spent by the community. Each transfer's id is derived from
//! the mandate and its purpose, so a command sent again moves nothing twice.

use shequ_domain::ledger::{Account, Ledger, LedgerCommand, LedgerError, LedgerState};
use shequ_domain::mandate::{Mandate, MandateCommand, MandateRecord, MandateState, MandateStatus};
use shequ_domain::Fen;
use shequ_store::CommandContext;
use uuid::Uuid;

use super::runner::Known;
use super::scope::CommandScope;
use super::Service;
use crate::error::{Result, ServiceError};

impl Service {
    /// One account's balance, from the live projection.
    pub(super) async fn balance(&self, district: Uuid, account: Account) -> Result<i64> {
        Ok(self.read_model.read().await?.balance(district, account))
    }

    pub async fn ledger(&self, district: Uuid) -> Result<LedgerState> {
        self.load_kept::<Ledger>(district).await
    }

    /// Posts what is reserved for an accepted mandate to its community, and activates it.
    /// The activation is decided knowing the mandate `activate_at` ([`Known::At`] the
    /// client's revision when it is the command's first event on the mandate).
    pub(super) async fn post_and_activate(
        &self,
        context: CommandContext,
        mandate: Uuid,
        district: Uuid,
        activate_at: Known,
    ) -> Result<MandateState> {
        let record = self.mandate(mandate).await?;
        let community = record.proposal.community;
        if self.balance(district, Account::Reserved { mandate }).await? > 0 {
            // The id depends on the total offered, so a retry posts once and a cure's new
            // funds post again.
            let purpose = format!("post/{}", record.proposal.funds_offered_fen.get());
            let post = LedgerCommand::Post { transfer_id: derived(mandate, &purpose), mandate, community };
            self.execute_quietly::<Ledger>(context.clone(), district, post).await?;
        }
        let posted = self.balance(district, Account::Mandate { mandate, community }).await?;
        let posted = Fen::parse(posted).map_err(|error| ServiceError::Invalid(error.to_string()))?;
        let activate = MandateCommand::Activate { funds_posted_fen: posted };
        self.execute_known::<Mandate>(context, mandate, activate, activate_at).await
    }

    /// Moves whatever is posted for `mandate` at a community other than its own (`record`) to
    /// its own: after a reassignment, and to finish one that stopped between the mandate's
    /// move and its funds'. Each move's transfer id names both communities and the decision
    /// that placed the mandate where it is (the reassignment's), so a move sent again is
    /// nothing to do and a mandate moved back and forth takes its funds every time. Whether
    /// there was anything to move.
    pub(super) async fn gather_funds(
        &self,
        context: CommandContext,
        mandate: Uuid,
        district: Uuid,
        record: &MandateRecord,
    ) -> Result<bool> {
        let here = record.proposal.community;
        let placed_by = record.decision.decision_id;
        let elsewhere: Vec<Uuid> = self
            .ledger(district)
            .await?
            .mandate_funds(mandate)
            .iter()
            .filter_map(|(account, _)| match account {
                Account::Mandate { community, .. } if *community != here => Some(*community),
                _ => None,
            })
            .collect();
        for from in &elsewhere {
            let move_funds = LedgerCommand::Move {
                transfer_id: derived(mandate, &format!("move/{from}/{here}/{placed_by}")),
                mandate,
                from_community: *from,
                to_community: here,
            };
            self.execute_quietly::<Ledger>(context.clone(), district, move_funds).await?;
        }
        Ok(!elsewhere.is_empty())
    }

    pub async fn spend(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        transfer_id: Uuid,
        amount_fen: Fen,
        memo: &str,
    ) -> Result<()> {
        let (record, district, _) =
            self.authorize_on_mandate(&scope.actor(), mandate, "ledger.spend").await?;
        if record.status != MandateStatus::Active {
            return Err(ServiceError::Forbidden(format!(
                "mandate {mandate} is {:?}: no live grant to act on",
                record.status
            )));
        }
        let command = LedgerCommand::Spend {
            transfer_id,
            mandate,
            community: record.proposal.community,
            amount_fen,
            memo: memo.to_owned(),
        };
        self.execute_quietly::<Ledger>(scope.context(), district, command).await?;
        Ok(())
    }

    pub(super) async fn return_funds(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        record: &MandateRecord,
        district: Uuid,
    ) -> Result<()> {
        // Everything still held for the mandate, reserved or posted to any community (a move
        // that did not finish leaves funds with the earlier one), goes back to the unit.
        let ledger = self.ledger(district).await?;
        let mut communities: Vec<Option<Uuid>> = ledger
            .mandate_funds(mandate)
            .iter()
            .filter_map(|(account, _)| match account {
                Account::Mandate { community, .. } => Some(Some(*community)),
                _ => None,
            })
            .collect();
        if communities.is_empty() {
            communities.push(None);
        }
        for community in communities {
            let purpose =
                format!("return/{}", community.map_or_else(String::new, |community| community.to_string()));
            let command = LedgerCommand::ReturnUnspent {
                transfer_id: derived(mandate, &purpose),
                mandate,
                community,
                to: record.proposal.delegating_unit,
            };
            match self.execute_quietly::<Ledger>(scope.context(), district, command).await {
                Ok(_) | Err(ServiceError::Ledger(LedgerError::NothingToTransfer(_))) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A transfer id derived from a mandate or decision and a purpose, so that a retried command
/// makes the same transfer and the ledger answers it idempotently.
pub(super) fn derived(id: Uuid, purpose: &str) -> Uuid {
    Uuid::new_v5(&id, purpose.as_bytes())
}
