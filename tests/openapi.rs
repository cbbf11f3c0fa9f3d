//! The JSON API's contract: docs/openapi.json and the portal's route table
//! (`portal::ROUTES`) name the same operations, and the gateway serves the
//! document it was built with at `/_auth/api/openapi.json`.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;

use portcullis::portal::{Methods, PathRule, ROUTES};
use serde_json::Value;
use support::flow::{Backend, Harness, Options};

/// The document describes the default `auth.prefix`.
const PREFIX: &str = "/_auth";
const DOCUMENT: &str = include_str!("../docs/openapi.json");

fn methods(m: Methods) -> &'static [&'static str] {
    match m {
        Methods::Read => &["get", "head"],
        Methods::Get => &["get"],
        Methods::Post => &["post"],
        Methods::Delete => &["delete"],
        Methods::Any => &["get", "head", "post", "put", "delete", "patch", "options"],
    }
}

/// The route's path as the document spells it: a prefix route's parameter
/// becomes a template (`/api/sessions/` → `/api/sessions/{id}`).
fn documented_path(rule: PathRule, doc_paths: &BTreeSet<String>) -> Option<String> {
    match rule {
        PathRule::Exact(p) => Some(format!("{PREFIX}{p}")),
        PathRule::Prefix(p) => {
            let base = format!("{PREFIX}{p}");
            doc_paths.iter().find(|d| d.strip_prefix(&base).is_some_and(|rest| rest.starts_with('{'))).cloned()
        }
    }
}

/// (path, method) of every operation the document lists.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "head", "post", "put", "delete", "patch", "options", "trace"].contains(&method.as_str()) {
                ops.insert((path.clone(), method.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_api_route_is_documented_and_every_documented_operation_is_routed() {
    let doc: Value = serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON");
    let documented = documented_operations(&doc);
    let doc_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    let api = |rule: PathRule| matches!(rule, PathRule::Exact(p) | PathRule::Prefix(p) if p.starts_with("/api/"));

    let mut routed = BTreeSet::new();
    for route in ROUTES.iter().filter(|r| api(r.path)) {
        let path = documented_path(route.path, &doc_paths)
            .unwrap_or_else(|| panic!("{:?} ({}) has no templated path in the document", route.path, route.name));
        for m in methods(route.methods) {
            routed.insert((path.clone(), m.to_string()));
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routed but not in docs/openapi.json: {undocumented:?}");
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "in docs/openapi.json but not routed: {unrouted:?}");
    assert!(documented.contains(&(format!("{PREFIX}/api/openapi.json"), "get".into())), "the document lists itself");
}

#[tokio::test]
async fn the_gateway_serves_its_openapi_document_cacheably() {
    let h = Harness::start(Backend::Memory, Options::default()).await.expect("memory harness");
    let url = h.url("/_auth/api/openapi.json");
    let r = h.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=3600");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), DOCUMENT, "the served document is the repository's");

    let again = h.http.get(&url).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "a cached copy is revalidated by its ETag");
    assert!(again.bytes().await.unwrap().is_empty());

    let post = h.http.post(&url).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(post.status(), 404, "only GET is routed, as the document says");
}
