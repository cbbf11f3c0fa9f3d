//! The reference documents cannot drift from the program: config/portcullis.toml
//! ("every key with its default") is checked against the keys and values
//! `check-config` prints, and docs/reference.md's route and field tables
//! against `portal::ROUTES` and docs/openapi.json. A failure says what to add
//! or remove, and where.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------
// config/portcullis.toml against check-config
// ---------------------------------------------------------------------------

/// `portcullis check-config --no-files` run in `dir`, with the test secret.
fn check_config(dir: &Path, config: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(support::binary());
    cmd.arg("check-config").arg("--no-files").current_dir(dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.env_remove("PORTCULLIS_CONFIG").env("PORTCULLIS_AUTH__SECRET", support::SECRET).output().unwrap()
}

/// The effective configuration `check-config` prints, as TOML.
fn printed_config(dir: &Path, config: Option<&Path>) -> toml::Table {
    let out = check_config(dir, config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-config: {}", String::from_utf8_lossy(&out.stderr));
    text.parse().unwrap_or_else(|e| panic!("check-config printed no TOML ({e}):\n{text}"))
}

/// Every key of a table, as dotted paths (`upstream.url` for each entry of a
/// list of tables), with its value; and the paths of the tables themselves.
fn flatten(prefix: &str, table: &toml::Table, keys: &mut BTreeMap<String, toml::Value>, tables: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => {
                tables.insert(path.clone());
                flatten(&path, t, keys, tables);
            }
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) && !items.is_empty() => {
                tables.insert(path.clone());
                for item in items {
                    flatten(&path, item.as_table().unwrap(), keys, tables);
                }
            }
            _ => {
                keys.insert(path, v.clone());
            }
        }
    }
}

/// What check-config answers for an unknown key in `table`: every key the
/// table takes.
fn keys_of_table(dir: &Path, table: &str, list: bool) -> Vec<String> {
    let probe = dir.join("probe.toml");
    let header = if list { format!("[[{table}]]") } else { format!("[{table}]") };
    // A rule needs its policy before its other keys are looked at.
    let policy = if table == "access_control.rules" { "policy = \"bypass\"\n" } else { "" };
    std::fs::write(&probe, format!("{header}\n{policy}no_such_key = 1\n")).unwrap();
    let out = check_config(dir, Some(&probe));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let list = said
        .split_once(" are: ")
        .map(|(_, rest)| rest.split(" (from").next().unwrap_or(rest).trim())
        .unwrap_or_else(|| panic!("check-config did not list the keys of [{table}]: {said}"));
    list.split(", ").map(|k| format!("{table}.{k}")).collect()
}

/// The keys config/portcullis.toml sets, and those it shows commented out
/// (`# key = value` under a section, or a commented `# [[section]]`).
fn reference_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = read("config/portcullis.toml");
    let table: toml::Table = text.parse().expect("config/portcullis.toml is TOML");
    let (mut values, mut tables) = (BTreeMap::new(), BTreeSet::new());
    flatten("", &table, &mut values, &mut tables);
    let set: BTreeSet<String> = values.into_keys().collect();

    let mut commented = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let bare = line.trim_start_matches('#').trim();
        let header = bare.strip_prefix("[[").and_then(|h| h.strip_suffix("]]"));
        if let Some(h) = header.or_else(|| bare.strip_prefix('[').and_then(|h| h.strip_suffix(']'))) {
            if !h.contains(' ') {
                section = h.to_string();
            }
            continue;
        }
        if !line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = bare.split_once(" = ") else { continue };
        let key = key.trim();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && !value.trim().is_empty() {
            commented.insert(if section.is_empty() { key.to_string() } else { format!("{section}.{key}") });
        }
    }
    (set, commented)
}

#[test]
fn the_reference_config_shows_every_key_check_config_knows() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = printed_config(dir.path(), None);
    let (mut values, mut tables) = (BTreeMap::new(), BTreeSet::new());
    flatten("", &defaults, &mut values, &mut tables);
    // Lists of tables printed empty (the access rules) are tables too.
    tables.insert("access_control.rules".into());

    // Every key the program takes, table by table, as check-config lists them.
    let mut known = BTreeSet::new();
    for table in &tables {
        let list = matches!(defaults_value(&defaults, table), Some(toml::Value::Array(_)));
        known.extend(keys_of_table(dir.path(), table, list));
    }
    let (set, commented) = reference_keys();
    let shown: BTreeSet<&String> = set.iter().chain(&commented).collect();

    let missing: Vec<String> = known
        .iter()
        .filter(|k| !shown.contains(k) && !tables.contains(*k))
        .map(|k| match values.get(k) {
            Some(v) => format!("{k} (check-config prints {} = {v})", k.rsplit('.').next().unwrap()),
            None => {
                format!("{k} (unset by default: show it commented out, `# {} = ...`)", k.rsplit('.').next().unwrap())
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config/portcullis.toml lacks these keys; add each under its section with its default and what it does:\n  {}",
        missing.join("\n  ")
    );
    let unknown: Vec<&&String> = shown.iter().filter(|k| !known.contains(**k)).collect();
    assert!(unknown.is_empty(), "config/portcullis.toml shows keys check-config does not know: {unknown:?}");
}

/// The value at a dotted path of a printed configuration.
fn defaults_value<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut v = table.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

#[test]
fn the_reference_configs_values_are_the_defaults() {
    // Loaded from the repository root, as an operator trying it would.
    let root = repo("");
    let from_reference = printed_config(&root, Some(&repo("config/portcullis.toml")));
    let dir = tempfile::tempdir().unwrap();
    let defaults = printed_config(dir.path(), None);
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &from_reference, &mut a, &mut BTreeSet::new());
    flatten("", &defaults, &mut b, &mut BTreeSet::new());
    let mut differ = Vec::new();
    for (k, default) in &b {
        let shown = a.get(k);
        // Relative to the reference's directory: config/users.toml either way.
        if k == "auth.users_file" {
            let path = shown.and_then(toml::Value::as_str).unwrap_or_default();
            assert!(Path::new(path).ends_with(default.as_str().unwrap()), "{path} vs {default}");
            continue;
        }
        if shown != Some(default) {
            differ.push(format!("{k}: the reference gives {shown:?}, the default is {default}"));
        }
    }
    assert!(differ.is_empty(), "config/portcullis.toml must show the defaults:\n  {}", differ.join("\n  "));
}
