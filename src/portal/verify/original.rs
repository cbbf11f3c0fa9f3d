//! What every dialect reads: the original request, in normal form, and why
//! one is refused.

use std::borrow::Cow;

use http::Method;
use http::header::{HeaderMap, HeaderName};

use crate::normalize::{self, UrlError};

pub(super) const MISSING: &str = "forward-auth needs X-Original-URL or X-Forwarded-Proto/-Host/-Uri";

/// The request the proxy is asking about, in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original<'a> {
    pub scheme: &'static str,
    /// Lower-case host name without port or trailing dot.
    pub host: Cow<'a, str>,
    pub port: Option<u16>,
    /// The normalised path.
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
    pub method: Method,
}

impl<'a> Original<'a> {
    pub(super) fn new(url: normalize::Url<'a>, method: Method) -> Original<'a> {
        let normalize::Url { scheme, host, path, query } = url;
        Original { scheme, host: host.name, port: host.port, path, query, method }
    }

    /// The URL the login page sends the browser back to.
    pub fn url(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = self.query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}://{}{port}{}{query}", self.scheme, self.host, self.path)
    }
}

pub(super) fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty())
}

/// Why a stated original request is refused: never guessed at, since a
/// proxy that built the URL from a client's Host would otherwise let the
/// client choose what is checked.
pub(super) fn refused(e: UrlError) -> &'static str {
    match e {
        UrlError::NotAbsolute => "the original URL is not an absolute http(s) URL",
        UrlError::Host => "the original host is not a valid host[:port]",
        UrlError::Target => "the original URI is not an absolute path",
        UrlError::Path => "the original path cannot be normalised safely",
    }
}
