//! Access-rule matching (`access::AccessRules::policy`) for requests as the
//! gateway sees them (path and host normalised by `normalize`).
//!
//! Input: line 1 `METHOD host path client-ip user groups` (space-separated,
//! groups comma-separated; user `-` for none), then the `[access_control]`
//! section as TOML (`default_policy`, `[[rules]]`), parsed as the config
//! file's is.
//!
//! Properties: a path's verdict equals its normal form's, and every other
//! spelling of the same path (dot segments, detours, escaped unreserved
//! characters, doubled slashes, lower-case hex) gets the same verdict; the
//! host's case, trailing dot and port do not change it; a verdict reached
//! without the user is the verdict for every user (identity only matters
//! where the anonymous check said "needs identity"), and once the user is
//! known the answer is a policy; a wildcard domain never matches its apex or
//! a look-alike. Segment parameters (`;x`, which Tomcat, Jetty and Spring
//! drop) never loosen a verdict: a path with them is decided at least as
//! strictly as the path without them, and adding `;x` to any segment of a
//! path without parameters gives a verdict at least as strict as its own.
#![no_main]

use std::net::IpAddr;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis::access::{AccessRules, Decision, Resource, Who, domain_matches, stricter};
use portcullis::config::AccessControlConfig;
use portcullis::normalize;
use portcullis_fuzz::respellings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (request, rules) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(cfg) = toml::from_str::<AccessControlConfig>(rules) else {
        return;
    };
    let access = AccessRules::new(&cfg);
    let mut words = request.split(' ');
    let (Some(method), Some(host), Some(raw_path)) = (words.next(), words.next(), words.next()) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let ip: IpAddr = words.next().and_then(|i| i.parse().ok()).unwrap_or(IpAddr::from([10, 0, 0, 1]));
    let user = words.next().filter(|u| *u != "-").unwrap_or("alice");
    let groups: Vec<String> =
        words.next().unwrap_or("").split(',').filter(|g| !g.is_empty()).map(String::from).collect();

    // What the router refuses never reaches the rules.
    let (Ok(path), Ok(host)) = (normalize::path(raw_path), normalize::host(host)) else {
        return;
    };
    let decide = |host: &str, path: &str, user: Option<(&str, &[String])>| {
        let who = user.map(|(user, groups)| Who { user, groups });
        access.policy(&Resource { host, path, method: &method, ip }, who)
    };
    let verdict = decide(&host.name, &path, None);

    let again = normalize::path(&path).expect("a normal path normalises");
    assert_eq!(decide(&host.name, &again, None), verdict);
    if raw_path.starts_with('/') {
        for other in respellings(raw_path) {
            let other = normalize::path(&other).expect("a respelling normalises");
            assert_eq!(decide(&host.name, &other, None), verdict, "{other:?}");
        }
    }
    if !host.name.starts_with('[') {
        let variant = format!("{}.:8443", host.name.to_ascii_uppercase());
        let h2 = normalize::host(&variant).expect("case, a trailing dot and a port are allowed");
        assert_eq!(decide(&h2.name, &path, None), verdict, "{variant:?}");
    }

    let known = decide(&host.name, &path, Some((user, &groups)));
    assert_ne!(known, Decision::NeedsIdentity, "a known user still needs identity");
    match verdict {
        Decision::Policy(_) => assert_eq!(known, verdict, "{user} in {groups:?} changed an anonymous verdict"),
        Decision::NeedsIdentity => assert!(access.identity_dependent),
    }

    // Parameters never loosen a verdict, read either way.
    let who = Some((user, groups.as_slice()));
    let at_least_as_strict = |with: Decision, without: Decision, what: &str| {
        if let (Decision::Policy(w), Decision::Policy(o)) = (with, without) {
            assert_eq!(stricter(w, o), w, "{what}: {w:?} is looser than {o:?}");
        }
    };
    if let Some(bare) = normalize::without_parameters(&path) {
        at_least_as_strict(decide(&host.name, &path, who), decide(&host.name, &bare, who), &path);
    }
    if !path.contains(';') {
        let ends = path.match_indices('/').skip(1).take(4).map(|(at, _)| at).chain([path.len()]);
        for at in ends {
            let with = format!("{};x{}", &path[..at], &path[at..]);
            if let Ok(with) = normalize::path(&with) {
                at_least_as_strict(decide(&host.name, &with, who), known, &with);
            }
        }
    }

    for rule in &cfg.rules {
        for d in rule.domain.iter().filter(|d| d.starts_with("*.")) {
            let d = d.to_ascii_lowercase();
            if domain_matches(d.trim_end_matches('.'), &host.name) {
                let suffix = &d.trim_end_matches('.')[1..];
                assert!(host.name.ends_with(suffix) && host.name.len() > suffix.len(), "{d} matched {}", host.name);
            }
        }
    }
});
