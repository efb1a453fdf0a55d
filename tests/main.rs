//! shequ's workspace test suite, one binary with its own harness.
//!
//! Every store test is one function run against both backends: SQLite in a temporary file,
//! and PostgreSQL in a fresh database on the server at `SHEQU_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When no PostgreSQL server answers, the
//! PostgreSQL half is reported as not run, plainly, at the end; with
//! `SHEQU_TEST_REQUIRE_POSTGRES=1` (as in CI) it fails instead.

mod api;
mod cli;
mod export;
mod helpers;
mod http;
mod layering;
mod open311;
mod processes;
mod requests;
mod schemas;
mod service;
mod store;

use std::process::ExitCode;

use helpers::{BackendUnderTest, Postgres};
use libtest_mimic::{Arguments, Trial};

fn main() -> ExitCode {
    // The suite re-runs this binary as a child writer process for the multi-process tests.
    if let Some(code) = processes::run_child_if_asked() {
        return code;
    }
    let arguments = Arguments::from_args();
    let postgres = Postgres::probe();
    let mut trials = Vec::new();
    for (module, tests) in [
        ("store", store::tests()),
        ("cli", cli::tests()),
        ("http", http::tests()),
        ("processes", processes::tests()),
        ("service", service::tests()),
        ("requests", requests::tests()),
        ("api", api::tests()),
        ("export", export::tests()),
        ("open311", open311::tests()),
        ("schemas", schemas::tests()),
    ] {
        for (name, test) in tests {
            for backend in [BackendUnderTest::Sqlite, BackendUnderTest::Postgres] {
                let trial_name = format!("{module}::{name}::{}", backend.label());
                let postgres = postgres.clone();
                // A test across both backends needs PostgreSQL on its SQLite run too.
                let needs_postgres =
                    backend == BackendUnderTest::Postgres || export::ACROSS_BACKENDS.contains(&name);
                let skip = needs_postgres && postgres.skipped();
                trials.push(
                    Trial::test(trial_name, move || helpers::run_trial(backend, &postgres, test))
                        .with_ignored_flag(skip),
                );
            }
        }
    }
    for (name, test) in layering::tests() {
        trials.push(Trial::test(format!("layering::{name}"), test));
    }
    let postgres_trials = trials.iter().filter(|trial| trial.has_ignored_flag()).count();
    let conclusion = libtest_mimic::run(&arguments, trials);
    if postgres.skipped() {
        eprintln!();
        eprintln!("NOTE: the PostgreSQL half of the suite did NOT run ({postgres_trials} tests).");
        eprintln!("      {}", postgres.describe());
        eprintln!("      Start PostgreSQL or set SHEQU_TEST_POSTGRES_URL; set SHEQU_TEST_REQUIRE_POSTGRES=1 to make this fail.");
    }
    conclusion.exit_code()
}
