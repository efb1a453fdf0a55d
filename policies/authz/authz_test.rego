package shequ.authz_test

import rego.v1

import data.shequ.authz

district := "d1"

street := "s1"

other_street := "s2"

community := "c1"

check(actor, action, target) if {
	authz.allow with input as {"actor": actor, "action": action, "target": target}
}

street_office := {"role": "street_office", "organisation": street, "kind": "street", "district": district}

in_street := {"district": district, "street": street, "community": community, "delegating_unit": street, "from": street}

test_a_street_office_delegates_to_its_own_communities if {
	check(street_office, "mandate.propose", in_street)
	check(street_office, "ledger.allocate", in_street)
}

test_a_street_office_cannot_reach_another_street if {
	not check(street_office, "mandate.propose", object.union(in_street, {"street": other_street}))
	authz.reason == "street_office may not mandate.propose here" with input as {"actor": street_office, "action": "mandate.propose", "target": object.union(in_street, {"street": other_street})}
}

test_a_street_office_reads_the_money_of_its_street_only if {
	check(street_office, "read.ledger", {"district": district, "street": street})
	check(street_office, "read.ledger", {"district": district, "street": street, "community": community})
	not check(street_office, "read.ledger", {"district": district, "street": other_street})
	not check(street_office, "read.ledger", {"district": district})
}

test_a_community_reads_its_own_money_only if {
	worker := {"role": "community", "organisation": community, "kind": "community", "district": district}
	check(worker, "read.ledger", {"district": district, "street": street, "community": community})
	not check(worker, "read.ledger", {"district": district, "street": street, "community": "c2"})
	not check(worker, "read.ledger", {"district": district, "street": street})
}

test_a_street_office_cures_only_its_own_tasks if {
	not check(street_office, "mandate.cure", object.union(in_street, {"delegating_unit": "dep1"}))
	check(street_office, "mandate.cure", in_street)
	authz.reason == "" with input as {"actor": street_office, "action": "mandate.cure", "target": in_street}
}

test_a_department_delegates_within_its_district if {
	department := {"role": "department", "organisation": "dep1", "kind": "department", "district": district}
	check(department, "mandate.propose", object.union(in_street, {"delegating_unit": "dep1"}))
	check(department, "mandate.withdraw", object.union(in_street, {"delegating_unit": "dep1"}))
	not check(department, "mandate.withdraw", in_street)
	not check(department, "mandate.propose", object.union(in_street, {"district": "d2"}))
}

test_a_community_acts_only_for_itself if {
	own := {"role": "community", "organisation": community, "kind": "community", "district": district}
	check(own, "mandate.contest", in_street)
	check(own, "mandate.record_outside_process", in_street)
	not check(own, "mandate.propose", in_street)
	not check({"role": "community", "organisation": "c2", "kind": "community", "district": district}, "mandate.accept", in_street)
}

test_an_inspector_reads_its_district_and_writes_nothing if {
	inspector := {"role": "inspector", "organisation": district, "kind": "district", "district": district}
	check(inspector, "read.audit", in_street)
	not check(inspector, "read.audit", object.union(in_street, {"district": "d2"}))
	not check(inspector, "mandate.propose", in_street)
	not check(inspector, "contest.review", in_street)
}

test_the_district_reviews_contests_in_its_district if {
	district_government := {"role": "district", "organisation": district, "kind": "district", "district": district}
	check(district_government, "contest.review", in_street)
	not check(district_government, "contest.review", object.union(in_street, {"district": "d2"}))
}

test_a_resident_does_nothing_here if {
	not check({"role": "resident", "organisation": community, "kind": "community", "district": district}, "read.state", in_street)
}

test_a_role_needs_an_organisation_of_its_kind if {
	posing := {"role": "department", "organisation": community, "kind": "community", "district": district}
	not check(posing, "mandate.propose", object.union(in_street, {"delegating_unit": community}))
	posing_street := {"role": "street_office", "organisation": "dep1", "kind": "department", "district": district}
	not check(posing_street, "mandate.propose", object.union(in_street, {"street": "dep1"}))
}

test_reading_follows_place if {
	check(street_office, "read.mandate", in_street)
	not check(street_office, "read.mandate", object.union(in_street, {"street": other_street}))
	own := {"role": "community", "organisation": community, "kind": "community", "district": district}
	check(own, "read.mandate", in_street)
	not check(own, "read.mandate", object.union(in_street, {"community": "c2"}))
}

test_budget_moves_only_out_of_the_actors_own_account if {
	not check(street_office, "ledger.allocate", object.union(in_street, {"from": "s9"}))
	district_government := {"role": "district", "organisation": district, "kind": "district", "district": district}
	check(district_government, "ledger.allocate", object.remove(object.union(in_street, {"from": district}), ["from"]))
	check(district_government, "ledger.allocate", object.union(in_street, {"from": district}))
	not check(street_office, "ledger.allocate", object.remove(in_street, ["from"]))
}

test_a_unit_proposes_only_in_its_own_name if {
	not check(street_office, "mandate.propose", object.union(in_street, {"delegating_unit": "dep1"}))
}

resident := {"role": "resident", "organisation": community, "kind": "community", "district": district, "subject": "r1"}

own_request := {"district": district, "street": street, "community": community, "handler": community, "resident": "r1"}

test_a_resident_files_reads_and_rates_only_their_own_requests if {
	check(resident, "request.file", own_request)
	check(resident, "read.request", own_request)
	check(resident, "request.rate", own_request)
	not check(resident, "read.request", object.union(own_request, {"resident": "r2"}))
	not check(resident, "request.file", object.union(own_request, {"community": "c2"}))
	not check(resident, "request.handle", own_request)
}

test_whoever_holds_a_request_works_it if {
	community_worker := {"role": "community", "organisation": community, "kind": "community", "district": district}
	check(community_worker, "request.handle", own_request)
	check(street_office, "request.handle", object.union(own_request, {"handler": street}))
	not check(street_office, "request.handle", own_request)
	inspector := {"role": "inspector", "organisation": district, "kind": "district", "district": district}
	not check(inspector, "request.handle", object.union(own_request, {"handler": district}))
	check(inspector, "read.request", own_request)
}
