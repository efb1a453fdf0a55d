//! Setting a district up: organisations, the catalogue, budgets, and the record of the policy
//! bundle every decision cites. Each command is a person's (authorised by `policies/authz`)
//! or the operator's at the command line (`…_as_operator`: nothing to authorise).

use std::collections::BTreeMap;

use shequ_domain::catalogue::{Catalogue, CatalogueCommand, Matter, CATALOGUE_ID};
use shequ_domain::ledger::{Ledger, LedgerCommand};
use shequ_domain::organisation::{
    Organisation, OrganisationCommand, OrganisationError, OrganisationKind, ParentRef, Registered,
};
use shequ_domain::Fen;
use shequ_store::{ExpectedRevision, NewEvent, StoreError};
use uuid::Uuid;

use super::authz::Target;
use super::scope::{Caller, CommandScope};
use super::Service;
use crate::error::{Result, ServiceError};

/// The data of a `PolicyBundleRecorded` event (stream `policy-{digest}`): the policy bundle's
/// every file, so that any decision citing the digest can be re-run from the log alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PolicyBundleRecorded {
    /// The SHA-256 content digest of the bundle, hex (`docs/audit-format.md`).
    pub digest: String,
    /// Each file's text by its path in the bundle.
    pub files: BTreeMap<String, String>,
}

/// An organisation to register.
#[derive(Debug, Clone, Copy)]
pub struct NewOrganisation<'a> {
    pub id: Uuid,
    pub kind: OrganisationKind,
    pub name: &'a str,
    /// None for a district.
    pub parent: Option<Uuid>,
    /// A department's catalogue code.
    pub code: Option<&'a str>,
}

/// Budget to move: from the fiscal budget (`from: None`, the operator or the district only) or
/// from the recipient's parent organisation.
#[derive(Debug, Clone, Copy)]
pub struct Allocation<'a> {
    pub transfer_id: Uuid,
    pub from: Option<Uuid>,
    pub to: Uuid,
    pub amount_fen: Fen,
    pub memo: &'a str,
}

impl Service {
    /// The stream that holds a bundle's text: `policy-{digest}`.
    pub fn bundle_stream(digest: &str) -> String {
        format!("policy-{digest}")
    }

    pub(super) async fn record_bundle(&self) -> Result<()> {
        let bundle = self.policies.bundle();
        let recorded =
            PolicyBundleRecorded { digest: bundle.digest().to_owned(), files: bundle.files().clone() };
        let data = serde_json::to_string(&recorded).expect("a bundle is plain text");
        let metadata = Caller::System.context().metadata(self.clock.now()).to_json();
        // The id is derived from the digest, so every process records one and the same event.
        let event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, bundle.digest().as_bytes());
        let event = NewEvent {
            event_id,
            event_type: "PolicyBundleRecorded".into(),
            event_version: 1,
            data,
            metadata,
        };
        match self
            .log
            .append(&Self::bundle_stream(bundle.digest()), ExpectedRevision::NoStream, vec![event])
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// A person registers an organisation under their district.
    pub async fn register_organisation(
        &self,
        scope: &CommandScope,
        organisation: NewOrganisation<'_>,
    ) -> Result<()> {
        self.register(Caller::Person(scope), organisation).await
    }

    /// The operator registers an organisation, setting a district up.
    pub async fn register_organisation_as_operator(&self, organisation: NewOrganisation<'_>) -> Result<()> {
        self.register(Caller::Operator, organisation).await
    }

    async fn register(&self, caller: Caller<'_>, organisation: NewOrganisation<'_>) -> Result<()> {
        let parent = match organisation.parent {
            None => None,
            Some(parent_id) => {
                Some(ParentRef { id: parent_id, kind: self.organisation(parent_id).await?.kind })
            }
        };
        if let Caller::Person(scope) = caller {
            let district = match parent {
                Some(parent) => Some(self.district_of(parent.id).await?),
                None => None,
            };
            let target = Target { district, ..Target::default() };
            self.authorize(&scope.actor(), "organisation.register", target).await?;
        }
        self.refuse_namesakes(&organisation).await?;
        let command = OrganisationCommand::Register {
            kind: organisation.kind,
            name: organisation.name.to_owned(),
            parent,
            code: organisation.code.map(str::to_owned),
        };
        self.execute::<Organisation>(caller.context(), organisation.id, command).await?;
        Ok(())
    }

    /// Refuses a second organisation of one name under one parent, and a second department
    /// of one code in one district (its parent). Districts, which have no parent, are told
    /// apart by `shequ setup`. Another registration of the same id is the domain's to answer.
    async fn refuse_namesakes(&self, organisation: &NewOrganisation<'_>) -> Result<()> {
        let Some(parent) = organisation.parent else { return Ok(()) };
        let name = organisation.name.trim();
        let projection = self.read_model.read().await?;
        for sibling in projection.organisations() {
            if sibling.id == organisation.id || sibling.parent_id != Some(parent) {
                continue;
            }
            if sibling.name == name {
                return Err(OrganisationError::NameTaken(name.to_owned()).into());
            }
            if let (Some(code), Some(taken)) = (organisation.code, &sibling.code) {
                if code == taken {
                    return Err(OrganisationError::CodeTaken(code.to_owned()).into());
                }
            }
        }
        Ok(())
    }

    /// An organisation as the live projection holds it.
    pub async fn organisation(&self, id: Uuid) -> Result<Registered> {
        let view = self.read_model.read().await?.organisation(id);
        view.map(|view| Registered {
            kind: view.kind,
            name: view.name,
            parent_id: view.parent_id,
            code: view.code,
        })
        .ok_or_else(|| ServiceError::NotFound(format!("organisation {id}")))
    }

    /// A person publishes the catalogue; returns its version (the catalogue stream's length).
    pub async fn publish_catalogue(&self, scope: &CommandScope, matters: Vec<Matter>) -> Result<u64> {
        let actor = scope.actor();
        let district = self.district_of(actor.organisation).await?;
        let target = Target { district: Some(district), ..Target::default() };
        self.authorize(&actor, "catalogue.publish", target).await?;
        self.publish(Caller::Person(scope), matters).await
    }

    /// The operator publishes the catalogue; returns its version.
    pub async fn publish_catalogue_as_operator(&self, matters: Vec<Matter>) -> Result<u64> {
        self.publish(Caller::Operator, matters).await
    }

    async fn publish(&self, caller: Caller<'_>, matters: Vec<Matter>) -> Result<u64> {
        self.execute::<Catalogue>(caller.context(), CATALOGUE_ID, CatalogueCommand::Publish { matters })
            .await?;
        Ok(self.catalogue().await?.0)
    }

    /// The live catalogue and its version.
    pub async fn catalogue(&self) -> Result<(u64, BTreeMap<String, Matter>)> {
        let projection = self.read_model.read().await?;
        Ok((projection.catalogue_version(), projection.catalogue().matters.clone()))
    }

    /// A person moves budget (see [`Allocation`]).
    pub async fn allocate(&self, scope: &CommandScope, allocation: Allocation<'_>) -> Result<()> {
        self.move_budget(Caller::Person(scope), allocation).await
    }

    /// The operator moves budget, setting a district up.
    pub async fn allocate_as_operator(&self, allocation: Allocation<'_>) -> Result<()> {
        self.move_budget(Caller::Operator, allocation).await
    }

    async fn move_budget(&self, caller: Caller<'_>, allocation: Allocation<'_>) -> Result<()> {
        let Allocation { transfer_id, from, to, amount_fen, memo } = allocation;
        let recipient = self.organisation(to).await?;
        let district = self.district_of(to).await?;
        if let Caller::Person(scope) = caller {
            let street = match recipient.kind {
                OrganisationKind::Community => recipient.parent_id,
                _ => None,
            };
            let target = Target { district: Some(district), street, from, ..Target::default() };
            self.authorize(&scope.actor(), "ledger.allocate", target).await?;
        }
        let command = LedgerCommand::Allocate { transfer_id, from, to, amount_fen, memo: memo.to_owned() };
        self.execute_quietly::<Ledger>(caller.context(), district, command).await?;
        Ok(())
    }
}
