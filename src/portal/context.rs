//! What every portal handler works with: the [`Portal`] (the handles and
//! settings built once at start-up) and [`Cx`], one request to the portal with
//! the reply format chosen for it.

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri, header};
use hyper::body::Incoming;

use super::forms::{self, Csrf, Fields, Redirects};
use crate::auth::Client;
use crate::auth::account::AccountActions;
use crate::auth::login::{Completed, LoginFlow};
use crate::auth::operator::OperatorActions;
use crate::auth::users::User;
use crate::body::Response;
use crate::gate::{Authenticated, Gate, Target};
use crate::identity::IdentityHeaders;
use crate::reply::{self, Failure, Format, Replies};
use crate::request::RequestInfo;
use crate::session::SessionCookies;
use crate::store::Store;

/// Settings the portal's pages and replies need besides its handles.
pub struct PortalSettings {
    pub prefix: String,
    /// Scheme, host and port of `public_url`.
    pub public_origin: String,
    /// Lifetime of a remember-me session cookie.
    pub remember_me: std::time::Duration,
    pub pending_login_ttl: std::time::Duration,
    pub otp_ttl_secs: u64,
    pub resend_cooldown_secs: u64,
    /// How long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Digits of an e-mailed code: the forms ask for exactly that many.
    pub otp_digits: u32,
    /// Digits of an authenticator app's code (`totp.digits`).
    pub totp_digits: u32,
    /// Members of this group reach the operator console (`auth.admin_group`).
    pub admin_group: String,
}

/// Everything the portal's handlers use.
pub struct Portal {
    pub gate: Arc<Gate>,
    pub login: LoginFlow,
    pub account: AccountActions,
    pub reset: crate::auth::reset::PasswordReset,
    /// What the operator console does and reads.
    pub operator: OperatorActions,
    pub store: Store,
    pub replies: Arc<Replies>,
    pub cookies: SessionCookies,
    pub csrf: Csrf,
    pub redirects: Redirects,
    pub identity: Arc<IdentityHeaders>,
    pub settings: PortalSettings,
    /// `WWW-Authenticate: Basic realm="<app name>"`, where tokens are accepted.
    pub basic_challenge: http::HeaderValue,
    /// The gateway's clock (the console shows when locks end).
    pub clock: crate::clock::Clock,
}

/// A handler's answer, with the logged-in user for the access log.
pub type Answer = (Response, Option<Arc<User>>);

pub fn anonymous(r: Response) -> Answer {
    (r, None)
}

/// One request to the portal: its facts and the reply format chosen for it.
pub struct Cx<'a> {
    pub portal: &'a Portal,
    pub info: RequestInfo,
    pub format: Format,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

impl Cx<'_> {
    /// Who is asking: the client IP (trusted-proxy aware) and user agent.
    pub fn client(&self) -> Client {
        let ua = self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Client::new(self.info.client_ip.to_string(), ua)
    }

    /// The failure as this request's reply format wants it.
    pub fn fail(&self, failure: impl Into<Failure>) -> Response {
        self.portal.replies.failure(self.format, &failure.into())
    }

    /// Reads the body, checks CSRF and reads the endpoint's typed form
    /// (`Fields::parse`); an `Err` is the response to send.
    pub async fn form<T: serde::de::DeserializeOwned>(&self, body: Incoming) -> Result<T, Response> {
        let timeout = self.portal.settings.body_read_timeout;
        let fields = forms::read_fields(self.headers, body, timeout).await.map_err(|e| self.fail(e))?;
        let binding = self.portal.cookies.csrf_binding(self.headers);
        if !self.portal.csrf.allows(self.headers, &fields, binding) {
            return Err(self.fail(Failure::CrossSite));
        }
        fields.parse().map_err(|e| self.fail(e))
    }

    pub fn query(&self) -> Fields {
        forms::query(self.uri)
    }

    /// The logged-in session for an account page or call (`target`: the
    /// account pages, or adding a factor), or the answer for a visitor
    /// without one (a browser is sent to log in and back, anything else gets
    /// a 401) or with a session below the level `target` needs (asked for
    /// the second factor: step-up).
    pub async fn session(&self, target: Target<'_>) -> Result<Authenticated, Response> {
        let auth = self.logged_in().await?;
        self.at_level(&auth, target).await?;
        Ok(auth)
    }

    /// The logged-in session at whatever level it has (a form then checks
    /// CSRF before `at_level`, so a cross-site request is refused as such).
    pub async fn logged_in(&self) -> Result<Authenticated, Response> {
        self.logged_in_back("/account").await
    }

    /// As [`Cx::logged_in`], a browser coming back to `back` (under the
    /// prefix) once logged in.
    pub async fn logged_in_back(&self, back: &str) -> Result<Authenticated, Response> {
        match self.portal.gate.authenticate(self.headers).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(self.send_to_login(Failure::Unauthenticated, back)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// `Ok` when `auth` is at the level `target` needs, else the step-up answer.
    pub async fn at_level(&self, auth: &Authenticated, target: Target<'_>) -> Result<(), Response> {
        self.at_level_back(auth, target, "/account").await
    }

    /// As [`Cx::at_level`], a browser coming back to `back` (under the
    /// prefix) once it has the second factor.
    pub async fn at_level_back(&self, auth: &Authenticated, target: Target<'_>, back: &str) -> Result<(), Response> {
        match self.portal.account.required_level(&auth.user, target).await {
            Ok(needed) if auth.record.level >= needed => Ok(()),
            Ok(_) => Err(self.send_to_login(Failure::StepUp, back)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// A browser goes to the login page (which offers the second factor to a
    /// one-factor session), coming back to `back`; JSON gets `why`.
    fn send_to_login(&self, why: Failure, back: &str) -> Response {
        match self.format {
            Format::Html => {
                let url = format!("{}{}{back}", self.portal.settings.public_origin, self.portal.settings.prefix);
                self.portal.login_required(&Method::GET, self.headers, &url, false)
            }
            Format::Json => self.fail(why),
        }
    }

    /// `{prefix}{path}`.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.portal.settings.prefix)
    }
}

impl Portal {
    /// The answer to a request that must log in first: browsers are sent to
    /// the login page with `rd`, everything else gets a 401 (where access
    /// tokens are accepted, `tokens`, one that invites HTTP Basic, so a
    /// client that can send a token as a password prompts for it).
    pub fn login_required(&self, method: &Method, headers: &HeaderMap, original_url: &str, tokens: bool) -> Response {
        let mut r = if reply::is_navigation(method, headers) {
            reply::redirect(StatusCode::FOUND, &self.login_url(original_url))
        } else {
            let mut r = reply::json_error(StatusCode::UNAUTHORIZED, "authentication required");
            if tokens {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, self.basic_challenge.clone());
            }
            r
        };
        r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        r
    }

    /// The login page, with `original_url` percent-encoded as its return address.
    pub fn login_url(&self, original_url: &str) -> String {
        let mut location = format!("{}{}/login?rd=", self.settings.public_origin, self.settings.prefix);
        location.extend(form_urlencoded::byte_serialize(original_url.as_bytes()));
        location
    }

    /// Ends any session the browser carried before a login (rotation: the
    /// old id is dead); returns the cookies to set: the new session's, and
    /// the pending login's cleared.
    pub async fn finish_login(&self, headers: &HeaderMap, done: &Completed) -> [http::HeaderValue; 2] {
        if let Some(old) = self.cookies.session_token(headers)
            && old != done.token
            && let Err(e) = self.store.delete_session(old).await
        {
            tracing::warn!(error = %e, "previous session not deleted");
        }
        let persistent = done.remember_me.then_some(self.settings.remember_me);
        [self.cookies.session(&done.token, persistent), self.cookies.clear(&self.cookies.pending_name)]
    }

    pub async fn readyz(&self) -> Response {
        match self.store.ping().await {
            Ok(()) => reply::json(StatusCode::OK, &serde_json::json!({"status": "ready", "store": "ok"})),
            // The cause (which may name hosts, ports or the server's words)
            // is for the log; anyone may ask this endpoint.
            Err(e) => {
                tracing::warn!(error = %e, "not ready: store unreachable");
                reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "unavailable", "store": "unavailable"}),
                )
            }
        }
    }
}

/// RFC 3339 UTC time of a unix timestamp.
pub fn format_time(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
