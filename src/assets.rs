//! Static assets (one stylesheet, one script, an icon) embedded into the binary and
//! served under `{prefix}/static/`.
//!
//! Shipping them inside the binary means no CDN and no files to deploy, and lets
//! the pages run under `script-src 'self'; style-src 'self'`. Each asset carries a
//! strong ETag derived from its bytes, computed once on first use, so browsers
//! revalidate cheaply and a new release never serves a stale cached file.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// Strong ETag derived from the content (quoted, ready for the header).
    pub etag: &'static str,
}

/// An embedded file before its ETag is known.
struct Source {
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

const SOURCES: &[Source] = &[
    Source {
        path: "portcullis.css",
        body: include_bytes!("../templates/static/portcullis.css"),
        content_type: "text/css; charset=utf-8",
    },
    Source {
        path: "portcullis.js",
        body: include_bytes!("../templates/static/portcullis.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Source {
        path: "passkey.js",
        body: include_bytes!("../templates/static/passkey.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Source {
        path: "favicon.svg",
        body: include_bytes!("../templates/static/favicon.svg"),
        content_type: "image/svg+xml",
    },
];

/// The assets with their ETags, hashed once for the life of the process.
static ASSETS: LazyLock<Vec<(&'static str, String, &'static Source)>> =
    LazyLock::new(|| SOURCES.iter().map(|s| (s.path, etag_of(s.body), s)).collect());

/// The JSON API's OpenAPI document (`docs/openapi.json`, the file the
/// repository keeps and schemathesis checks), served at
/// `{prefix}/api/openapi.json`.
pub fn openapi() -> Asset {
    static DOCUMENT: &[u8] = include_bytes!("../docs/openapi.json");
    static ETAG: LazyLock<String> = LazyLock::new(|| etag_of(DOCUMENT));
    Asset { body: DOCUMENT, content_type: "application/json", etag: ETAG.as_str() }
}

/// `"` + first 16 bytes of SHA-256 in hex + `"`: collisions are irrelevant at
/// this size, and the quotes make it a valid strong entity tag.
fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// Looks up `path` relative to static/ (e.g. "portcullis.css"). Only the exact
/// embedded names match, so no path can escape the set.
pub fn find(path: &str) -> Option<Asset> {
    let assets: &'static [(&'static str, String, &'static Source)] = ASSETS.as_slice();
    assets.iter().find(|(name, _, _)| *name == path).map(|(_, etag, source)| Asset {
        body: source.body,
        content_type: source.content_type,
        etag: etag.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_asset_is_found_with_its_type() {
        let css = find("portcullis.css").map(|a| a.content_type);
        assert_eq!(css, Some("text/css; charset=utf-8"));
        let js = find("portcullis.js").map(|a| a.content_type);
        assert_eq!(js, Some("text/javascript; charset=utf-8"));
        let svg = find("favicon.svg").map(|a| a.content_type);
        assert_eq!(svg, Some("image/svg+xml"));
    }

    #[test]
    fn the_openapi_document_is_embedded_as_json() {
        let doc = openapi();
        let value: serde_json::Value = serde_json::from_slice(doc.body).expect("docs/openapi.json is JSON");
        assert_eq!(value["openapi"], "3.1.0");
        assert_eq!(doc.etag, etag_of(doc.body));
        assert!(find("openapi.json").is_none(), "served by its own route, not under static/");
    }

    #[test]
    fn unknown_or_traversing_paths_are_not_found() {
        for p in ["", "nope.css", "../render.rs", "/portcullis.css", "PORTCULLIS.CSS"] {
            assert!(find(p).is_none(), "{p}");
        }
    }

    #[test]
    fn etag_is_a_stable_quoted_content_hash() {
        let (Some(a), Some(b), Some(c)) = (find("portcullis.css"), find("portcullis.css"), find("portcullis.js"))
        else {
            panic!("assets missing");
        };
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert_eq!(a.etag.len(), 34);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
        assert_eq!(a.etag, etag_of(a.body));
        assert!(!a.body.is_empty());
    }
}
