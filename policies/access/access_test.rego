package shequ.access_test

import rego.v1

import data.shequ.access

home_visits := {
	"code": "SSV-003",
	"name": "低保家庭入户调查协助",
	"nature": "legal_assistance",
	"owner_level": "district_department",
	"handled_by_owner": false,
	"powers_required": ["conduct-home-visit"],
	"working_conditions": ["service-counter", "dedicated-staff"],
	"cost_standard": {"amount_fen": 3000, "per": "case"},
	"legal_basis": "《城市居民最低生活保障条例》",
}

good := {
	"matter_code": "SSV-003",
	"volume": 10,
	"funds_offered_fen": 30000,
	"powers_granted": ["conduct-home-visit"],
	"working_conditions": ["service-counter", "dedicated-staff"],
}

decide(matter, proposal) := violations if {
	violations := access.violations with input as {"catalogue_version": 7, "matter": matter, "proposal": proposal}
}

rules(violations) := {v.rule | some v in violations}

test_a_funded_legal_assistance_matter_is_admitted if {
	count(decide(home_visits, good)) == 0
}

test_a_matter_outside_the_catalogue_is_refused if {
	violations := decide(null, object.union(good, {"matter_code": "XYZ-999"}))
	rules(violations) == {"catalogue"}
	some v in violations
	v.clause == "plan:3.4.2-A"
	v.detail == "catalogue version 7 has no live matter XYZ-999"
}

test_r1_what_the_owner_handles_is_not_pushed_down if {
	certificate := object.union(home_visits, {"nature": "entrustable", "handled_by_owner": true, "owner_level": "street"})
	violations := decide(certificate, good)
	rules(violations) == {"R1"}
	some v in violations
	v.message == "SSV-003 (低保家庭入户调查协助) can be handled at street level and is not pushed down to the community"
}

test_r2_a_government_duty_is_never_shifted if {
	duty := object.union(home_visits, {"nature": "government_duty"})
	rules(decide(duty, good)) == {"R2"}
}

test_r3_funds_below_the_cost_standard_are_refused_with_the_figures if {
	violations := decide(home_visits, object.union(good, {"funds_offered_fen": 12000}))
	rules(violations) == {"R3-funds"}
	some v in violations
	v.clause == "plan:3.4.2-R3"
	v.detail == "funds 12000 fen < cost standard 30000 fen (3000 fen × 10 cases)"
}

test_r3_each_missing_working_condition_is_named if {
	violations := decide(home_visits, object.union(good, {"working_conditions": []}))
	{v.detail | some v in violations} == {
		"working condition `service-counter` not provided",
		"working condition `dedicated-staff` not provided",
	}
}

test_r4_each_missing_power_is_named if {
	entrusted := object.union(home_visits, {"nature": "entrustable"})
	violations := decide(entrusted, object.union(good, {"powers_granted": []}))
	{v.detail | some v in violations} == {"power `conduct-home-visit` not granted"}
}

test_r4_full_funds_per_month if {
	monthly := object.union(home_visits, {"nature": "entrustable", "cost_standard": {"amount_fen": 50000, "per": "month"}})
	violations := decide(monthly, object.union(good, {"volume": 12, "funds_offered_fen": 500000}))
	{v.detail | some v in violations} == {"funds 500000 fen < cost standard 600000 fen (50000 fen × 12 months)"}
	count(decide(monthly, object.union(good, {"volume": 12, "funds_offered_fen": 600000}))) == 0
}

test_self_governance_is_not_delegated if {
	own := object.union(home_visits, {"nature": "self_governance", "owner_level": "community"})
	rules(decide(own, good)) == {"self-governance"}
}

test_several_rules_at_once if {
	duty := object.union(home_visits, {"nature": "government_duty", "handled_by_owner": true})
	rules(decide(duty, good)) == {"R1", "R2"}
}

test_funds_must_be_available_to_the_delegating_unit if {
	input_with_balance := {"catalogue_version": 7, "matter": home_visits, "proposal": good, "available_fen": 29999}
	violations := access.violations with input as input_with_balance
	{v.detail | some v in violations} == {"account holds 29999 fen < 30000 fen offered"}
	count(access.violations) == 0 with input as object.union(input_with_balance, {"available_fen": 30000})
}
