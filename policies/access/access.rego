# The access system for community public-service matters (plan:3.4.2-A).
#
# Decides whether a task may be delegated to a community: a proposal by a street office or a
# district department, a task a community recorded as having reached it outside the access
# process, a cure of a contested mandate, or a reassignment. The decision is the set of
# `violations`; an empty set admits.
#
# Input (built by shequ from the log; recorded with the decision so it can be re-run):
#   catalogue_version   the catalogue stream's version the decision used
#   matter              the live catalogue entry for proposal.matter_code, or null
#   proposal            matter_code, volume, funds_offered_fen, powers_granted, working_conditions
#   available_fen       what the delegating unit can pay from (its balance, plus what it has
#                       already reserved for this mandate); absent where no funds move
package shequ.access

import rego.v1

matter := input.matter

proposal := input.proposal

# What the task costs at the catalogue's standard: cost per case (or month) × volume.
required_fen := matter.cost_standard.amount_fen * proposal.volume

cost_detail := sprintf(
	"funds %d fen < cost standard %d fen (%d fen × %d %s)",
	[proposal.funds_offered_fen, required_fen, matter.cost_standard.amount_fen, proposal.volume, units],
)

units := "cases" if matter.cost_standard.per == "case"

units := "months" if matter.cost_standard.per == "month"

# plan:3.4.2-A, plan:5.1-C: a matter enters a community only through the catalogue.
violations contains {
	"rule": "catalogue",
	"clause": "plan:3.4.2-A",
	"message": sprintf("matter %s is not in the current catalogue", [proposal.matter_code]),
	"detail": sprintf("catalogue version %d has no live matter %s", [input.catalogue_version, proposal.matter_code]),
} if {
	matter == null
}

# plan:3.4.2-R1: what the district or the street can handle is not pushed down.
violations contains {
	"rule": "R1",
	"clause": "plan:3.4.2-R1",
	"message": sprintf("%s (%s) can be handled at %s level and is not pushed down to the community", [matter.code, matter.name, level_name[matter.owner_level]]),
	"detail": sprintf("catalogue: owner %s, handled by owner", [matter.owner_level]),
} if {
	matter.handled_by_owner
}

level_name := {
	"district_department": "district department",
	"street": "street",
	"community": "community",
}

# plan:3.4.2-R2: government's own duties are never shifted onto the community.
violations contains {
	"rule": "R2",
	"clause": "plan:3.4.2-R2",
	"message": sprintf("%s (%s) is a duty of government and must not be shifted onto the community", [matter.code, matter.name]),
	"detail": sprintf("catalogue: nature government_duty; legal basis %s", [matter.legal_basis]),
} if {
	matter.nature == "government_duty"
}

# plan:3.4.2-R3: a matter the community assists with by law comes with its funds...
violations contains {
	"rule": "R3-funds",
	"clause": "plan:3.4.2-R3",
	"message": sprintf("%s needs the necessary funds: the offer does not cover the cost standard", [matter.code]),
	"detail": cost_detail,
} if {
	matter.nature == "legal_assistance"
	proposal.funds_offered_fen < required_fen
}

# ...and its working conditions.
violations contains {
	"rule": "R3-conditions",
	"clause": "plan:3.4.2-R3",
	"message": sprintf("%s needs the necessary working conditions", [matter.code]),
	"detail": sprintf("working condition `%s` not provided", [condition]),
} if {
	matter.nature == "legal_assistance"
	some condition in matter.working_conditions
	not condition in proposal.working_conditions
}

# plan:3.4.2-R4: an entrusted matter comes with its authority...
violations contains {
	"rule": "R4-power",
	"clause": "plan:3.4.2-R4",
	"message": sprintf("%s is entrusted without the authority it needs (rights follow duties)", [matter.code]),
	"detail": sprintf("power `%s` not granted", [power]),
} if {
	matter.nature == "entrustable"
	some power in matter.powers_required
	not power in proposal.powers_granted
}

# ...and its full funds (plan:5.2-F: transferred by the entrusting unit).
violations contains {
	"rule": "R4-funds",
	"clause": "plan:3.4.2-R4",
	"message": sprintf("%s is entrusted without its full funds (funds follow tasks)", [matter.code]),
	"detail": cost_detail,
} if {
	matter.nature == "entrustable"
	proposal.funds_offered_fen < required_fen
}

# The residents' own affairs are theirs to decide, not a task to delegate.
violations contains {
	"rule": "self-governance",
	"clause": "plan:3.4.2-A",
	"message": sprintf("%s (%s) is the residents' own affair, not a task to delegate", [matter.code, matter.name]),
	"detail": "catalogue: nature self_governance",
} if {
	matter.nature == "self_governance"
}

# plan:5.2-F: the entrusting unit transfers the funds, so it must hold them: no overdraft.
violations contains {
	"rule": "funds-available",
	"clause": "plan:5.2-F",
	"message": "the delegating unit's account cannot cover the funds it offers",
	"detail": sprintf("account holds %d fen < %d fen offered", [input.available_fen, proposal.funds_offered_fen]),
} if {
	proposal.funds_offered_fen > input.available_fen
}
