//! Checks the layering that `lib.rs` states, by reading the crate's own source: which module
//! uses which (`crate::…` and `super::…` paths outside comments and test modules). A shared
//! type put back in a feature file would make the files import each other in a circle again,
//! as they did before the restructure of issue 20; these tests fail when that happens.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module's layer, as `lib.rs` lists them. A module uses only modules in lower layers
/// or, outside the features, in its own.
const LAYERS: &[(&str, u8)] = &[
    ("record", 1),
    ("error", 1),
    ("canonical", 1),
    ("merkle", 1),
    ("metadata", 1),
    ("locks", 1),
    ("page", 2),
    ("validate", 2),
    ("plan", 2),
    ("import_lookup", 2),
    ("subtree_cache", 2),
    ("tail", 2),
    ("backend", 3),
    ("backend/sqlite", 3),
    ("backend/sqlite_bulk", 3),
    ("backend/postgres", 3),
    ("backend/values", 3),
    ("log", 4),
    ("writer", 4),
    ("verify", 5),
    ("import", 5),
    ("proofs", 5),
    ("subscription", 5),
    ("aggregate_store", 5),
];

/// The layer of the features: none of them uses another.
const FEATURES: u8 = 5;

/// The one pair of modules allowed to use each other: the façade and its writer.
const PAIR: [&str; 2] = ["log", "writer"];

#[test]
fn no_modules_import_each_other_in_a_circle_but_the_log_and_its_writer() {
    let uses = module_uses();
    for module in uses.keys() {
        let circle: BTreeSet<&str> = uses
            .keys()
            .filter(|other| reaches(&uses, module, other) && reaches(&uses, other, module))
            .map(String::as_str)
            .collect();
        let allowed = circle.len() == 1 || (circle.len() == 2 && PAIR.iter().all(|m| circle.contains(m)));
        assert!(allowed, "these modules import each other in a circle: {circle:?}");
    }
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    for (module, used) in module_uses() {
        let layer = *layers.get(module.as_str()).unwrap_or_else(|| {
            panic!("module `{module}` has no layer: add it to `LAYERS` here and to lib.rs")
        });
        for other in used {
            let other_layer = layers[other.as_str()];
            let allowed = other_layer < layer
                || (other_layer == layer && layer != FEATURES)
                || (PAIR.contains(&module.as_str()) && PAIR.contains(&other.as_str()));
            assert!(allowed, "`{module}` (layer {layer}) uses `{other}` (layer {other_layer})");
        }
    }
}

#[test]
fn the_reader_finds_uses_in_paths_and_groups() {
    let known: BTreeSet<String> = ["log", "backend", "backend/sqlite", "plan"].map(String::from).into();
    let code = "use crate::{log::EventLog, plan};\nlet x = crate::backend::sqlite::f();\n\
                // crate::verify in a comment\nuse super::to_i64;";
    let found = uses_in(code, &["backend".to_owned(), "postgres".to_owned()], &known);
    let expected: BTreeSet<String> = ["log", "plan", "backend/sqlite", "backend"].map(String::from).into();
    assert_eq!(found, expected);
    // A submodule named from its parent; a path's later names are not taken for first ones.
    let found = uses_in("sqlite::read(x::log::y)", &["backend".to_owned()], &known);
    assert_eq!(found, BTreeSet::from(["backend/sqlite".to_owned()]));
}

/// Whether `from` reaches `to` by uses, in one step or more (or is it).
fn reaches(uses: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut next = vec![from];
    while let Some(module) = next.pop() {
        if module == to {
            return true;
        }
        for used in uses.get(module).into_iter().flatten() {
            if seen.insert(used) {
                next.push(used);
            }
        }
    }
    false
}

/// Every module of the crate (but the root and this test) and the modules it uses.
fn module_uses() -> BTreeMap<String, BTreeSet<String>> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_modules(&source, &mut Vec::new(), &mut files);
    files.remove("lib");
    files.remove("layering");
    let known: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, code)| {
            let path: Vec<String> = module.split('/').map(String::from).collect();
            let mut used = uses_in(code, &path, &known);
            used.remove(module);
            (module.clone(), used)
        })
        .collect()
}

/// The non-test code of each `.rs` file under `directory`, by module (`backend/sqlite`;
/// `backend/mod.rs` is `backend`).
fn read_modules(directory: &Path, prefix: &mut Vec<String>, files: &mut BTreeMap<String, String>) {
    let entries = std::fs::read_dir(directory).expect("the crate's source folder");
    for entry in entries.map(|entry| entry.expect("a source file")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            prefix.push(name);
            read_modules(&path, prefix, files);
            prefix.pop();
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut module = prefix.clone();
            if stem != "mod" {
                module.push(stem.to_owned());
            }
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            files.insert(module.join("/"), non_test_code(&text));
        }
    }
}

/// The text without comment lines and without the test module at the end.
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|pair| pair[0].trim() == "#[cfg(test)]" && pair[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    let code = lines[..end].iter().filter(|line| !line.trim_start().starts_with("//"));
    code.copied().collect::<Vec<_>>().join("\n")
}

/// The known modules that `code`, in the module at `path`, names by `crate::`, `super::` or
/// `self::` paths, or by the name of one of its own submodules (`sqlite::…` in `backend`).
/// Items of the crate root are left out: it only declares the modules and a few constants.
fn uses_in(code: &str, path: &[String], known: &BTreeSet<String>) -> BTreeSet<String> {
    let is_name = |character: char| character.is_alphanumeric() || character == '_';
    let mut found = BTreeSet::new();
    for (end, _) in code.match_indices("::") {
        let start = code[..end].trim_end_matches(is_name).len();
        // The first name of a path, not a later one (`resolve` follows those).
        if code[..start].ends_with(':') {
            continue;
        }
        let (base, rest) = match &code[start..end] {
            "crate" => (Vec::new(), &code[end + 2..]),
            "super" => (path[..path.len().saturating_sub(1)].to_vec(), &code[end + 2..]),
            "self" => (path.to_vec(), &code[end + 2..]),
            name if known.contains(&[path, &[name.to_owned()]].concat().join("/")) => {
                (path.to_vec(), &code[start..])
            }
            _ => continue,
        };
        resolve(rest, base, known, &mut found);
    }
    found
}

/// Follows the path that starts `rest` (`a::b::Item`, or a group `{a::X, b}`) from the module
/// `base` down the known modules, and keeps the deepest module each path reaches.
fn resolve(rest: &str, base: Vec<String>, known: &BTreeSet<String>, found: &mut BTreeSet<String>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item_start = 0;
        for (index, character) in group.char_indices() {
            match character {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    resolve(&group[item_start..index], base.clone(), known, found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    resolve(&group[item_start..index], base.clone(), known, found);
                    item_start = index + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name_end = rest.find(|character: char| !(character.is_alphanumeric() || character == '_'));
    let name = &rest[..name_end.unwrap_or(rest.len())];
    let mut module = base.clone();
    module.push(name.to_owned());
    if !name.is_empty() && known.contains(&module.join("/")) {
        let after = &rest[name.len()..];
        match after.strip_prefix("::") {
            Some(deeper) => resolve(deeper, module, known, found),
            None => {
                found.insert(module.join("/"));
            }
        }
    } else if !base.is_empty() {
        found.insert(base.join("/"));
    }
}
