//! Policy decision latency: one proposal with every access rule evaluated, alone (on regorus's
//! bytecode VM, as decided live, and on its interpreter, the reference) and through the whole
//! command path (authorise, look up the
//! catalogue and the balance, decide, record, reserve).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shequ::demo::{self, DemoOutcome};
use shequ_policy::Policies;
use shequ_service::{Actor, CommandScope, Role, Service, SystemClock};
use shequ_store::EventLog;
use uuid::Uuid;

use crate::DecideArguments;

pub async fn run(arguments: DecideArguments) -> Result<(), Box<dyn std::error::Error>> {
    let policies = Policies::embedded()?;
    let matter = shequ_policy::starting_catalogue()?
        .into_iter()
        .find(|matter| matter.code == "EMP-003")
        .ok_or("EMP-003")?;
    // An entrustable matter whose proposal breaks R4 twice and funds-available once, so that
    // every rule is evaluated and several fire.
    let input = serde_json::json!({
        "catalogue_version": 68,
        "matter": matter,
        "proposal": {"matter_code": "EMP-003", "delegating_unit": Uuid::nil(), "community": Uuid::nil(),
                     "scope": "x", "volume": 10, "deadline": "2026-12-31", "funds_offered_fen": 60000,
                     "powers_granted": ["conduct-home-visit"], "working_conditions": ["dedicated-staff"]},
        "available_fen": 50000,
    });
    let violations = policies.decide_access(&input)?;
    println!("# policy decision latency ({} violations per decision)\n", violations.len());
    for _ in 0..arguments.decisions {
        policies.decide_access(&input)?;
    }
    let mut alone = Vec::with_capacity(arguments.decisions);
    for _ in 0..arguments.decisions {
        let started = Instant::now();
        let decided = policies.decide_access(&input)?;
        alone.push(started.elapsed());
        assert_eq!(decided.len(), violations.len());
    }
    // The same matter fully provided for: every rule evaluated, none fires.
    let mut admitting = input.clone();
    admitting["proposal"]["funds_offered_fen"] = serde_json::json!(80000);
    admitting["proposal"]["powers_granted"] =
        serde_json::json!(["conduct-home-visit", "hold-case-files", "refer-to-provider"]);
    admitting["available_fen"] = serde_json::json!(80000);
    assert!(policies.decide_access(&admitting)?.is_empty());
    let mut admitted = Vec::with_capacity(arguments.decisions);
    for _ in 0..arguments.decisions {
        let started = Instant::now();
        policies.decide_access(&admitting)?;
        admitted.push(started.elapsed());
    }

    // The same decision on regorus's interpreter, the reference.
    let mut interpreted = Vec::with_capacity(arguments.decisions);
    for round in 0..2 * arguments.decisions {
        let started = Instant::now();
        let decided = policies.decide_access_interpreted(&input)?;
        let elapsed = started.elapsed();
        assert_eq!(decided, violations, "the interpreter agrees");
        if round >= arguments.decisions {
            interpreted.push(elapsed);
        }
    }
    let mut interpreted_admitted = Vec::with_capacity(arguments.decisions);
    for _ in 0..arguments.decisions {
        let started = Instant::now();
        policies.decide_access_interpreted(&admitting)?;
        interpreted_admitted.push(started.elapsed());
    }

    let mut path = propose_through_the_command_path(&policies, arguments.commands).await?;

    println!("| what | runs | median µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    let rows = [
        ("decide_access, 4 violations (bytecode VM)", &mut alone),
        ("decide_access, admitted (bytecode VM)", &mut admitted),
        ("decide_access_interpreted, 4 violations", &mut interpreted),
        ("decide_access_interpreted, admitted", &mut interpreted_admitted),
        ("propose through the command path (SQLite)", &mut path),
    ];
    for (label, samples) in rows {
        samples.sort_unstable();
        println!(
            "| {label} | {} | {:.1} | {:.1} |",
            samples.len(),
            micros(percentile(samples, 0.5)),
            micros(percentile(samples, 0.99))
        );
    }
    Ok(())
}

/// `commands` proposals through the whole command path on a fresh SQLite store with the demo:
/// each one's time.
async fn propose_through_the_command_path(
    policies: &Policies,
    commands: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let log = EventLog::open(&format!("sqlite://{}", directory.path().join("decide.db").display())).await?;
    let DemoOutcome::Loaded { places, .. } = demo::load(&log, policies).await? else {
        return Err("a fresh store already had the demo".into());
    };
    let service = Service::new(log.clone(), policies.clone(), Arc::new(SystemClock)).await?;
    let street = places.streets[0].0;
    let actor = Actor { role: Role::StreetOffice, organisation: street };
    let mut path = Vec::with_capacity(commands);
    for index in 0..commands {
        let community = places.communities[index % 4].0;
        let proposal = crate::registration_proposal(street, community, "2026-12-31");
        let started = Instant::now();
        service.propose(&CommandScope::new(actor), Uuid::now_v7(), proposal).await?;
        path.push(started.elapsed());
    }
    log.close().await;
    Ok(path)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
    sorted.get(index).copied().unwrap_or_default()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
