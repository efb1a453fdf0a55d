//! The crate layering ARCHITECTURE.md states, checked on the workspace's manifests (`cargo
//! metadata`): which crate may depend on which, and which crates may speak SQL, HTTP or Rego;
//! and the size limits of the code's files and functions. These tests need no database: each
//! runs once.

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
        ("no_file_or_function_outgrows_its_limit", no_file_or_function_outgrows_its_limit),
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

/// The most lines a non-test source file may have.
const FILE_LINES_MAX: usize = 800;
/// The most lines a non-test function may have, from its `fn` line to its closing brace.
const FUNCTION_LINES_MAX: usize = 100;

/// Every crate's non-test source stays within the limits: a file that grows past them is split
/// by concern, a function by step.
fn no_file_or_function_outgrows_its_limit() -> Result<(), Failed> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut files = Vec::new();
    let mut folders = vec![crates];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|error| format!("{}: {error}", folder.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
            match (path.is_dir(), path.extension().and_then(|extension| extension.to_str())) {
                (true, _) if name != "tests" && name != "target" => folders.push(path),
                (false, Some("rs")) if name != "tests.rs" => files.push(path),
                _ => {}
            }
        }
    }
    let mut over = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|error| format!("{}: {error}", file.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        // A file's own tests, at its end, do not count.
        let code = lines
            .windows(2)
            .position(|pair| pair[0].starts_with("#[cfg(test)]") && pair[1].starts_with("mod tests"))
            .map_or(&lines[..], |end| &lines[..end]);
        if code.len() > FILE_LINES_MAX {
            over.push(format!("{}: {} lines", file.display(), code.len()));
        }
        for (start, line) in code.iter().enumerate() {
            let Some(name) = function_name(line) else { continue };
            let indent = &line[..line.len() - line.trim_start().len()];
            let closing = format!("{indent}}}");
            let length = code[start..].iter().position(|line| *line == closing).map_or(0, |end| end + 1);
            if length > FUNCTION_LINES_MAX {
                over.push(format!("{}: fn {name} is {length} lines", file.display()));
            }
        }
    }
    match over.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "over the limits ({FILE_LINES_MAX} lines a file, {FUNCTION_LINES_MAX} a function): {over:#?}"
        )
        .into()),
    }
}

/// The name of the function a line opens, if it opens one with a body.
fn function_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("async ").unwrap_or(rest).strip_prefix("fn ")?;
    if line.trim_end().ends_with(';') {
        return None;
    }
    rest.split(|character: char| !(character.is_alphanumeric() || character == '_')).next()
}
