package shequ.routing_test

import rego.v1

import data.shequ.routing

station := {"community": "c1", "street": "s1", "district": "d1"}

departments := {"civil_affairs": "dep1"}

matter(owner_level, nature, department) := {
	"code": "X-001",
	"owner_level": owner_level,
	"nature": nature,
	"owner_department": department,
}

mandate(status, offered, posted) := {
	"mandate": "m1",
	"status": status,
	"funds_offered_fen": offered,
	"funds_posted_fen": posted,
	"delegating_unit": "s1",
}

route_of(the_matter, mandates) := route if {
	route := routing.route with input as {
		"matter": the_matter, "station": station, "mandates": mandates, "departments": departments,
	}
}

test_an_active_funded_mandate_keeps_it_in_the_community if {
	route := route_of(matter("street", "entrustable", null), [mandate("active", 100, 100)])
	route.route == "community"
	route.mandate == "m1"
	route.clause == "plan:3.4.2-R4"
}

test_an_underfunded_mandate_does_not_count if {
	route := route_of(matter("street", "entrustable", null), [mandate("active", 100, 50)])
	route.route == "agent"
	route.handler == "s1"
}

test_a_contested_mandate_sends_it_back_to_the_delegating_unit if {
	route := route_of(matter("street", "entrustable", null), [mandate("contested", 100, 100)])
	route.route == "delegating_unit"
	route.handler == "s1"
}

test_the_station_forwards_to_the_owning_department if {
	route := route_of(matter("district_department", "legal_assistance", "civil_affairs"), [])
	route.route == "agent"
	route.handler == "dep1"
	route.clause == "plan:3.2.2-ST"
}

test_an_unregistered_department_means_the_district if {
	route := route_of(matter("district_department", "legal_assistance", "justice"), [])
	route.handler == "d1"
}

test_self_governance_and_community_matters_stay_home if {
	route_of(matter("district_department", "self_governance", null), []).route == "community"
	route_of(matter("community", "entrustable", null), []).handler == "c1"
}

test_a_matter_outside_the_catalogue_is_refused if {
	routing.refusal.clause == "plan:5.1-C" with input as {"matter": null, "station": station, "mandates": [], "departments": {}}
	not routing.route with input as {"matter": null, "station": station, "mandates": [], "departments": {}}
}
