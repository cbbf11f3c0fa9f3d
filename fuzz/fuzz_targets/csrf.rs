//! The CSRF check every state-changing route runs (`portal::Csrf::allows`):
//! a same-origin `Origin` (or, without one, `Referer`), or a signed token
//! bound to one of the visitor's cookies.
//!
//! Input: `Name: value` lines: `Origin`, `Referer`, `X-CSRF-Token` (sent as
//! a header) or `csrf_token` (sent as a form field), and `binding` (the
//! visitor's cookie value). A token value `MINTED` stands for the token the
//! gateway issued for this binding, `OTHER` for one issued to another.
//!
//! Properties: a request that is not same-origin passes only with exactly
//! the token minted for its binding (never with a fuzzed one, nor with one
//! minted for another visitor, nor without a binding); a same-origin
//! request passes; the verdict is the same for the token as a header or
//! as a field.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue, ORIGIN, REFERER};
use libfuzzer_sys::fuzz_target;
use portcullis::clock::Clock;
use portcullis::portal::{Csrf, Fields};
use portcullis_fuzz::{header_lines, lines, text};

const PUBLIC_ORIGIN: &str = "https://auth.example.com";

fuzz_target!(|data: &[u8]| {
    let csrf = Csrf::new(
        b"fuzzing-secret-fuzzing-secret-32".as_slice().into(),
        PUBLIC_ORIGIN,
        Clock::manual(1_800_000_000_000),
    );
    let mut headers = HeaderMap::new();
    let mut fields = Fields::default();
    let mut binding: Option<String> = None;
    let mut token: Option<String> = None;
    for (name, value) in header_lines(&lines(data)) {
        match name.to_ascii_lowercase().as_str() {
            "binding" => binding = text(value).map(str::to_string),
            "x-csrf-token" | "csrf_token" => {
                let Some(v) = text(value) else { continue };
                let v = match (v, &binding) {
                    ("MINTED", Some(b)) => csrf.token(b),
                    ("OTHER", _) => csrf.token("another-visitor"),
                    (v, _) => v.to_string(),
                };
                if name.eq_ignore_ascii_case("csrf_token") {
                    fields.insert("csrf_token", &v);
                } else if let Ok(h) = HeaderValue::from_str(&v) {
                    headers.insert(HeaderName::from_static("x-csrf-token"), h);
                }
                token = Some(v);
            }
            other => {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(other.as_bytes()), HeaderValue::from_bytes(value)) {
                    headers.append(n, v);
                }
            }
        }
    }
    let binding = binding.as_deref();
    let allowed = csrf.allows(&headers, &fields, binding);

    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let same_origin = match origin {
        Some(o) if o != "null" => o == PUBLIC_ORIGIN,
        _ => headers
            .get(REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .is_some_and(|u| u.origin().ascii_serialization() == PUBLIC_ORIGIN),
    };
    if same_origin {
        assert!(allowed, "a same-origin request was refused");
        return;
    }
    if !allowed {
        return;
    }
    // Passed without being same-origin: only with the very token minted for the binding.
    let b = binding.expect("passed without a binding cookie");
    let carried = fields.get("csrf_token").or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    let carried = carried.expect("passed without a token").trim();
    assert_eq!(carried, csrf.token(b), "passed with a token not minted for {b:?} (carried {token:?})");
    // The same token in the other place is as good.
    let mut moved_headers = headers.clone();
    moved_headers.remove("x-csrf-token");
    let mut moved_fields = Fields::default();
    moved_fields.insert("csrf_token", carried);
    assert!(csrf.allows(&moved_headers, &moved_fields, binding));
});
