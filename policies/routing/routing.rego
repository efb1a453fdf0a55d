# Where a service request filed at a community service station goes (plan:3.2.2-ST,
# plan:3.4.2-R5): the community handles it when it holds an active, funded mandate for the
# matter, or when the matter is the residents' own affair; a request on a mandate suspended
# by a contest goes back to the unit that delegated it; otherwise the station acts as agent
# (代办代理) and forwards it to the owner of the matter.
#
# Input (built by shequ from the catalogue and the live projections):
#   matter      the catalogue entry, or null when the code is not in the catalogue
#   station     {community, street, district}: the station's community and its place
#   mandates    the community's mandates for this matter that are not over:
#               [{mandate, status, funds_offered_fen, funds_posted_fen, delegating_unit}]
#   departments {code: id}: the district's departments by catalogue code
package shequ.routing

import rego.v1

# A request for a matter outside the catalogue is not taken (plan:5.1-C).
refusal := {
	"rule": "catalogue",
	"clause": "plan:5.1-C",
	"message": "the matter is not in the community public service catalogue",
	"detail": "no live catalogue entry for this code",
} if {
	input.matter == null
}

funded(mandate) if {
	mandate.status == "active"
	mandate.funds_posted_fen >= mandate.funds_offered_fen
}

live_mandates := [mandate | some mandate in input.mandates; funded(mandate)]

contested_mandates := [mandate | some mandate in input.mandates; mandate.status == "contested"]

self_governance if input.matter.nature == "self_governance"

community_owned if input.matter.owner_level == "community"

default owner := null

owner := input.station.street if input.matter.owner_level == "street"

owner := input.departments[input.matter.owner_department] if input.matter.owner_level == "district_department"

# A department-owned matter whose department is not registered goes to the district.
owner := input.station.district if {
	input.matter.owner_level == "district_department"
	not input.departments[input.matter.owner_department]
}

route := {
	"route": "community",
	"handler": input.station.community,
	"mandate": null,
	"reason": "a matter of the residents' own affairs: the community handles it",
	"clause": "plan:3.2.2-ST",
} if {
	not refusal
	self_governance
}

route := {
	"route": "community",
	"handler": input.station.community,
	"mandate": null,
	"reason": "a community-level matter: the community handles it",
	"clause": "plan:3.2.2-ST",
} if {
	not refusal
	not self_governance
	community_owned
}

route := {
	"route": "community",
	"handler": input.station.community,
	"mandate": live_mandates[0].mandate,
	"reason": "the community holds an active, funded mandate for this matter",
	"clause": "plan:3.4.2-R4",
} if {
	not refusal
	not self_governance
	not community_owned
	count(live_mandates) > 0
}

route := {
	"route": "delegating_unit",
	"handler": contested_mandates[0].delegating_unit,
	"mandate": contested_mandates[0].mandate,
	"reason": "the community's mandate for this matter is suspended by a contest: back to the unit that delegated it",
	"clause": "plan:3.4.2-A",
} if {
	not refusal
	not self_governance
	not community_owned
	count(live_mandates) == 0
	count(contested_mandates) > 0
}

route := {
	"route": "agent",
	"handler": owner,
	"mandate": null,
	"reason": "no live mandate: the station acts as agent (代办代理) and forwards it to the owner",
	"clause": "plan:3.2.2-ST",
} if {
	not refusal
	not self_governance
	not community_owned
	count(live_mandates) == 0
	count(contested_mandates) == 0
}
