//! The reference documents cannot drift from the program: config/portcullis.toml
//! ("every key with its default") is checked against the keys and values
//! `check-config` prints, and docs/reference.md's route and field tables
//! against `portal::ROUTES` and docs/openapi.json. A failure says what to add
//! or remove, and where.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

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

// ---------------------------------------------------------------------------
// docs/reference.md (and the README's API table) against ROUTES and OpenAPI
// ---------------------------------------------------------------------------

use portcullis::portal::{Methods, PathRule, ROUTES, Route};
use serde_json::Value;

const PREFIX: &str = "/_auth";

/// How the tables write a route's method: GET stands for GET and HEAD.
fn method_word(m: Methods) -> &'static str {
    match m {
        Methods::Read | Methods::Get => "GET",
        Methods::Post => "POST",
        Methods::Delete => "DELETE",
        Methods::Any => "ANY",
    }
}

/// A route as the tables write it: `POST /_auth/api/totp/setup`; a prefix
/// route's parameter as `{name}`.
fn route_key(r: &Route) -> (String, String) {
    let path = match r.path {
        PathRule::Exact(p) => format!("{PREFIX}{p}"),
        PathRule::Prefix(p) => format!("{PREFIX}{p}{{}}"),
    };
    (method_word(r.methods).to_string(), path)
}

/// The code spans (`...`) of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The field names inside a cell's code spans (`{otp_required: true, methods}`
/// → otp_required, true, methods). Words joined by `-`, `.`, `/` or `:`
/// (`send-login-otp`, `navigator.credentials.get`, `otpauth://`) are names of
/// other things, not fields.
fn words(cell: &str) -> BTreeSet<String> {
    code_spans(cell)
        .iter()
        .flat_map(|s| s.split(|c: char| !(c.is_ascii_alphanumeric() || "_-./:".contains(c))))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        .map(str::to_string)
        .collect()
}

/// One table row naming routes: the routes (method, path with `{}` for a
/// parameter), its fields cell and its answer cell.
struct Row {
    line: usize,
    routes: Vec<(String, String)>,
    fields: String,
    answer: String,
}

/// The rows of every table in `text` whose first cell names routes
/// (`METHOD /path`, the path with or without the prefix).
fn route_rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(inner) = line.trim().strip_prefix('|').and_then(|l| l.strip_suffix('|')) else { continue };
        let cells: Vec<&str> = inner.split(" | ").map(str::trim).collect();
        let mut routes = Vec::new();
        for span in code_spans(cells[0]) {
            let Some((method, path)) = span.split_once(' ') else { continue };
            if !["GET", "POST", "DELETE", "ANY"].contains(&method) {
                continue;
            }
            let path = if path.starts_with('/') { path.to_string() } else { format!("{PREFIX}/{path}") };
            // `/api/sessions/{id}` → `/api/sessions/{}`.
            let path = match path.split_once('{') {
                Some((head, _)) => format!("{head}{{}}"),
                None => path,
            };
            routes.push((method.to_string(), path));
        }
        if !routes.is_empty() {
            let cell = |n: usize| cells.get(n).copied().unwrap_or_default().to_string();
            rows.push(Row { line: i + 1, routes, fields: cell(1), answer: cell(2) });
        }
    }
    rows
}

struct OpenApi(Value);

impl OpenApi {
    fn load() -> OpenApi {
        OpenApi(serde_json::from_str(&read("docs/openapi.json")).expect("docs/openapi.json is JSON"))
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => self.resolve(&self.0["components"]["schemas"][r.rsplit('/').next().unwrap()]),
            None => schema,
        }
    }

    /// The property names of a schema (through $ref, allOf, oneOf, anyOf);
    /// with `deep`, those of nested objects and array items too.
    fn properties(&self, schema: &Value, deep: bool, out: &mut BTreeSet<String>) {
        let schema = self.resolve(schema);
        for k in ["allOf", "oneOf", "anyOf"] {
            for s in schema[k].as_array().into_iter().flatten() {
                self.properties(s, deep, out);
            }
        }
        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
            out.insert(name.clone());
            if deep {
                self.properties(prop, deep, out);
                self.properties(&prop["items"], deep, out);
            }
        }
    }

    /// String values a schema names (`enum`, `const`), at any depth.
    fn values(&self, schema: &Value, out: &mut BTreeSet<String>) {
        match self.resolve(schema) {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("enum", Value::Array(a)) => {
                            out.extend(a.iter().filter_map(|s| s.as_str().map(str::to_string)))
                        }
                        ("const", Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        ("$ref", _) => self.values(self.resolve(schema), out),
                        _ => self.values(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| self.values(v, out)),
            _ => {}
        }
    }

    fn operation(&self, method: &str, path: &str) -> Option<&Value> {
        let paths = self.0["paths"].as_object()?;
        let (_, item) = paths.iter().find(|(p, _)| match p.split_once('{') {
            Some((head, _)) => path.strip_suffix("{}") == Some(head),
            None => *p == path,
        })?;
        item.get(method.to_ascii_lowercase())
    }

    /// (request fields, 2xx answer fields, every field and value any answer or
    /// the request may carry).
    fn fields(&self, op: &Value) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let (mut request, mut answer, mut any) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        if let Some(s) = op["requestBody"]["content"]["application/json"].get("schema") {
            self.properties(s, false, &mut request);
            self.properties(s, true, &mut any);
            self.values(s, &mut any);
        }
        for (status, r) in op["responses"].as_object().into_iter().flatten() {
            let Some(s) = r["content"]["application/json"].get("schema") else { continue };
            if status.starts_with('2') {
                self.properties(s, false, &mut answer);
            }
            self.properties(s, true, &mut any);
            self.values(s, &mut any);
        }
        request.remove("csrf_token");
        answer.remove("success");
        (request, answer, any)
    }
}

/// A row to paste for a route the tables lack.
fn suggested_row(api: &OpenApi, r: &Route) -> String {
    let (method, path) = route_key(r);
    let path = path.replace("{}", "{id}");
    let list = |s: &BTreeSet<String>| {
        if s.is_empty() { "—".to_string() } else { s.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ") }
    };
    match api.operation(&method, &route_key(r).1) {
        Some(op) => {
            let (req, ans, _) = api.fields(op);
            let ans: Vec<&str> = ans.iter().map(String::as_str).collect();
            format!("| `{method} {path}` | {} | `{{{}}}` |", list(&req), ans.join(", "))
        }
        None => format!("| `{method} {path}` | (its fields) | (what it answers) |"),
    }
}

/// Checks the rows' fields against the document: every field of the request
/// and of the success answer named, and nothing named that neither has.
fn field_problems(api: &OpenApi, file: &str, rows: &[Row]) -> Vec<String> {
    let literal = |w: &str| ["true", "false", "null", "on"].contains(&w);
    let mut problems = Vec::new();
    for row in rows {
        let [(method, path)] = row.routes.as_slice() else { continue };
        let Some(op) = api.operation(method, path) else { continue };
        let (request, answer, any) = api.fields(op);
        let at = format!("{file}:{} (`{method} {path}`)", row.line);
        let (named_fields, named_answer) = (words(&row.fields), words(&row.answer));
        let lacks: Vec<&String> = request.iter().filter(|f| !named_fields.contains(*f)).collect();
        if !lacks.is_empty() {
            problems.push(format!("{at}: the fields column lacks {lacks:?} (docs/openapi.json's request body)"));
        }
        let lacks: Vec<&String> = answer.iter().filter(|f| !named_answer.contains(*f)).collect();
        if !lacks.is_empty() {
            problems.push(format!("{at}: the answer column lacks {lacks:?} (docs/openapi.json's 2xx answer)"));
        }
        let stale: Vec<&String> =
            named_fields.iter().chain(&named_answer).filter(|w| !any.contains(*w) && !literal(w)).collect();
        if !stale.is_empty() {
            problems.push(format!("{at}: names {stale:?}, which docs/openapi.json does not have for this operation"));
        }
    }
    problems
}

#[test]
fn docs_reference_lists_every_route_with_its_fields() {
    let api = OpenApi::load();
    let text = read("docs/reference.md");
    let rows = route_rows(&text);
    let documented: BTreeSet<(String, String)> = rows.iter().flat_map(|r| r.routes.clone()).collect();
    let routed: BTreeSet<(String, String)> = ROUTES.iter().map(route_key).collect();

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for r in ROUTES {
        let key = route_key(r);
        if !documented.contains(&key) && seen.insert(key.clone()) {
            problems.push(format!(
                "docs/reference.md has no row for `{} {}` (route {:?}); add one to its table, e.g.\n    {}",
                key.0,
                key.1,
                r.name,
                suggested_row(&api, r)
            ));
        }
    }
    for row in &rows {
        for (m, p) in &row.routes {
            if !routed.contains(&(m.clone(), p.clone())) {
                problems.push(format!("docs/reference.md:{}: `{m} {p}` is not a route (portal::ROUTES)", row.line));
            }
        }
    }
    problems.extend(field_problems(&api, "docs/reference.md", &rows));

    // A form takes the fields of its JSON twin (the same handler).
    for row in &rows {
        let [(method, path)] = row.routes.as_slice() else { continue };
        if path.starts_with(&format!("{PREFIX}/api/")) {
            continue;
        }
        let Some(form) = ROUTES.iter().find(|r| route_key(r) == (method.clone(), path.clone())) else { continue };
        let twin = ROUTES.iter().find(|r| {
            r.same_endpoint(form) && route_key(r).1.starts_with(&format!("{PREFIX}/api/")) && method == "POST"
        });
        let Some(op) = twin.and_then(|t| api.operation(&route_key(t).0, &route_key(t).1)) else { continue };
        let (request, _, _) = api.fields(op);
        let named = words(&row.fields);
        let lacks: Vec<&String> = request.iter().filter(|f| !named.contains(*f)).collect();
        if !lacks.is_empty() {
            problems.push(format!(
                "docs/reference.md:{} (`{method} {path}`): the fields column lacks {lacks:?}, which its JSON twin `{}` takes",
                row.line,
                route_key(twin.unwrap()).1
            ));
        }
    }
    assert!(problems.is_empty(), "docs/reference.md is out of date:\n  {}", problems.join("\n  "));
}

/// The README's JSON API table may leave routes out, but what it says of a
/// route is what docs/openapi.json says.
#[test]
fn the_readmes_api_table_agrees_with_the_openapi_document() {
    let api = OpenApi::load();
    let rows = route_rows(&read("README.md"));
    assert!(rows.iter().any(|r| r.routes.iter().any(|(_, p)| p == "/_auth/api/me")), "README lists GET api/me");
    let routed: BTreeSet<(String, String)> = ROUTES.iter().map(route_key).collect();
    let mut problems = field_problems(&api, "README.md", &rows);
    for row in &rows {
        for (m, p) in &row.routes {
            if !routed.contains(&(m.clone(), p.clone())) {
                problems.push(format!("README.md:{}: `{m} {p}` is not a route (portal::ROUTES)", row.line));
            }
        }
    }
    assert!(problems.is_empty(), "README.md's JSON API table is out of date:\n  {}", problems.join("\n  "));
}

/// The limits the README tells a tester about are the defaults.
#[test]
fn the_readmes_login_limits_are_the_defaults() {
    let readme = read("README.md");
    let start = readme.find("**Trying it out, and the login limits").expect("the README's paragraph on login limits");
    let paragraph = &readme[start..];
    let end = ["\n- ", "\n\n"].iter().filter_map(|e| paragraph.find(e)).min().unwrap_or(paragraph.len());
    let paragraph = &paragraph[..end];
    let dir = tempfile::tempdir().unwrap();
    let defaults = printed_config(dir.path(), None);
    let mut stated = 0;
    for span in code_spans(paragraph) {
        let Some((key, value)) = span.split_once(" = ") else { continue };
        let default = defaults_value(&defaults, key).unwrap_or_else(|| panic!("README names {key}, not a key"));
        // The value as a TOML document would read it.
        let value = format!("v = {value}").parse::<toml::Table>().expect("a TOML value")["v"].clone();
        assert_eq!(&value, default, "README says {span}; the default is {default}");
        stated += 1;
    }
    assert!(stated >= 4, "{paragraph}");
    assert!(paragraph.contains("portcullis unlock --ip"), "{paragraph}");
}
