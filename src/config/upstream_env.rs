//! `[[upstream]]` from environment variables. The upstreams are a list, which
//! figment's `PORTCULLIS_<SECTION>__<KEY>` splitting cannot address (it builds
//! a map, and the list then fails as "found map, expected a sequence"). Two
//! spellings are read here instead:
//!
//! - indexed: `PORTCULLIS_UPSTREAM__0__URL`, `PORTCULLIS_UPSTREAM__1__HOST`, ...
//!   sets a key of entry N of the file's list (entry N = the list's length adds
//!   one; a gap is refused);
//! - shorthand for the usual single upstream: `PORTCULLIS_UPSTREAM__URL` is
//!   `PORTCULLIS_UPSTREAM__0__URL`.
//!
//! Each key set is remembered with its variable, so an error about it names the
//! variable rather than the config file.

use std::path::Path;

use figment::Figment;
use figment::value::{Dict, Value};

use super::validate::Problem;

const PREFIX: &str = "PORTCULLIS_UPSTREAM__";

/// The upstream list with the variables applied, and which variable set which
/// key path (`upstream[0].url`). None when no variable names an upstream.
pub(super) struct FromEnv {
    pub list: Value,
    pub set_by: Vec<(String, String)>,
}

/// Applies the `PORTCULLIS_UPSTREAM__*` variables among `vars` to the list the
/// figment holds so far (the file's, or the default).
pub(super) fn apply(
    figment: &Figment,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Option<FromEnv>, Vec<Problem>> {
    let mut wanted: Vec<(usize, Vec<String>, String, String)> = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in vars {
        let Some(rest) =
            name.get(..PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(PREFIX)).map(|_| &name[PREFIX.len()..])
        else {
            continue;
        };
        let mut parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let index = match parts.first().map(|p| p.parse::<usize>()) {
            Some(Ok(i)) => {
                parts.remove(0);
                i
            }
            _ => 0,
        };
        if parts.is_empty() || parts.iter().any(String::is_empty) {
            problems.push(Problem::new(
                name.clone(),
                "names no key: write PORTCULLIS_UPSTREAM__<KEY> for the single upstream or \
                 PORTCULLIS_UPSTREAM__<N>__<KEY> for entry N (from 0)",
            ));
            continue;
        }
        wanted.push((index, parts, name, value));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    wanted.sort_by_key(|w| w.0);
    let mut list: Vec<Value> = match figment.find_value("upstream") {
        Ok(Value::Array(_, items)) => items,
        _ => Vec::new(),
    };
    // The list is provided anew below, so it no longer counts as the file's:
    // a relative ca_file written in the file is made relative to the file's
    // directory here, as it would have been.
    let from_file = figment.find_metadata("upstream").and_then(|m| m.source.as_ref()).and_then(|s| s.file_path());
    if let Some(dir) = from_file.and_then(Path::parent) {
        for entry in &mut list {
            if let Value::Dict(_, d) = entry
                && let Some(Value::String(tag, ca)) = d.get("ca_file")
                && Path::new(ca).is_relative()
            {
                let resolved = Value::String(*tag, dir.join(ca).display().to_string());
                d.insert("ca_file".into(), resolved);
            }
        }
    }
    let mut set_by = Vec::new();
    for (index, keys, name, value) in wanted {
        if index > list.len() {
            let have = if list.is_empty() {
                "there is none yet".to_string()
            } else {
                format!("the last is {}", list.len() - 1)
            };
            problems.push(Problem::new(
                name,
                format!("upstream entry {index} would leave a gap ({have}); number the entries from 0 without gaps"),
            ));
            continue;
        }
        if index == list.len() {
            list.push(Value::from(Dict::new()));
        }
        let Value::Dict(_, entry) = &mut list[index] else {
            problems.push(Problem::new(name, format!("upstream entry {index} is not a table")));
            continue;
        };
        set(entry, &keys, value.parse::<Value>().unwrap_or_else(|never| match never {}));
        set_by.push((format!("upstream[{index}].{}", keys.join(".")), name));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(FromEnv { list: Value::from(list), set_by }))
}

/// Sets `keys` (a path of nested tables) in `dict` to `value`.
fn set(dict: &mut Dict, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let child = dict.entry(first.clone()).or_insert_with(|| Value::from(Dict::new()));
            if !matches!(child, Value::Dict(..)) {
                *child = Value::from(Dict::new());
            }
            if let Value::Dict(_, d) = child {
                set(d, rest, value);
            }
        }
    }
}

/// Says which variable set the key each problem is about, in place of the
/// provider the value seemed to come from.
pub(super) fn name_variables(problems: &mut [Problem], set_by: &[(String, String)]) {
    for p in problems {
        let Some((_, var)) = set_by.iter().find(|(key, _)| p.key == *key || p.key.starts_with(&format!("{key}.")))
        else {
            continue;
        };
        if let Some(i) = p.message.find(" (from ") {
            p.message.truncate(i);
        }
        p.message.push_str(&format!(" (from {var})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Serialized, Toml};

    fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    fn file(text: &str) -> Figment {
        Figment::from(Serialized::defaults(super::super::Config::default())).merge(Toml::string(text))
    }

    fn urls(v: &Value) -> Vec<String> {
        let Value::Array(_, items) = v else { panic!("not a list") };
        items.iter().map(|i| i.find_ref("url").and_then(Value::as_str).unwrap_or("-").to_string()).collect()
    }

    #[test]
    fn the_shorthand_sets_the_single_upstream() {
        let got = apply(&file(""), vars(&[("PORTCULLIS_UPSTREAM__URL", "http://10.0.0.9:8000")])).unwrap().unwrap();
        assert_eq!(urls(&got.list), ["http://10.0.0.9:8000"]);
        assert_eq!(got.set_by, [("upstream[0].url".to_string(), "PORTCULLIS_UPSTREAM__URL".to_string())]);
    }

    #[test]
    fn indexed_variables_change_and_add_entries_of_the_files_list() {
        let f = file("[[upstream]]\nurl = \"http://a:1\"\ntimeout = \"5s\"\n");
        let got = apply(
            &f,
            vars(&[
                ("PORTCULLIS_UPSTREAM__1__URL", "http://b:2"),
                ("PORTCULLIS_UPSTREAM__1__HOST", "b.example.com"),
                ("PORTCULLIS_UPSTREAM__0__URL", "http://a:9"),
                ("PORTCULLIS_OTHER", "x"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(urls(&got.list), ["http://a:9", "http://b:2"]);
        let Value::Array(_, items) = &got.list else { unreachable!() };
        assert_eq!(items[0].find_ref("timeout").and_then(Value::as_str), Some("5s"), "the file's other keys stay");
        assert_eq!(items[1].find_ref("host").and_then(Value::as_str), Some("b.example.com"));
    }

    #[test]
    fn a_relative_ca_file_from_the_file_stays_relative_to_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[[upstream]]\nurl = \"https://a:1\"\nca_file = \"certs/ca.pem\"\n").unwrap();
        let f = Figment::from(Serialized::defaults(super::super::Config::default())).merge(Toml::file_exact(&path));
        let got = apply(&f, vars(&[("PORTCULLIS_UPSTREAM__0__TIMEOUT", "5s")])).unwrap().unwrap();
        let Value::Array(_, items) = &got.list else { unreachable!() };
        let ca = items[0].find_ref("ca_file").and_then(Value::as_str).unwrap().to_string();
        assert_eq!(Path::new(&ca), dir.path().join("certs/ca.pem"));
    }

    #[test]
    fn a_gap_or_a_missing_key_is_refused_naming_the_variable() {
        let err = apply(&file(""), vars(&[("PORTCULLIS_UPSTREAM__2__URL", "http://c:3")])).err().unwrap();
        assert_eq!(err[0].key, "PORTCULLIS_UPSTREAM__2__URL");
        assert!(err[0].message.contains("gap"), "{}", err[0].message);
        let err = apply(&file(""), vars(&[("PORTCULLIS_UPSTREAM__0__", "x")])).err().unwrap();
        assert_eq!(err[0].key, "PORTCULLIS_UPSTREAM__0__");
        assert!(apply(&file(""), vars(&[("PORTCULLIS_STORE__URL", "redis://x")])).unwrap().is_none());
    }
}
