//! Authorisation by role and place: every person's command and read asks `policies/authz`
//! whether the actor's role, placed in the hierarchy, may act on the target.

use shequ_domain::mandate::MandateRecord;
use shequ_domain::organisation::OrganisationKind;
use uuid::Uuid;

use super::Service;
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::projection::Projection;

/// Where an action lands in the hierarchy, for `policies/authz`. A member that does not apply
/// is absent from the policy's input, not null: Rego's `not` holds only for undefined (or
/// false) values.
#[derive(Debug, Default)]
pub(crate) struct Target {
    pub(crate) district: Option<Uuid>,
    pub(crate) street: Option<Uuid>,
    pub(crate) community: Option<Uuid>,
    pub(crate) delegating_unit: Option<Uuid>,
    /// The account a budget allocation leaves.
    pub(crate) from: Option<Uuid>,
    /// The organisation holding a service request.
    pub(crate) handler: Option<Uuid>,
    /// The resident a service request is for (their token subject).
    pub(crate) resident: Option<String>,
}

impl serde::Serialize for Target {
    /// The members that apply, in the order declared.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let places = [
            ("district", self.district),
            ("street", self.street),
            ("community", self.community),
            ("delegating_unit", self.delegating_unit),
            ("from", self.from),
            ("handler", self.handler),
        ];
        let mut map = serializer.serialize_map(None)?;
        for (name, place) in places {
            if let Some(place) = place {
                map.serialize_entry(name, &place)?;
            }
        }
        if let Some(resident) = &self.resident {
            map.serialize_entry("resident", resident)?;
        }
        map.end()
    }
}

/// `policies/authz/authz.rego`'s input, written straight to its JSON text: the key of the
/// answers remembered, parsed only when the policy has not answered it yet.
#[derive(serde::Serialize)]
struct AuthzInput<'a> {
    actor: AuthzActor<'a>,
    action: &'a str,
    target: &'a Target,
}

/// The actor as the policy sees it; its members are null, not absent, when unknown.
#[derive(serde::Serialize)]
struct AuthzActor<'a> {
    role: &'a str,
    organisation: Uuid,
    kind: Option<OrganisationKind>,
    district: Option<Uuid>,
    subject: Option<&'a str>,
}

impl Service {
    /// Loads the mandate and authorises `action` on it; returns it, its district and its
    /// revision as loaded.
    pub(crate) async fn authorize_on_mandate(
        &self,
        actor: &Actor,
        mandate: Uuid,
        action: &str,
    ) -> Result<(MandateRecord, Uuid, u64)> {
        let (record, revision) = self.mandate_at(mandate).await?;
        let district = self.authorize_on_record(actor, &record, action).await?;
        Ok((record, district, revision))
    }

    /// Authorises `action` on a mandate as loaded; returns its district.
    pub(crate) async fn authorize_on_record(
        &self,
        actor: &Actor,
        record: &MandateRecord,
        action: &str,
    ) -> Result<Uuid> {
        let (district, street) = self.community_place(record.proposal.community).await?;
        let target = Target {
            district: Some(district),
            street: Some(street),
            community: Some(record.proposal.community),
            delegating_unit: Some(record.proposal.delegating_unit),
            ..Target::default()
        };
        self.authorize(actor, action, target).await?;
        Ok(district)
    }

    pub(crate) async fn authorize(&self, actor: &Actor, action: &str, target: Target) -> Result<()> {
        self.authorize_subject(actor, None, action, target).await
    }

    /// [`Self::authorize`] for an actor known by name too: a resident acts on their own
    /// requests only.
    pub(crate) async fn authorize_subject(
        &self,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<()> {
        let decision = self.authz_decision(actor, subject, action, target).await?;
        match decision.allow {
            true => Ok(()),
            false => {
                tracing::warn!(%actor, action, reason = %decision.reason, "denied");
                Err(ServiceError::Forbidden(decision.reason))
            }
        }
    }

    pub(crate) async fn authz_decision(
        &self,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<shequ_policy::AuthzDecision> {
        let projection = self.read_model.read().await?;
        self.authz_decision_in(&projection, actor, subject, action, target)
    }

    /// The authorisation policy's answer, with the actor placed in `projection`. A list
    /// filters what it shows by its `allow` (a "no" there is not a denied attempt), on the
    /// projection it reads: no second read is made while the list holds it, since a second
    /// read may have to wait for the projection's next fold, which waits for the list.
    pub(crate) fn authz_decision_in(
        &self,
        projection: &Projection,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<shequ_policy::AuthzDecision> {
        let input = AuthzInput {
            actor: AuthzActor {
                role: actor.role.as_str(),
                organisation: actor.organisation,
                kind: projection.organisation(actor.organisation).map(|view| view.kind),
                district: projection.district_of(actor.organisation),
                subject,
            },
            action,
            target: &target,
        };
        let text = serde_json::to_string(&input)
            .map_err(|error| ServiceError::Invalid(format!("the authorisation policy's input: {error}")))?;
        Ok(self.policies.authorize_text(&text)?)
    }

    /// The district and street of a community.
    pub(crate) async fn community_place(&self, community: Uuid) -> Result<(Uuid, Uuid)> {
        let registered = self.organisation(community).await?;
        let street = match (registered.kind, registered.parent_id) {
            (OrganisationKind::Community, Some(street)) => street,
            _ => return Err(ServiceError::Invalid(format!("{community} is not a community"))),
        };
        Ok((self.district_of(street).await?, street))
    }

    /// The district an organisation belongs to (itself, for a district).
    pub(crate) async fn district_of(&self, organisation: Uuid) -> Result<Uuid> {
        let projection = self.read_model.read().await?;
        if projection.organisation(organisation).is_none() {
            return Err(ServiceError::NotFound(format!("organisation {organisation}")));
        }
        projection
            .district_of(organisation)
            .ok_or_else(|| ServiceError::Invalid(format!("{organisation} does not hang under a district")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The authorisation input written from its types is the input the policy was given as a
    /// `serde_json::Value` before: unknown members of the actor null, target members absent.
    #[test]
    fn the_authz_input_is_what_the_policy_was_given() {
        let (organisation, district, resident) = (Uuid::from_u128(1), Uuid::from_u128(2), "r-1".to_owned());
        let target =
            Target { district: Some(district), resident: Some(resident.clone()), ..Target::default() };
        let cases = [
            (Some(OrganisationKind::Community), Some(district), Some("s-1"), &target),
            (None, None, None, &Target::default()),
        ];
        for (kind, actor_district, subject, target) in cases {
            let input = AuthzInput {
                actor: AuthzActor { role: "resident", organisation, kind, district: actor_district, subject },
                action: "request.read",
                target,
            };
            let mut expected_target = serde_json::Map::new();
            if target.district.is_some() {
                expected_target.insert("district".into(), json!(district));
                expected_target.insert("resident".into(), json!(resident));
            }
            let expected = json!({
                "actor": {"role": "resident", "organisation": organisation, "kind": kind,
                          "district": actor_district, "subject": subject},
                "action": "request.read",
                "target": expected_target,
            });
            let written: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
            assert_eq!(written, expected);
        }
    }
}
