//! The Merkle tree's proofs, for an inspector checking the log against a root they hold.

use shequ_store::{ConsistencyProof, InclusionProof};

use super::authz::Target;
use super::Service;
use crate::actor::Actor;
use crate::error::Result;

impl Service {
    /// An RFC 6962 inclusion proof, for an actor allowed to read the audit trail.
    pub async fn inclusion_proof(
        &self,
        actor: Actor,
        position: u64,
        tree_size: u64,
    ) -> Result<InclusionProof> {
        self.authorize_audit(&actor).await?;
        Ok(self.log.inclusion_proof(position, tree_size).await?)
    }

    /// An RFC 6962 consistency proof, for an actor allowed to read the audit trail.
    pub async fn consistency_proof(&self, actor: Actor, first: u64, second: u64) -> Result<ConsistencyProof> {
        self.authorize_audit(&actor).await?;
        Ok(self.log.consistency_proof(first, second).await?)
    }

    pub(crate) async fn authorize_audit(&self, actor: &Actor) -> Result<()> {
        let district = self.district_of(actor.organisation).await?;
        self.authorize(actor, "read.audit", Target { district: Some(district), ..Target::default() }).await
    }
}
