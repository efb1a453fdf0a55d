use std::collections::BTreeSet;

use regorus::{Engine, Value};
use serde_json::json;

use super::*;
use crate::POLICIES;

/// Runs every `test_*` rule of every `*_test.rego` file in `policies/`, with coverage on, and
/// fails on any failing test or any line of the bundle that no test reaches.
#[test]
fn rego_unit_tests_pass_and_cover_every_rule_line() {
    let bundle = PolicyBundle::embedded();
    let mut engine = Engine::new();
    for (path, text) in bundle.files() {
        engine.add_policy(path.clone(), text.clone()).unwrap();
    }
    let mut test_rules = Vec::new();
    for file in test_files(&POLICIES) {
        let text = file.contents_utf8().unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let package = engine.add_policy(path.clone(), text.to_owned()).unwrap();
        let names: BTreeSet<&str> = text
            .lines()
            .filter(|line| line.starts_with("test_"))
            .map(|line| {
                line.split(|character: char| !(character.is_alphanumeric() || character == '_'))
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(!names.is_empty(), "{path} has no tests");
        test_rules.extend(names.into_iter().map(|name| format!("{package}.{name}")));
    }
    engine.set_enable_coverage(true);
    let failed: Vec<&String> = test_rules
        .iter()
        .filter(|rule| !matches!(engine.eval_rule((*rule).clone()), Ok(Value::Bool(true))))
        .collect();
    assert!(failed.is_empty(), "failing Rego tests: {failed:?}");
    assert!(test_rules.len() >= 15, "{} tests", test_rules.len());

    let report = engine.get_coverage_report().unwrap();
    let mut uncovered = Vec::new();
    for file in report.files.iter().filter(|file| bundle.files().contains_key(&file.path)) {
        for line in &file.not_covered {
            let text = file.code.lines().nth(*line as usize - 1).unwrap_or_default();
            uncovered.push(format!("{}:{line}: {}", file.path, text.trim()));
        }
    }
    assert!(uncovered.is_empty(), "bundle lines no Rego test covers:\n{}", uncovered.join("\n"));
}

fn test_files(directory: &'static include_dir::Dir<'static>) -> Vec<&'static include_dir::File<'static>> {
    let mut files = Vec::new();
    for entry in directory.entries() {
        match entry {
            include_dir::DirEntry::Dir(child) => files.extend(test_files(child)),
            include_dir::DirEntry::File(file) if file.path().to_string_lossy().ends_with("_test.rego") => {
                files.push(file)
            }
            include_dir::DirEntry::File(_) => {}
        }
    }
    files
}

fn matter() -> serde_json::Value {
    let mut matter = serde_json::to_value(
        crate::starting_catalogue().unwrap().into_iter().find(|matter| matter.code == "EMP-001").unwrap(),
    )
    .unwrap();
    matter["cost_standard"]["amount_fen"] = json!(3000);
    matter
}

#[test]
fn decides_from_rust_with_cited_clauses_and_computed_detail() {
    let policies = Policies::embedded().unwrap();
    let input = json!({
        "catalogue_version": 4,
        "matter": matter(),
        "proposal": {"matter_code": "EMP-001", "volume": 10, "funds_offered_fen": 12000,
                     "powers_granted": [], "working_conditions": ["service-counter"]},
    });
    let violations = policies.decide_access(&input).unwrap();
    let found: Vec<(&str, &str, &str)> =
        violations.iter().map(|v| (v.rule.as_str(), v.clause.as_str(), v.detail.as_str())).collect();
    assert_eq!(
        found,
        [
            ("R3-conditions", "plan:3.4.2-R3", "working condition `information-terminal` not provided"),
            ("R3-funds", "plan:3.4.2-R3", "funds 12000 fen < cost standard 30000 fen (3000 fen × 10 cases)"),
        ]
    );
    let admitted = json!({
        "catalogue_version": 4,
        "matter": matter(),
        "proposal": {"matter_code": "EMP-001", "volume": 10, "funds_offered_fen": 30000,
                     "powers_granted": [], "working_conditions": ["service-counter", "information-terminal"]},
    });
    assert_eq!(policies.decide_access(&admitted).unwrap(), vec![]);
}

#[test]
fn authorizes_by_role_and_place() {
    let policies = Policies::embedded().unwrap();
    let input = |street: &str| {
        json!({
            "actor": {"role": "street_office", "organisation": "s1", "kind": "street", "district": "d1"},
            "action": "mandate.propose",
            "target": {"district": "d1", "street": street, "community": "c1", "delegating_unit": "s1"},
        })
    };
    assert_eq!(
        policies.authorize(&input("s1")).unwrap(),
        AuthzDecision { allow: true, reason: String::new() }
    );
    let denied = policies.authorize(&input("s2")).unwrap();
    assert!(!denied.allow);
    assert_eq!(denied.reason, "street_office may not mandate.propose here");
    // Answers are remembered by input, and a clone shares them: the same questions give the
    // same answers, and different ones are not confused.
    let clone = policies.clone();
    for _ in 0..3 {
        assert!(clone.authorize(&input("s1")).unwrap().allow);
        assert_eq!(clone.authorize(&input("s2")).unwrap(), denied);
    }
}

#[test]
fn routes_requests_from_rust_and_names_the_clause_of_a_refusal() {
    let policies = Policies::embedded().unwrap();
    let community = uuid::Uuid::from_u128(1);
    let street = uuid::Uuid::from_u128(2);
    let input = |matter: serde_json::Value| {
        json!({
            "matter": matter,
            "station": {"community": community, "street": street, "district": uuid::Uuid::from_u128(3)},
            "mandates": [],
            "departments": {},
        })
    };
    let route =
        policies.route(&input(json!({"owner_level": "street", "nature": "entrustable"}))).unwrap().unwrap();
    assert_eq!((route.route.as_str(), route.handler), ("agent", Some(street)));
    assert_eq!(route.clause, "plan:3.2.2-ST");
    let refusal = policies.route(&input(serde_json::Value::Null)).unwrap().unwrap_err();
    assert_eq!((refusal.rule.as_str(), refusal.clause.as_str()), ("catalogue", "plan:5.1-C"));
    // Remembered by input, shared by clones, and not confused: a self-governance matter at the
    // same station is the community's, the refusal stays a refusal.
    let clone = policies.clone();
    for _ in 0..3 {
        let again = clone.route(&input(json!({"owner_level": "street", "nature": "entrustable"}))).unwrap();
        assert_eq!(again.unwrap(), route);
        let own = clone.route(&input(json!({"owner_level": "community", "nature": "self_governance"})));
        assert_eq!(own.unwrap().unwrap().route, "community");
        assert_eq!(clone.route(&input(serde_json::Value::Null)).unwrap().unwrap_err(), refusal);
    }
    // On recorded text, as the service asks: the same answers, remembered by the text.
    let fresh = Policies::embedded().unwrap();
    for _ in 0..2 {
        let recorded = RecordedInput::from(&input(json!({"owner_level": "street", "nature": "entrustable"})));
        assert_eq!(fresh.route_recorded(&recorded).unwrap().unwrap(), route);
        let refused = fresh.route_recorded(&RecordedInput::from(&input(serde_json::Value::Null))).unwrap();
        assert_eq!(refused.unwrap_err(), refusal);
    }
    let broken = serde_json::from_str::<RecordedInput>(r#""\ud800""#).unwrap();
    assert!(matches!(fresh.route_recorded(&broken), Err(PolicyError::Shape(_))));
}

#[test]
fn a_bundle_from_before_routing_still_loads_and_decides() {
    let embedded = PolicyBundle::embedded();
    let files = embedded
        .files()
        .iter()
        .filter(|(path, _)| !path.starts_with("routing/"))
        .map(|(path, text)| (path.clone(), text.clone()))
        .collect();
    let policies = Policies::new(PolicyBundle::from_files(files).unwrap()).unwrap();
    assert!(policies.decide_access(&json!({"catalogue_version": 1, "matter": null, "proposal": {}})).is_ok());
}

#[test]
fn a_broken_bundle_is_refused_at_load() {
    let files = std::collections::BTreeMap::from([(
        "access/access.rego".to_owned(),
        "package shequ.access\nviolations contains x if {".to_owned(),
    )]);
    let error = Policies::new(PolicyBundle::from_files(files).unwrap()).unwrap_err();
    assert!(matches!(error, PolicyError::Bundle(message) if message.starts_with("access/access.rego")));
}

/// The VM decides live and the interpreter is the reference (ADR 0014): on any matter and
/// proposal the types allow, both give the same violations.
mod vm_and_interpreter {
    use proptest::prelude::*;
    use shequ_domain::catalogue::{CostPer, Matter, MatterNature, OwnerLevel};
    use shequ_domain::mandate::Proposal;
    use shequ_domain::money::FEN_MAX;
    use shequ_domain::Fen;

    use super::*;

    const POWERS: [&str; 4] =
        ["collect-resident-data", "conduct-home-visit", "hold-case-files", "issue-notice"];
    const CONDITIONS: [&str; 4] =
        ["service-counter", "information-terminal", "dedicated-staff", "office-space"];

    fn some_of(names: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        proptest::sample::subsequence(names.to_vec(), 0..=names.len())
            .prop_map(|chosen| chosen.into_iter().map(str::to_owned).collect())
    }

    fn fen() -> impl Strategy<Value = Fen> {
        // Small sums, the edges, and sums whose product with a volume leaves i64.
        prop_oneof![0..100_000i64, Just(0), Just(FEN_MAX), 0..=FEN_MAX]
            .prop_map(|fen| Fen::try_from(fen).unwrap())
    }

    fn matter() -> impl Strategy<Value = Option<Matter>> {
        let base = crate::starting_catalogue().unwrap().into_iter().find(|m| m.code == "EMP-003").unwrap();
        let nature = prop_oneof![
            Just(MatterNature::GovernmentDuty),
            Just(MatterNature::LegalAssistance),
            Just(MatterNature::Entrustable),
            Just(MatterNature::SelfGovernance),
        ];
        let level = prop_oneof![
            Just(OwnerLevel::DistrictDepartment),
            Just(OwnerLevel::Street),
            Just(OwnerLevel::Community)
        ];
        let per = prop_oneof![Just(CostPer::Case), Just(CostPer::Month)];
        let matter = (nature, level, any::<bool>(), some_of(&POWERS), some_of(&CONDITIONS), fen(), per)
            .prop_map(
                move |(
                    nature,
                    owner_level,
                    handled_by_owner,
                    powers_required,
                    working_conditions,
                    amount_fen,
                    per,
                )| {
                    let mut matter = base.clone();
                    matter.nature = nature;
                    matter.owner_level = owner_level;
                    matter.handled_by_owner = handled_by_owner;
                    matter.powers_required = powers_required;
                    matter.working_conditions = working_conditions;
                    matter.cost_standard.amount_fen = amount_fen;
                    matter.cost_standard.per = per;
                    matter
                },
            );
        proptest::option::weighted(0.9, matter)
    }

    fn proposal() -> impl Strategy<Value = Proposal> {
        let volume = prop_oneof![0..50u32, Just(u32::MAX), any::<u32>()];
        (volume, fen(), some_of(&POWERS), some_of(&CONDITIONS)).prop_map(
            |(volume, funds_offered_fen, powers_granted, working_conditions)| Proposal {
                matter_code: "EMP-003".into(),
                delegating_unit: uuid::Uuid::from_u128(1),
                community: uuid::Uuid::from_u128(2),
                scope: "scope".into(),
                volume,
                deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
                funds_offered_fen,
                powers_granted,
                working_conditions,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn decide_alike(
            matter in matter(),
            proposal in proposal(),
            available in proptest::option::of(prop_oneof![0..200_000i64, any::<i64>()]),
            version in any::<u32>(),
        ) {
            static EMBEDDED: std::sync::OnceLock<Policies> = std::sync::OnceLock::new();
            let policies = EMBEDDED.get_or_init(|| Policies::embedded().unwrap());
            // Built as the service builds it (`Service::decide`).
            let mut input = json!({"catalogue_version": version, "matter": matter, "proposal": proposal});
            if let Some(available) = available {
                input["available_fen"] = json!(available);
            }
            // The shape the VM takes, or this would compare the interpreter with itself.
            prop_assert!(typed_input(&input), "{}", input);
            let on_vm = policies.decide_access(&input).unwrap();
            let interpreted = policies.decide_access_interpreted(&input).unwrap();
            prop_assert_eq!(&on_vm, &interpreted);
            // As the service decides it, from its types: alike, and recorded as this input.
            let typed = AccessInput {
                catalogue_version: u64::from(version), matter: matter.as_ref(), proposal: &proposal, available_fen: available,
            };
            let (recorded, violations) = policies.decide_access_input(&typed).unwrap();
            prop_assert_eq!(violations, on_vm);
            prop_assert_eq!(recorded.value().unwrap(), input);
        }
    }

    #[test]
    fn the_embedded_bundle_runs_on_the_vm_and_every_shipped_matter_decides_alike() {
        let policies = Policies::embedded().unwrap();
        assert!(policies.access_on_vm().is_ok(), "{:?}", policies.access_on_vm());
        let interpreter = policies.clone().on_interpreter();
        assert!(interpreter.access_on_vm().is_err());
        let mut fired = BTreeSet::new();
        for matter in crate::starting_catalogue().unwrap() {
            for (funds, powers, conditions) in [
                (0, vec![], vec![]),
                (1_000_000_000, matter.powers_required.clone(), matter.working_conditions.clone()),
            ] {
                let mut proposal = full_proposal(json!(conditions));
                proposal["matter_code"] = json!(matter.code);
                proposal["volume"] = json!(12);
                proposal["funds_offered_fen"] = json!(funds);
                proposal["powers_granted"] = json!(powers);
                let input = json!({
                    "catalogue_version": 3, "matter": matter, "proposal": proposal, "available_fen": 500_000,
                });
                assert!(typed_input(&input), "{input}");
                let on_vm = policies.decide_access(&input).unwrap();
                assert_eq!(on_vm, policies.decide_access_interpreted(&input).unwrap(), "{input}");
                assert_eq!(on_vm, interpreter.decide_access(&input).unwrap(), "{input}");
                fired.extend(on_vm.into_iter().map(|violation| violation.rule));
            }
        }
        let mut proposal = full_proposal(json!([]));
        proposal["matter_code"] = json!("NOPE-001");
        let unknown = json!({"catalogue_version": 3, "matter": null, "proposal": proposal});
        assert!(typed_input(&unknown));
        let refused = policies.decide_access(&unknown).unwrap();
        assert_eq!(refused, policies.decide_access_interpreted(&unknown).unwrap());
        fired.extend(refused.into_iter().map(|violation| violation.rule));
        // The comparison is worth something only if every rule fired somewhere.
        let every: BTreeSet<String> = [
            "catalogue",
            "R1",
            "R2",
            "R3-funds",
            "R3-conditions",
            "R4-power",
            "R4-funds",
            "self-governance",
            "funds-available",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(fired, every);
    }

    #[test]
    fn a_decision_too_long_to_run_fails_and_never_admits() {
        let policies = Policies::embedded().unwrap();
        let mut matter = matter_json();
        matter["nature"] = json!("legal_assistance");
        let conditions: Vec<String> = (0..400_000).map(|index| format!("c{index}")).collect();
        matter["working_conditions"] = json!(conditions);
        let input = json!({
            "catalogue_version": 1,
            "matter": matter,
            "proposal": full_proposal(json!([])),
        });
        assert!(typed_input(&input));
        let matter: Matter = serde_json::from_value(input["matter"].clone()).unwrap();
        let proposal: Proposal = serde_json::from_value(input["proposal"].clone()).unwrap();
        let typed = AccessInput {
            catalogue_version: 1,
            matter: Some(&matter),
            proposal: &proposal,
            available_fen: None,
        };
        assert!(matches!(policies.decide_access_input(&typed), Err(PolicyError::Evaluation(_))));
        let error = policies.decide_access(&input).unwrap_err();
        assert!(
            matches!(&error, PolicyError::Evaluation(message) if message.contains("instruction")),
            "{error}"
        );
    }

    fn matter_json() -> serde_json::Value {
        super::matter()
    }

    /// A proposal with every field the service records.
    fn full_proposal(working_conditions: serde_json::Value) -> serde_json::Value {
        json!({"matter_code": "EMP-001", "delegating_unit": uuid::Uuid::from_u128(1),
               "community": uuid::Uuid::from_u128(2), "scope": "scope", "volume": 1,
               "deadline": "2026-12-31", "funds_offered_fen": 3000, "powers_granted": [],
               "working_conditions": working_conditions})
    }

    /// The VM drops an error inside a rule body (the rule does not fire) where the interpreter
    /// fails, and strict mode would drop a comparison across types: inputs of another shape
    /// than the service's go to the interpreter, and both ways answer alike.
    #[test]
    fn inputs_of_another_shape_are_decided_as_the_interpreter_decides() {
        let policies = Policies::embedded().unwrap();
        let typed = json!({"catalogue_version": 1, "matter": matter_json(),
                           "proposal": full_proposal(json!(["service-counter"]))});
        assert!(typed_input(&typed));
        let mut odd = Vec::new();
        for (pointer, value) in [
            ("/available_fen", json!(null)),
            ("/available_fen", json!("1000")),
            ("/matter/cost_standard/amount_fen", json!("3000")),
            ("/proposal/volume", json!("1")),
            ("/proposal/funds_offered_fen", json!(null)),
            ("/catalogue_version", json!(-1)),
        ] {
            let mut input = typed.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            input.pointer_mut(parent).unwrap()[key] = value;
            assert!(!typed_input(&input), "{input}");
            odd.push(input);
        }
        let mut without_field = typed.clone();
        without_field["proposal"].as_object_mut().unwrap().remove("scope");
        odd.push(without_field);
        for input in odd {
            let on_vm_or_not = policies.decide_access(&input).map_err(|error| error.to_string());
            let interpreted = policies.decide_access_interpreted(&input).map_err(|error| error.to_string());
            assert_eq!(on_vm_or_not, interpreted, "{input}");
        }
        // `available_fen: null` is below any offer on the interpreter: the rule fires.
        let mut null_balance = typed.clone();
        null_balance["available_fen"] = json!(null);
        let rules: Vec<String> = policies
            .decide_access(&null_balance)
            .unwrap()
            .into_iter()
            .map(|violation| violation.rule)
            .collect();
        assert!(rules.contains(&"funds-available".to_owned()), "{rules:?}");
        // A string sum fails the decision, as on the interpreter; it never admits.
        let mut string_sum = typed;
        string_sum["matter"]["cost_standard"]["amount_fen"] = json!("3000");
        assert!(policies.decide_access(&string_sum).is_err());
    }

    #[test]
    fn only_the_shipped_bundle_runs_on_the_vm() {
        let mut files = PolicyBundle::embedded().files().clone();
        let access = files.get_mut("access/access.rego").unwrap();
        access.push_str("\n# the same rules, another text\n");
        let policies = Policies::new(PolicyBundle::from_files(files).unwrap()).unwrap();
        assert!(policies.access_on_vm().is_err());
    }
}
