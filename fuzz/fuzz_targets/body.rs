//! The bodies of the API routes (`portal::parse_fields`: a JSON object or a
//! urlencoded form, as every POST handler reads them).
//!
//! Input: line 1 the `Content-Type`, the rest the body.
//!
//! Properties: a form always parses; JSON parses only when it is an object of
//! strings, numbers, booleans and nulls, and then each field is the value's
//! text (null absent); the parsed fields, written back as a form or as JSON,
//! parse to the same fields; a field read with `get` is never empty and
//! `flag` implies it.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use portcullis::portal::{Fields, parse_fields};

fn map(f: &Fields) -> BTreeMap<String, String> {
    f.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fuzz_target!(|data: &[u8]| {
    let (ctype, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(ctype) = std::str::from_utf8(ctype) else {
        return;
    };
    let json = ctype.starts_with("application/json") || (ctype.is_empty() && body.first() == Some(&b'{'));
    let fields = match parse_fields(ctype, body) {
        Ok(f) => f,
        Err(_) => {
            assert!(json, "a form body was refused");
            return;
        }
    };
    let m = map(&fields);
    if json && !body.iter().all(u8::is_ascii_whitespace) {
        let v: serde_json::Value = serde_json::from_slice(body).expect("accepted JSON is JSON");
        let obj = v.as_object().expect("accepted JSON is an object");
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Null => None,
                other => panic!("{other} accepted as a field"),
            };
            assert_eq!(m.get(k), text.as_ref(), "field {k:?}");
        }
    }
    for (k, _) in fields.iter() {
        if let Some(v) = fields.get(k) {
            assert!(!v.is_empty());
        }
        if fields.flag(k) {
            assert!(fields.get(k).is_some());
        }
    }
    // Written back as a form, and as JSON, the fields read the same.
    let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(m.iter()).finish();
    let back = parse_fields("application/x-www-form-urlencoded", form.as_bytes()).expect("a form parses");
    assert_eq!(map(&back), m, "form round trip");
    let as_json = serde_json::to_vec(&m).unwrap();
    let back = parse_fields("application/json", &as_json).expect("an object of strings parses");
    assert_eq!(map(&back), m, "JSON round trip");
});
