//! The crate layering ARCHITECTURE.md states, checked on the workspace's manifests (`cargo
//! metadata`): which crate may depend on which, and which crates may speak SQL, HTTP or Rego.
//! These tests need no database: each runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use libtest_mimic::Failed;

/// The product's crates, each with the shequ crates it may depend on (directly).
const LAYERS: [(&str, &[&str]); 6] = [
    ("shequ-domain", &[]),
    ("shequ-policy", &["shequ-domain"]),
    ("shequ-store", &["shequ-domain"]),
    ("shequ-service", &["shequ-domain", "shequ-policy", "shequ-store"]),
    ("shequ-http", &["shequ-domain", "shequ-policy", "shequ-store", "shequ-service"]),
    ("shequ", &["shequ-domain", "shequ-policy", "shequ-store", "shequ-service", "shequ-http"]),
];

/// Crates that do IO of one kind, each with the product crates allowed to depend on it.
const SPEAKERS: [(&str, &[&str]); 7] = [
    ("sqlx", &["shequ-store"]),
    ("rusqlite", &["shequ-store"]),
    ("regorus", &["shequ-policy"]),
    ("axum", &["shequ-http", "shequ"]),
    ("tower-http", &["shequ-http"]),
    ("jsonwebtoken", &["shequ-http"]),
    ("tokio", &["shequ-store", "shequ-service", "shequ-http", "shequ"]),
];

/// A check of the workspace's manifests.
pub type Check = fn() -> Result<(), Failed>;

pub fn tests() -> Vec<(&'static str, Check)> {
    vec![
        (
            "shequ_crates_depend_only_on_the_layers_below_them",
            shequ_crates_depend_only_on_the_layers_below_them,
        ),
        ("only_the_named_crates_speak_sql_http_and_rego", only_the_named_crates_speak_sql_http_and_rego),
        ("the_domain_does_no_io", the_domain_does_no_io),
    ]
}

/// Each product crate's normal and build dependencies, by name (dev-dependencies aside: a
/// crate's own tests may use what it does not).
fn dependencies() -> Result<BTreeMap<String, BTreeSet<String>>, Failed> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", manifest])
        .output()
        .map_err(|error| format!("cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| format!("cargo metadata's JSON: {error}"))?;
    let mut found = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let names = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dependency| dependency["kind"].as_str() != Some("dev"))
            .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
            .collect();
        found.insert(name, names);
    }
    Ok(found)
}

fn product() -> impl Iterator<Item = &'static str> {
    LAYERS.iter().map(|(name, _)| *name)
}

fn shequ_crates_depend_only_on_the_layers_below_them() -> Result<(), Failed> {
    let dependencies = dependencies()?;
    for (name, allowed) in LAYERS {
        let used = dependencies.get(name).ok_or_else(|| format!("{name} is not in the workspace"))?;
        let above: Vec<&String> = used
            .iter()
            .filter(|used| used.starts_with("shequ") && !allowed.contains(&used.as_str()))
            .collect();
        if !above.is_empty() {
            return Err(format!("{name} depends on {above:?}, which it may not (ARCHITECTURE.md)").into());
        }
    }
    Ok(())
}

fn only_the_named_crates_speak_sql_http_and_rego() -> Result<(), Failed> {
    let dependencies = dependencies()?;
    for (speaker, allowed) in SPEAKERS {
        for name in product() {
            let uses = dependencies[name].contains(speaker);
            if uses && !allowed.contains(&name) {
                return Err(format!("{name} depends on {speaker}; only {allowed:?} may").into());
            }
        }
        // The rule names a crate that really speaks it, so the test can fail the other way too.
        if !allowed.iter().any(|name| dependencies[*name].contains(speaker)) {
            return Err(format!("none of {allowed:?} depends on {speaker}: the rule is stale").into());
        }
    }
    Ok(())
}

fn the_domain_does_no_io() -> Result<(), Failed> {
    let dependencies = dependencies()?;
    let io = ["sqlx", "rusqlite", "axum", "tokio", "hyper", "regorus", "chrono", "getrandom", "rand"];
    let found: Vec<&str> =
        io.into_iter().filter(|name| dependencies["shequ-domain"].contains(*name)).collect();
    match found.is_empty() {
        true => Ok(()),
        false => Err(format!("shequ-domain depends on {found:?}: it must stay pure").into()),
    }
}
