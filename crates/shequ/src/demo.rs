//! The demo data set and scenario: a district with 2 departments, 3 streets and 12
//! communities, budgets, the shipped catalogue, and delegations that exercise every access
//! rule, a cured contest, an upheld one, a reassignment whose funds follow, and an escalation
//! by deadline. Everything goes through the same command path as the API.
//!
//! The scenario runs on a simulated clock that starts 30 days before now, so that a contest
//! deadline (15 days) can pass within it.

use std::sync::Arc;

use shequ_domain::catalogue::Matter;
use shequ_domain::ledger::Account;
use shequ_domain::mandate::{ContestGround, Cure, MandateStatus, Proposal, ReviewOutcome};
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::Fen;
use shequ_policy::Policies;
use shequ_store::EventLog;
use uuid::Uuid;

use shequ_service::{
    Actor, Allocation, CommandScope, MandateOutcome, ManualClock, NewOrganisation, Role, Service,
    ServiceError,
};

/// The namespace of the demo's ids: every demo id is a UUID v5 of a name in it, so the demo
/// data is the same in every database and recognisable.
pub const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x5e9c_0000_0000_5000_8000_5348_4551_5500);

/// How the demo's simulated clock starts, in days before now.
const SCENARIO_DAYS: i64 = 30;

pub fn demo_id(name: &str) -> Uuid {
    Uuid::new_v5(&DEMO_NAMESPACE, name.as_bytes())
}

/// The demo's organisations, by role, for tokens and tours.
#[derive(Debug, Clone)]
pub struct DemoPlaces {
    pub district: Uuid,
    /// (department, name, the catalogue's code for it)
    pub departments: Vec<(Uuid, String, String)>,
    pub streets: Vec<(Uuid, String)>,
    /// (community, its street, name)
    pub communities: Vec<(Uuid, Uuid, String)>,
}

#[derive(Debug)]
pub enum DemoOutcome {
    Loaded { summary: Vec<String>, places: DemoPlaces },
    AlreadyLoaded { places: DemoPlaces },
}

pub fn places() -> DemoPlaces {
    let departments = [
        ("civil-affairs", "东城区民政局", "civil_affairs"),
        ("human-resources", "东城区人力资源和社会保障局", "human_resources_social_security"),
    ];
    let streets = [("donghuamen", "东华门街道"), ("jingshan", "景山街道"), ("jiaodaokou", "交道口街道")];
    let communities = [
        ("donghuamen", ["多福巷社区", "韶九社区", "北池子社区", "南池子社区"]),
        ("jingshan", ["黄化门社区", "钟鼓社区", "三眼井社区", "吉祥社区"]),
        ("jiaodaokou", ["福祥社区", "菊儿社区", "府学社区", "交东社区"]),
    ];
    DemoPlaces {
        district: demo_id("district/dongcheng"),
        departments: departments
            .iter()
            .map(|(key, name, code)| {
                (demo_id(&format!("department/{key}")), (*name).to_owned(), (*code).to_owned())
            })
            .collect(),
        streets: streets
            .iter()
            .map(|(key, name)| (demo_id(&format!("street/{key}")), (*name).to_owned()))
            .collect(),
        communities: communities
            .iter()
            .flat_map(|(street, names)| {
                names.iter().enumerate().map(move |(index, name)| {
                    (
                        demo_id(&format!("community/{street}/{index}")),
                        demo_id(&format!("street/{street}")),
                        (*name).to_owned(),
                    )
                })
            })
            .collect(),
    }
}

/// Loads the demo into `log` once; a second call says it is already there.
pub async fn load(log: &EventLog, policies: &Policies) -> Result<DemoOutcome, ServiceError> {
    let places = places();
    let clock = ManualClock::new(chrono::Utc::now() - chrono::Duration::days(SCENARIO_DAYS));
    let service = Service::new(log.clone(), policies.clone(), Arc::new(clock.clone())).await?;
    if service.organisation(places.district).await.is_ok() {
        return Ok(DemoOutcome::AlreadyLoaded { places });
    }
    let mut summary = Vec::new();
    let scenario = Scenario { service: &service, clock: &clock, places: &places };
    scenario.organisations(&mut summary).await?;
    let matters = shequ_policy::starting_catalogue()?;
    let version = service.publish_catalogue_as_operator(matters.clone()).await?;
    summary.push(format!("Catalogue version {version}: {} matters published (plan:5.1-C).", matters.len()));
    scenario.budgets(&mut summary).await?;
    scenario.delegations(&matters, &mut summary).await?;
    scenario.contests(&matters, &mut summary).await?;
    scenario.books(&mut summary).await?;
    Ok(DemoOutcome::Loaded { summary, places })
}

struct Scenario<'a> {
    service: &'a Service,
    clock: &'a ManualClock,
    places: &'a DemoPlaces,
}

impl Scenario<'_> {
    async fn organisations(&self, summary: &mut Vec<String>) -> Result<(), ServiceError> {
        let service = self.service;
        let district = self.places.district;
        let register = |id, kind, name, parent, code| NewOrganisation { id, kind, name, parent, code };
        service
            .register_organisation_as_operator(register(
                district,
                OrganisationKind::District,
                "东城区",
                None,
                None,
            ))
            .await?;
        for (id, name, code) in &self.places.departments {
            let department = register(*id, OrganisationKind::Department, name, Some(district), Some(code));
            service.register_organisation_as_operator(department).await?;
        }
        for (id, name) in &self.places.streets {
            let street = register(*id, OrganisationKind::Street, name, Some(district), None);
            service.register_organisation_as_operator(street).await?;
        }
        for (id, street, name) in &self.places.communities {
            let community = register(*id, OrganisationKind::Community, name, Some(*street), None);
            service.register_organisation_as_operator(community).await?;
        }
        summary.push(format!(
            "District 东城区: {} departments, {} streets, {} communities.",
            self.places.departments.len(),
            self.places.streets.len(),
            self.places.communities.len()
        ));
        Ok(())
    }

    async fn budgets(&self, summary: &mut Vec<String>) -> Result<(), ServiceError> {
        let service = self.service;
        let district = self.places.district;
        let fen = |amount| Fen::parse(amount).expect("demo amounts are valid");
        service
            .allocate_as_operator(Allocation {
                transfer_id: demo_id("budget/district"),
                from: None,
                to: district,
                amount_fen: fen(10_000_000),
                memo: "2026 community service budget",
            })
            .await?;
        let district_scope = CommandScope::new(Actor { role: Role::District, organisation: district });
        let units = self
            .places
            .departments
            .iter()
            .map(|(id, _, _)| id)
            .chain(self.places.streets.iter().map(|(id, _)| id));
        for id in units {
            let transfer = demo_id(&format!("budget/{id}"));
            let allocation = Allocation {
                transfer_id: transfer,
                from: Some(district),
                to: *id,
                amount_fen: fen(1_000_000),
                memo: "annual allocation",
            };
            service.allocate(&district_scope, allocation).await?;
        }
        summary.push(
            "Budgets: 10,000,000 fen to the district; 1,000,000 fen to each department and street.".into(),
        );
        Ok(())
    }

    async fn delegations(&self, matters: &[Matter], summary: &mut Vec<String>) -> Result<(), ServiceError> {
        let (service, places, cast) = (self.service, self.places, Cast { places: self.places });
        let matter = |code: &str| shipped(matters, code);
        let (civil_affairs, human_resources) = (places.departments[0].0, places.departments[1].0);
        let (donghuamen, jingshan, jiaodaokou) =
            (places.streets[0].0, places.streets[1].0, places.streets[2].0);

        summary.push("Delegations:".into());
        // One refusal under each rule.
        let refusals = [
            (cast.street(donghuamen), full(&matter("SSV-006"), donghuamen, cast.community(0), 20)),
            (cast.department(civil_affairs), full(&matter("SSV-002"), civil_affairs, cast.community(1), 20)),
            (
                cast.street(donghuamen),
                with_funds(full(&matter("SSV-001"), donghuamen, cast.community(2), 20), 60_000),
            ),
            (
                cast.department(human_resources),
                without_power(
                    full(&matter("EMP-003"), human_resources, cast.community(4), 10),
                    "refer-to-provider",
                ),
            ),
            (cast.street(jingshan), unknown_matter(jingshan, cast.community(5))),
        ];
        for (actor, proposal) in refusals {
            let code = proposal.matter_code.clone();
            let outcome =
                service.propose(&actor, demo_id(&format!("mandate/refused/{code}")), proposal).await?;
            self.line(summary, &code, &outcome);
        }

        // Admitted, accepted, active; some money spent.
        let employment = demo_id("mandate/EMP-001");
        let proposal = full(&matter("EMP-001"), human_resources, cast.community(0), 30);
        self.delegated(&cast.department(human_resources), employment, proposal, summary).await?;
        let spent = Fen::parse(27_000).expect("valid");
        service
            .spend(
                &cast.in_community(0),
                employment,
                demo_id("spend/EMP-001/1"),
                spent,
                "9 registrations assisted",
            )
            .await?;
        summary.push(
            "  EMP-001 accepted by 多福巷社区: funds posted, mandate active; 27,000 fen spent on 9 cases."
                .into(),
        );

        let rehabilitation = demo_id("mandate/SSV-007");
        let proposal = full(&matter("SSV-007"), civil_affairs, cast.community(4), 10);
        self.delegated(&cast.department(civil_affairs), rehabilitation, proposal, summary).await?;

        // A reassignment whose funds follow the task.
        let rentals = demo_id("mandate/SAF-001");
        let proposal = full(&matter("SAF-001"), jiaodaokou, cast.community(8), 20);
        self.delegated(&cast.street(jiaodaokou), rentals, proposal, summary).await?;
        service.reassign(&cast.street(jiaodaokou), rentals, cast.community(9)).await?;
        let ledger = service.ledger(places.district).await?;
        let moved = ledger.balance(Account::Mandate { mandate: rentals, community: cast.community(9) });
        summary.push(format!(
            "  SAF-001 reassigned from 福祥社区 to 菊儿社区: its {moved} fen and its powers moved with it."
        ));
        Ok(())
    }

    /// Contests: one cured, one upheld, one escalated by its deadline.
    async fn contests(&self, matters: &[Matter], summary: &mut Vec<String>) -> Result<(), ServiceError> {
        let (service, places, cast) = (self.service, self.places, Cast { places: self.places });
        let matter = |code: &str| shipped(matters, code);
        let civil_affairs = places.departments[0].0;
        let (donghuamen, jingshan) = (places.streets[0].0, places.streets[1].0);

        summary.push("Contests:".into());
        // A task phoned in without money: recorded outside the process, contested, cured.
        let registration = demo_id("mandate/FLP-001");
        let mut phoned = full(&matter("FLP-001"), jingshan, cast.community(5), 50);
        phoned.funds_offered_fen = Fen::ZERO;
        phoned.working_conditions.clear();
        let statement = "The street office phoned on Monday: register all floating residents by month end, no budget given.";
        let outcome =
            service.record_outside_process(&cast.in_community(5), registration, phoned, statement).await?;
        let mut cited: Vec<String> =
            outcome.violations.iter().map(|v| format!("{} ({})", v.detail, v.clause)).collect();
        cited.dedup();
        summary.push(format!(
            "  钟鼓社区 recorded FLP-001 (reached it by phone) and contested it: {}.",
            cited.join("; ")
        ));
        self.clock.advance(chrono::Duration::days(3));
        let cure = Cure {
            funds_added_fen: Fen::parse(100_000).expect("valid"),
            powers_added: vec![],
            working_conditions_added: vec!["service-counter".into(), "information-terminal".into()],
        };
        let outcome = service.cure(&cast.street(jingshan), registration, cure).await?;
        summary.push(format!(
            "  景山街道 cured it with 100,000 fen and the working conditions: {:?}.",
            outcome.status
        ));
        service.accept(&cast.in_community(5), registration).await?;

        // A contest upheld by the district: withdrawn, funds returned.
        let records = demo_id("mandate/MED-001");
        let proposal = full(&matter("MED-001"), civil_affairs, cast.community(6), 40);
        let ground =
            (ContestGround::ClassificationDisputed, "Health records are the health centre's own duty.");
        self.contested(&cast.department(civil_affairs), records, proposal, 6, ground).await?;
        let outcome = service
            .review(&cast.district(), records, ReviewOutcome::Uphold, "Classification dispute upheld")
            .await?;
        summary.push(format!(
            "  三眼井社区 contested MED-001; the district upheld it: {:?}, 100,000 fen back to 民政局.",
            outcome.status
        ));

        // A contest nobody answers: escalates to the district by itself after 15 days.
        let screening = demo_id("mandate/PMD-002");
        let proposal = full(&matter("PMD-002"), donghuamen, cast.community(2), 10);
        let ground = (ContestGround::CaseloadOutgrewFunding, "Disputes tripled since the task was funded.");
        self.contested(&cast.street(donghuamen), screening, proposal, 2, ground).await?;
        self.clock.advance(chrono::Duration::days(16));
        let escalated = service.escalate_due().await?;
        assert_status(service, screening, MandateStatus::Contested).await?;
        summary.push(format!("  北池子社区 contested PMD-002; unanswered for 16 days, {} contest(s) escalated to the district.", escalated.len()));
        Ok(())
    }

    /// `unit` proposes `mandate` (its line goes in the summary), and the community the proposal
    /// names accepts it.
    async fn delegated(
        &self,
        unit: &CommandScope,
        mandate: Uuid,
        proposal: Proposal,
        summary: &mut Vec<String>,
    ) -> Result<(), ServiceError> {
        let (code, community) = (proposal.matter_code.clone(), proposal.community);
        let outcome = self.service.propose(unit, mandate, proposal).await?;
        self.line(summary, &code, &outcome);
        let accepting = CommandScope::new(Actor { role: Role::Community, organisation: community });
        self.service.accept(&accepting, mandate).await?;
        Ok(())
    }

    /// `unit` proposes `mandate`, and community number `community` contests it on `ground`.
    async fn contested(
        &self,
        unit: &CommandScope,
        mandate: Uuid,
        proposal: Proposal,
        community: usize,
        (ground, statement): (ContestGround, &str),
    ) -> Result<(), ServiceError> {
        self.service.propose(unit, mandate, proposal).await?;
        let cast = Cast { places: self.places };
        self.service.contest(&cast.in_community(community), mandate, vec![ground], statement).await?;
        Ok(())
    }

    fn line(&self, summary: &mut Vec<String>, code: &str, outcome: &MandateOutcome) {
        match outcome.violations.is_empty() {
            true => summary.push(format!("  admitted {code}: {:?}", outcome.status)),
            false => {
                for violation in &outcome.violations {
                    summary.push(format!(
                        "  refused  {code}: {} {} — {} ({})",
                        violation.rule, violation.clause, violation.message, violation.detail
                    ));
                }
            }
        }
    }

    async fn books(&self, summary: &mut Vec<String>) -> Result<(), ServiceError> {
        let ledger = self.service.ledger(self.places.district).await?;
        let total: i64 = ledger.balances.values().sum();
        let overdrawn =
            ledger.balances.iter().filter(|(account, balance)| account.is_holding() && **balance < 0).count();
        summary.push(format!(
            "Ledger: {} transfers; balances sum to {total} fen (debits = credits); {overdrawn} accounts below zero.",
            ledger.transfers.len()
        ));
        let report = self.service.log().verify(|_| {}).await?;
        match report.failure {
            None => summary.push(format!("Chain: ok, {} events, hash chain intact.", report.events)),
            Some(failure) => {
                summary.push(format!("Chain: FAILED at position {}: {}", failure.position, failure.reason))
            }
        }
        Ok(())
    }
}

/// Who acts in the scenario, by place.
struct Cast<'a> {
    places: &'a DemoPlaces,
}

impl Cast<'_> {
    fn community(&self, index: usize) -> Uuid {
        self.places.communities[index].0
    }

    fn department(&self, id: Uuid) -> CommandScope {
        CommandScope::new(Actor { role: Role::Department, organisation: id })
    }

    fn street(&self, id: Uuid) -> CommandScope {
        CommandScope::new(Actor { role: Role::StreetOffice, organisation: id })
    }

    fn in_community(&self, index: usize) -> CommandScope {
        CommandScope::new(Actor { role: Role::Community, organisation: self.community(index) })
    }

    fn district(&self) -> CommandScope {
        CommandScope::new(Actor { role: Role::District, organisation: self.places.district })
    }
}

/// The shipped matter of `code`.
fn shipped(matters: &[Matter], code: &str) -> Matter {
    matters.iter().find(|matter| matter.code == code).cloned().expect("the demo's matters are shipped")
}

async fn assert_status(service: &Service, mandate: Uuid, status: MandateStatus) -> Result<(), ServiceError> {
    let found = service.mandate(mandate).await?.status;
    match found == status {
        true => Ok(()),
        false => {
            Err(ServiceError::Invalid(format!("demo mandate {mandate} is {found:?}, expected {status:?}")))
        }
    }
}

/// A proposal that meets every rule the matter's nature asks for.
fn full(matter: &Matter, delegating_unit: Uuid, community: Uuid, volume: u32) -> Proposal {
    Proposal {
        matter_code: matter.code.clone(),
        delegating_unit,
        community,
        scope: format!("{} ({})", matter.name, matter.name_en),
        volume,
        deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
        funds_offered_fen: matter.cost_standard.amount_fen.checked_mul(volume).expect("demo costs are small"),
        powers_granted: matter.powers_required.clone(),
        working_conditions: matter.working_conditions.clone(),
    }
}

fn with_funds(mut proposal: Proposal, fen: i64) -> Proposal {
    proposal.funds_offered_fen = Fen::parse(fen).expect("valid");
    proposal
}

fn without_power(mut proposal: Proposal, power: &str) -> Proposal {
    proposal.powers_granted.retain(|granted| granted != power);
    proposal
}

fn unknown_matter(delegating_unit: Uuid, community: Uuid) -> Proposal {
    Proposal {
        matter_code: "XYZ-999".into(),
        delegating_unit,
        community,
        scope: "Collect residents' opinions on the new parking rules".into(),
        volume: 1,
        deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
        funds_offered_fen: Fen::ZERO,
        powers_granted: vec![],
        working_conditions: vec![],
    }
}
