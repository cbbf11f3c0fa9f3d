//! The shape of `src/`, checked: the files' imports form no cycle, nor do
//! the top-level modules' (each a concept: `config` must not reach back into
//! `store`), every module is on lib.rs's map and in docs/architecture.md, and
//! the authentication state machines and the audit trail never reach for the
//! assembled gateway (so they stay testable on their own).
//!
//! Edges are the module paths a file names (`use crate::...`, `crate::x::y`
//! in code, `super::...`), resolved to the file that defines the module;
//! `mod x;` declarations are not edges, and a file's trailing `#[cfg(test)]`
//! module is not read.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path ("auth::login") → the file's text, for every file of the library.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("under src");
                if rel == Path::new("main.rs") {
                    continue; // the binary: a client of the library, not part of it
                }
                let text = std::fs::read_to_string(&path).expect("read file");
                out.insert(module_path(rel), text);
            }
        }
    }
    out
}

fn module_path(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

/// The code a file contributes: up to its trailing test module, without
/// comments (a doc comment may name a module it does not use).
fn code(text: &str) -> String {
    let text = text.find("#[cfg(test)]\nmod ").map_or(text, |i| &text[..i]);
    let code = text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n");
    // A visibility (`pub(in crate::store)`) names a module without using it.
    code.replace("pub(in crate::", "pub(in ")
}

/// Every `crate::...`, `super::...`, `self::...` path in `code`, and every
/// path through one of the module's own children (`child::f`), expanded from
/// groups (`crate::{a, b::c}`), as segment lists relative to the crate root.
fn paths(module: &str, code: &str, children: &[&str]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let inline = inline_modules(code);
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let base: Option<(Vec<String>, usize)> = if rest.starts_with(b"crate::") && boundary(bytes, i) {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with(b"super::") && boundary(bytes, i) {
            // Inside an inline `mod x { ... }`, `super` is this file's module.
            let mut parent = segments(module);
            if !inline.iter().any(|r| r.contains(&i)) {
                parent.pop();
            }
            Some((parent, "super::".len()))
        } else if rest.starts_with(b"self::") && boundary(bytes, i) {
            Some((segments(module), "self::".len()))
        } else if let Some(child) = children.iter().find(|c| rest.starts_with(format!("{c}::").as_bytes()))
            && boundary(bytes, i)
        {
            Some((segments(module), child.len() - child.len()))
        } else {
            None
        };
        match base {
            Some((prefix, skip)) => {
                let (found, used) = expand(&code[i + skip..], prefix);
                out.extend(found);
                i += skip + used;
            }
            None => i += 1,
        }
    }
    out
}

/// The byte ranges of the inline modules (`mod x { ... }`) of `code`.
fn inline_modules(code: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ").map(|i| i + from) {
        from = at + 4;
        if !boundary(bytes, at) {
            continue;
        }
        let name_end = at + 4 + code[at + 4..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(0);
        let after = code[name_end..].trim_start();
        if !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0usize;
        for (j, b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(open..j);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn segments(module: &str) -> Vec<String> {
    module.split("::").filter(|s| !s.is_empty()).map(String::from).collect()
}

fn boundary(bytes: &[u8], i: usize) -> bool {
    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':')
}

/// Reads a path tail (`a::b::C`, or `{a, b::{c, d}}`) after `prefix`.
fn expand(s: &str, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let bytes = s.as_bytes();
    let mut segs = prefix;
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace() || *b == b',') {
                    i += 1;
                }
                if bytes.get(i).is_none_or(|b| *b == b'}') {
                    return (out, i + 1);
                }
                let (found, used) = expand(&s[i..], segs.clone());
                out.extend(found);
                i += used.max(1);
            }
        }
        let start = i;
        while bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            i += 1;
        }
        if i == start {
            return (vec![segs], i);
        }
        segs.push(s[start..i].to_owned());
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![segs], i);
        }
    }
}

/// The module (file) a path lands in: its longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(m, text)| {
            let children: Vec<&str> = modules
                .keys()
                .filter_map(|k| {
                    let rest = if m.is_empty() { Some(k.as_str()) } else { k.strip_prefix(&format!("{m}::")) };
                    rest.filter(|r| !r.is_empty() && !r.contains("::"))
                })
                .collect();
            let deps = paths(m, &code(text), &children)
                .iter()
                .filter_map(|p| resolve(p, &modules))
                .filter(|d| d != m && !d.is_empty())
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

/// A cycle through `start`, if any (depth-first search for a path back to it).
fn cycle_from(start: &str, g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in g.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn the_files_of_src_import_each_other_without_a_cycle() {
    let g = graph();
    assert!(g.len() > 30, "found only {} modules: the scan is broken", g.len());
    let cycles: Vec<String> = g.keys().filter_map(|m| cycle_from(m, &g)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Edges between top-level modules (`auth::login` → `store::types` is
/// `auth` → `store`), from the files' edges.
fn top_level_graph() -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in graph() {
        let from = top(&m);
        let entry = g.entry(from.clone()).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != from));
    }
    g
}

#[test]
fn the_top_level_modules_depend_on_each_other_without_a_cycle() {
    let g = top_level_graph();
    assert!(g.len() > 25, "found only {} top-level modules: the scan is broken", g.len());
    let cycles: Vec<String> = g.keys().filter_map(|m| cycle_from(m, &g)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "module cycles (each line one, from each module on it):\n{}", cycles.join("\n"));
}

/// The `mod` items of src/lib.rs.
fn declared_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(String::from)
        .collect()
}

/// lib.rs's module map (its `//!` comment) and docs/architecture.md name
/// every module lib.rs declares, so a newcomer's map has no blank spaces.
#[test]
fn every_module_is_on_the_map_and_in_the_architecture_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let map: String = lib.lines().filter_map(|l| l.strip_prefix("//!")).collect::<Vec<_>>().join("\n");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let declared = declared_modules();
    assert!(declared.len() > 25, "found only {} modules in lib.rs: the scan is broken", declared.len());
    let off_map: Vec<&String> = declared.iter().filter(|m| !map.contains(&format!("`{m}`"))).collect();
    assert!(off_map.is_empty(), "modules missing from lib.rs's module map: {off_map:?}");
    let undocumented: Vec<&String> =
        declared.iter().filter(|m| !doc.contains(&format!("`{m}`")) && !doc.contains(&format!("`{m}::"))).collect();
    assert!(undocumented.is_empty(), "modules docs/architecture.md does not mention: {undocumented:?}");
}

#[test]
fn authentication_and_audit_never_see_the_assembled_gateway() {
    let g = graph();
    let assembled = ["app", "router", "portal"];
    for (m, deps) in &g {
        if m == "audit" || m == "auth" || m.starts_with("auth::") {
            let bad: Vec<&String> = deps.iter().filter(|d| assembled.iter().any(|a| d.starts_with(a))).collect();
            assert!(bad.is_empty(), "{m} imports {bad:?}");
        }
    }
}

/// One answer to "which level does this request need": a policy becomes a
/// level in one file (`auth/levels.rs`, `level_needed`, which the gate, the
/// login and the account pages all ask), and no other file of `src/` names
/// both a policy and a level. A second mapping is how the proxy, the
/// login and the account pages once came to disagree.
#[test]
fn a_policy_becomes_a_level_in_one_place() {
    let policies = ["Policy::Bypass", "Policy::OneFactor", "Policy::TwoFactor", "Policy::Deny"];
    let mapping: Vec<String> = modules()
        .into_iter()
        .filter(|(_, text)| {
            let code = code(text);
            policies.iter().any(|p| code.contains(p)) && code.contains("AuthLevel::")
        })
        .map(|(m, _)| m)
        .collect();
    assert_eq!(mapping, ["auth::levels"], "files that turn a policy into a level");
    let levels = code(&modules()["auth::levels"]);
    assert_eq!(levels.matches("match policy").count(), 1, "one match on a policy in auth/levels.rs");
    // Rules are consulted, and requests described to them, in gate, access and auth::levels only.
    for (m, text) in modules() {
        let code = code(&text);
        if !["access", "gate", "auth::levels"].contains(&m.as_str()) {
            assert!(!code.contains(".policy(&") && !code.contains("rules.policy("), "{m} consults the rules itself");
        }
    }
}

#[test]
fn the_scan_sees_grouped_and_relative_imports() {
    let mut modules = BTreeMap::new();
    for m in ["a", "a::b", "c", "c::d"] {
        modules.insert(m.to_owned(), String::new());
    }
    let found: BTreeSet<String> =
        paths("a::b", "use crate::{c::{d::X, Y}, a};\nlet x = super::f(); crate::c::d::g();", &[])
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .collect();
    assert_eq!(found, ["a", "c", "c::d"].into_iter().map(String::from).collect::<BTreeSet<_>>());
    let found: BTreeSet<String> = paths("c", "let x = d::run(); let y = self::d::Z; let z = xd::w();", &["d"])
        .iter()
        .filter_map(|p| resolve(p, &modules))
        .collect();
    assert_eq!(found, ["c::d"].into_iter().map(String::from).collect::<BTreeSet<_>>());
}
