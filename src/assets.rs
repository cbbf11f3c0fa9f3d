//! Static assets (one stylesheet, one script, icons) embedded into the binary and
//! served under `{prefix}/static/`. API contract skeleton.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// Strong ETag derived from the content at build time.
    pub etag: &'static str,
}

/// Looks up `path` relative to static/ (e.g. "portcullis.css").
#[allow(unused_variables)]
pub fn find(path: &str) -> Option<Asset> {
    todo!()
}
