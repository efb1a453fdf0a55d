# Who may do what, by role and by place in the hierarchy.
#
# Input (built by shequ from the token and the log):
#   actor   {role, organisation, kind, district, subject}: who acts, for which organisation
#           (of which kind), in which district, and under which name (a resident's subject)
#   action  e.g. "mandate.propose"
#   target  {district, street, community, delegating_unit, from, handler, resident}: where the
#           action lands (ids; `from` is the account a budget allocation leaves; `handler` the
#           organisation holding a service request, `resident` whom it is for; members that do
#           not apply are absent)
package shequ.authz

import rego.v1

default allow := false

# A role is held only by an organisation of the matching kind.
role_kind := {
	"district": "district",
	"department": "department",
	"street_office": "street",
	"community": "community",
	"inspector": "district",
	"resident": "community",
}

role_fits if role_kind[input.actor.role] == input.actor.kind

allow if {
	role_fits
	permitted
}

# Actions of the unit that delegates a task (a street office or a district department).
delegating_actions := {"mandate.propose", "mandate.cure", "mandate.withdraw", "mandate.reassign", "ledger.reserve"}

# Actions of a community on its own tasks and money.
community_actions := {
	"mandate.accept", "mandate.contest", "mandate.record_outside_process", "mandate.complete",
	"ledger.spend", "request.file", "request.forward", "request.close",
}

# A service request is worked by whoever holds it: the community, or the street office,
# department or district the station forwarded it to.
handling_roles := {"community", "street_office", "department", "district"}

# A resident files at their own community's station and sees, closes and rates only their
# own requests.
resident_actions := {"request.file", "request.close", "request.rate", "read.request"}

# Actions of the district government.
district_actions := {
	"organisation.register", "catalogue.publish", "ledger.allocate", "contest.review",
	"mandate.propose", "mandate.cure", "mandate.withdraw", "mandate.reassign", "ledger.reserve",
}

read_actions := {"read.state", "read.mandate", "read.ledger", "read.audit", "read.request"}

in_district if input.target.district == input.actor.district

# A unit acts only on the tasks it delegated, and proposes only in its own name.
delegated_by_actor if input.target.delegating_unit == input.actor.organisation

# Budget moves only out of the actor's own account; the fiscal budget (no `from`) only
# through the district government.
pays_from_own_account if input.target.from == input.actor.organisation

pays_from_own_account if {
	input.actor.role == "district"
	not input.target.from
}

permitted if {
	input.actor.role == "district"
	input.action in district_actions
	input.action != "ledger.allocate"
	input.target.district == input.actor.organisation
}

permitted if {
	input.actor.role in {"district", "street_office"}
	input.action == "ledger.allocate"
	input.target.district == input.actor.district
	pays_from_own_account
	allocates_within_reach
}

# The district allocates anywhere in the district; a street office to its own communities.
allocates_within_reach if input.actor.role == "district"

allocates_within_reach if input.target.street == input.actor.organisation

# A street office acts only for its own street's communities, and only on its own tasks.
permitted if {
	input.actor.role == "street_office"
	input.action in delegating_actions
	input.target.street == input.actor.organisation
	delegated_by_actor
}

# A department delegates anywhere in its district, and only its own tasks.
permitted if {
	input.actor.role == "department"
	input.action in delegating_actions
	in_district
	delegated_by_actor
}

# A community acts only for itself.
permitted if {
	input.actor.role == "community"
	input.action in community_actions
	input.target.community == input.actor.organisation
}

# The district, its departments and its inspectors read everything in the district (an
# inspector writes nothing); a street office reads its street; a community reads its own.
permitted if {
	input.actor.role in {"district", "department", "inspector"}
	input.action in read_actions
	in_district
}

permitted if {
	input.actor.role == "street_office"
	input.action in read_actions
	input.target.street == input.actor.organisation
}

permitted if {
	input.actor.role == "community"
	input.action in read_actions
	input.target.community == input.actor.organisation
}

permitted if {
	input.actor.role in handling_roles
	input.action == "request.handle"
	input.target.handler == input.actor.organisation
}

permitted if {
	input.actor.role == "resident"
	input.action in resident_actions
	input.target.community == input.actor.organisation
	input.target.resident == input.actor.subject
}

reason := "" if allow

reason := sprintf("%s may not %s here", [input.actor.role, input.action]) if not allow
