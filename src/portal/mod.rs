//! The gateway's own endpoints under `auth.prefix`: the login pages and their
//! JSON twins, the account page and API, forward-auth, health and static
//! files. [`ROUTES`] lists every endpoint; each endpoint has one handler that
//! serves both HTML and JSON, with the reply format chosen once per request
//! from the route (pages answer HTML, `api/*` answers JSON, a few negotiate by
//! `Accept`). Handlers speak HTTP; decisions live in `auth` and `gate`, state
//! in `store`, and failures become responses in `reply`.

mod account;
mod console;
mod context;
mod forms;
mod login;
mod outcome;
mod pages;
mod password;
mod verify;

use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{Body, Response};
use crate::reply::{self, Failure, Format};
use crate::request::{Outcome, RequestInfo};
use console::Action;
use context::{Cx, anonymous};

pub use context::{Portal, PortalSettings, format_time};
pub use forms::{Csrf, Fields, Redirects, parse_fields};
/// The forward-auth request reconstruction, public for the fuzz targets.
#[doc(hidden)]
pub use verify::{Original, original};

/// Which methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// GET and HEAD.
    Read,
    Get,
    Post,
    Delete,
    Any,
}

impl Methods {
    fn allows(self, m: &Method) -> bool {
        match self {
            Methods::Read => m == Method::GET || m == Method::HEAD,
            Methods::Get => m == Method::GET,
            Methods::Post => m == Method::POST,
            Methods::Delete => m == Method::DELETE,
            Methods::Any => true,
        }
    }
}

/// How a route's path is matched against the path after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    Exact(&'static str),
    /// The path starts with this; the rest is a parameter (a session id, a file).
    Prefix(&'static str),
}

/// How a route's reply format is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormatRule {
    Html,
    Json,
    /// HTML for browsers (`Accept: text/html`), JSON otherwise.
    ByAccept,
}

/// What an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    LoginPage,
    Password,
    StepUp,
    CodePage,
    Code,
    BackupCode,
    Resend,
    LogoutPage,
    Logout,
    Account,
    Me,
    ToggleOtp,
    ConfirmOtp,
    BackupCodes,
    TotpSetup,
    TotpConfirm,
    TotpRemove,
    PasskeyRegisterStart,
    PasskeyRegisterFinish,
    PasskeyRemove,
    PasskeyLoginStart,
    PasskeyLoginFinish,
    RevokeSession,
    RevokeOthers,
    TokenCreate,
    Tokens,
    TokenRevoke,
    Sessions,
    PasswordPage,
    PasswordChange,
    ResetPage,
    Reset,
    ResetStart,
    ResetFinish,
    Verify,
    Healthz,
    Readyz,
    Static,
    OpenApi,
    ConsoleUsers,
    ConsoleBans,
    ConsoleAudit,
    ConsoleExport,
    Console(console::Action),
}

/// One endpoint under the prefix.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub methods: Methods,
    pub path: PathRule,
    /// Bounded name for metrics and the access log.
    pub name: &'static str,
    endpoint: Endpoint,
    format: FormatRule,
}

impl Route {
    /// Whether `other` is served by the same handler (a form and its JSON
    /// twin take the same fields; docs/reference.md is checked by it).
    pub fn same_endpoint(&self, other: &Route) -> bool {
        self.endpoint == other.endpoint
    }
}

const fn route(methods: Methods, path: PathRule, name: &'static str, endpoint: Endpoint, format: FormatRule) -> Route {
    Route { methods, path, name, endpoint, format }
}

use Endpoint as E;
use FormatRule as R;
use Methods as M;
use PathRule::{Exact, Prefix};

/// Every endpoint of the portal, first match wins (no two match the same
/// request, so the order only sets how soon one is found). Paths are relative to
/// `auth.prefix`.
pub static ROUTES: &[Route] = &[
    // First: forward-auth's check comes with every request to every
    // protected application.
    route(M::Any, Exact("/verify"), "verify", E::Verify, R::Json),
    route(M::Read, Exact("/login"), "login", E::LoginPage, R::Html),
    route(M::Post, Exact("/login"), "login", E::Password, R::Html),
    route(M::Post, Exact("/login/step-up"), "login_step_up", E::StepUp, R::Html),
    route(M::Read, Exact("/otp"), "otp", E::CodePage, R::Html),
    route(M::Post, Exact("/otp"), "otp", E::Code, R::Html),
    route(M::Post, Exact("/otp/resend"), "otp_resend", E::Resend, R::Html),
    route(M::Read, Exact("/logout"), "logout", E::LogoutPage, R::Html),
    route(M::Post, Exact("/logout"), "logout", E::Logout, R::ByAccept),
    route(M::Read, Exact("/account"), "account", E::Account, R::Html),
    route(M::Read, Exact("/"), "account", E::Account, R::Html),
    route(M::Post, Exact("/account/otp"), "account_otp", E::ToggleOtp, R::Html),
    route(M::Post, Exact("/account/otp/confirm"), "account_otp_confirm", E::ConfirmOtp, R::Html),
    route(M::Post, Exact("/account/backup-codes"), "account_backup_codes", E::BackupCodes, R::Html),
    route(M::Post, Exact("/account/totp"), "account_totp", E::TotpSetup, R::Html),
    route(M::Post, Exact("/account/totp/confirm"), "account_totp_confirm", E::TotpConfirm, R::Html),
    route(M::Post, Exact("/account/totp/remove"), "account_totp_remove", E::TotpRemove, R::Html),
    route(M::Post, Exact("/account/sessions/revoke"), "account_revoke", E::RevokeSession, R::Html),
    route(M::Post, Exact("/account/sessions/revoke-others"), "account_revoke", E::RevokeOthers, R::Html),
    route(M::Post, Exact("/account/tokens"), "account_tokens", E::TokenCreate, R::Html),
    route(M::Post, Exact("/account/tokens/revoke"), "account_tokens", E::TokenRevoke, R::Html),
    route(M::Read, Exact("/account/password"), "account_password", E::PasswordPage, R::Html),
    route(M::Post, Exact("/account/password"), "account_password", E::PasswordChange, R::Html),
    route(M::Read, Exact("/reset"), "reset", E::ResetPage, R::Html),
    route(M::Post, Exact("/reset"), "reset", E::Reset, R::Html),
    route(M::Post, Exact("/api/send-login-otp"), "api_send_login_otp", E::Password, R::Json),
    route(M::Post, Exact("/api/verify-login-otp"), "api_verify_login_otp", E::Code, R::Json),
    route(M::Post, Exact("/api/verify-backup-code"), "api_verify_backup_code", E::BackupCode, R::Json),
    route(M::Post, Exact("/api/resend-otp"), "api_resend_otp", E::Resend, R::Json),
    route(M::Post, Exact("/api/step-up"), "api_step_up", E::StepUp, R::Json),
    route(M::Get, Exact("/api/me"), "api_me", E::Me, R::Json),
    route(M::Post, Exact("/api/toggle-otp"), "api_toggle_otp", E::ToggleOtp, R::Json),
    route(M::Post, Exact("/api/confirm-enable-otp"), "api_confirm_enable_otp", E::ConfirmOtp, R::Json),
    route(M::Post, Exact("/api/backup-codes"), "api_backup_codes", E::BackupCodes, R::Json),
    route(M::Post, Exact("/api/totp/setup"), "api_totp_setup", E::TotpSetup, R::Json),
    route(M::Post, Exact("/api/totp/confirm"), "api_totp_confirm", E::TotpConfirm, R::Json),
    route(M::Post, Exact("/api/totp/remove"), "api_totp_remove", E::TotpRemove, R::Json),
    route(
        M::Post,
        Exact("/api/passkey/register/start"),
        "api_passkey_register_start",
        E::PasskeyRegisterStart,
        R::Json,
    ),
    route(
        M::Post,
        Exact("/api/passkey/register/finish"),
        "api_passkey_register_finish",
        E::PasskeyRegisterFinish,
        R::Json,
    ),
    route(M::Post, Exact("/api/passkey/remove"), "api_passkey_remove", E::PasskeyRemove, R::Json),
    route(M::Post, Exact("/account/passkey/remove"), "account_passkey_remove", E::PasskeyRemove, R::Html),
    route(M::Post, Exact("/api/passkey/login/start"), "api_passkey_login_start", E::PasskeyLoginStart, R::Json),
    route(M::Post, Exact("/api/passkey/login/finish"), "api_passkey_login_finish", E::PasskeyLoginFinish, R::Json),
    route(M::Post, Exact("/api/tokens"), "api_tokens", E::TokenCreate, R::Json),
    route(M::Get, Exact("/api/tokens"), "api_tokens", E::Tokens, R::Json),
    route(M::Delete, Prefix("/api/tokens/"), "api_tokens", E::TokenRevoke, R::Json),
    route(M::Get, Exact("/api/sessions"), "api_sessions", E::Sessions, R::Json),
    route(M::Delete, Exact("/api/sessions"), "api_sessions", E::RevokeOthers, R::Json),
    route(M::Delete, Prefix("/api/sessions/"), "api_sessions", E::RevokeSession, R::Json),
    route(M::Post, Exact("/api/password"), "api_password", E::PasswordChange, R::Json),
    route(M::Post, Exact("/api/password-reset/start"), "api_password_reset_start", E::ResetStart, R::Json),
    route(M::Post, Exact("/api/password-reset/finish"), "api_password_reset_finish", E::ResetFinish, R::Json),
    route(M::Get, Exact("/api/openapi.json"), "api_openapi", E::OpenApi, R::Json),
    // The operator console: pages, then their JSON twins.
    route(M::Read, Exact("/admin"), "admin", E::ConsoleUsers, R::Html),
    route(M::Read, Exact("/admin/bans"), "admin", E::ConsoleBans, R::Html),
    route(M::Read, Exact("/admin/audit"), "admin", E::ConsoleAudit, R::Html),
    route(M::Post, Exact("/admin/unlock"), "admin_action", E::Console(Action::Unlock), R::Html),
    route(M::Post, Exact("/admin/sessions/revoke"), "admin_action", E::Console(Action::EndSessions), R::Html),
    route(M::Post, Exact("/admin/factors/reset"), "admin_action", E::Console(Action::ResetFactors), R::Html),
    route(M::Post, Exact("/admin/disable"), "admin_action", E::Console(Action::Disable), R::Html),
    route(M::Post, Exact("/admin/enable"), "admin_action", E::Console(Action::Enable), R::Html),
    route(M::Post, Exact("/admin/bans/unlock"), "admin_action", E::Console(Action::Unban), R::Html),
    route(M::Get, Exact("/api/admin/users"), "api_admin", E::ConsoleUsers, R::Json),
    route(M::Get, Exact("/api/admin/bans"), "api_admin", E::ConsoleBans, R::Json),
    route(M::Get, Exact("/api/admin/audit"), "api_admin", E::ConsoleAudit, R::Json),
    route(M::Get, Exact("/api/admin/audit/export"), "api_admin", E::ConsoleExport, R::Json),
    route(M::Post, Exact("/api/admin/unlock"), "api_admin_action", E::Console(Action::Unlock), R::Json),
    route(M::Post, Exact("/api/admin/sessions/revoke"), "api_admin_action", E::Console(Action::EndSessions), R::Json),
    route(M::Post, Exact("/api/admin/factors/reset"), "api_admin_action", E::Console(Action::ResetFactors), R::Json),
    route(M::Post, Exact("/api/admin/disable"), "api_admin_action", E::Console(Action::Disable), R::Json),
    route(M::Post, Exact("/api/admin/enable"), "api_admin_action", E::Console(Action::Enable), R::Json),
    route(M::Post, Exact("/api/admin/bans/unlock"), "api_admin_action", E::Console(Action::Unban), R::Json),
    route(M::Read, Exact("/healthz"), "healthz", E::Healthz, R::Json),
    route(M::Read, Exact("/readyz"), "readyz", E::Readyz, R::Json),
    route(M::Read, Prefix("/static/"), "static", E::Static, R::Json),
];

/// The route for `method` and `path` (after the prefix), and the path's parameter.
fn find_route<'p>(method: &Method, path: &'p str) -> Option<(&'static Route, &'p str)> {
    ROUTES.iter().find_map(|r| {
        if !r.methods.allows(method) {
            return None;
        }
        match r.path {
            Exact(p) => (p == path).then_some((r, "")),
            Prefix(p) => path.strip_prefix(p).map(|rest| (r, rest)),
        }
    })
}

impl Portal {
    /// Answers a request whose path is under the prefix (`rest` is the part
    /// after it).
    pub async fn handle(&self, req: Request<Incoming>, info: RequestInfo, rest: &str) -> Outcome {
        let (parts, body) = req.into_parts();
        let Some((route, param)) = find_route(&parts.method, rest) else {
            let format = Format::negotiate(&parts.headers);
            if is_console(rest) {
                // Under the console, an unknown path (or method) is refused
                // as its routes are to anyone but an operator.
                let cx = Cx { portal: self, info, format, uri: &parts.uri, headers: &parts.headers };
                let (mut r, user) = console::refuse(&cx).await;
                reply::secure_headers(r.headers_mut(), self.replies.hsts());
                return Outcome::with_user("admin", user, r);
            }
            let r = self.replies.failure(format, &Failure::NotFound);
            return Outcome::new("not_found", r);
        };
        let format = match route.format {
            R::Html => Format::Html,
            R::Json => Format::Json,
            R::ByAccept => Format::negotiate(&parts.headers),
        };
        let cx = Cx { portal: self, info, format, uri: &parts.uri, headers: &parts.headers };
        let (mut response, user) = match route.endpoint {
            E::LoginPage => anonymous(login::login_page(&cx).await),
            E::Password => anonymous(login::password(&cx, body).await),
            E::StepUp => anonymous(login::step_up(&cx, body).await),
            E::CodePage => anonymous(login::code_page(&cx).await),
            E::Code => anonymous(login::code(&cx, body, false).await),
            E::BackupCode => anonymous(login::code(&cx, body, true).await),
            E::Resend => anonymous(login::resend(&cx, body).await),
            E::PasskeyLoginStart => anonymous(login::passkey_start(&cx, body).await),
            E::PasskeyLoginFinish => anonymous(login::passkey_finish(&cx, body).await),
            E::LogoutPage => anonymous(login::logout_page(&cx).await),
            E::Logout => anonymous(login::logout(&cx, body).await),
            E::Account => account::view(&cx).await,
            E::Me => account::view(&cx).await,
            E::ToggleOtp => account::toggle_otp(&cx, body).await,
            E::ConfirmOtp => account::confirm_otp(&cx, body).await,
            E::BackupCodes => account::backup_codes(&cx, body).await,
            E::TotpSetup => account::totp_setup(&cx, body).await,
            E::TotpConfirm => account::totp_confirm(&cx, body).await,
            E::TotpRemove => account::totp_remove(&cx, body).await,
            E::PasskeyRegisterStart => account::passkey_register_start(&cx, body).await,
            E::PasskeyRegisterFinish => account::passkey_register_finish(&cx, body).await,
            E::PasskeyRemove => account::passkey_remove(&cx, body).await,
            E::RevokeSession => account::revoke(&cx, body, param).await,
            E::RevokeOthers => account::revoke_others(&cx, body).await,
            E::Sessions => account::sessions(&cx).await,
            E::TokenCreate => account::token_create(&cx, body).await,
            E::Tokens => account::tokens(&cx).await,
            E::TokenRevoke => account::token_revoke(&cx, body, param).await,
            E::PasswordPage => password::change_page(&cx).await,
            E::PasswordChange => password::change(&cx, body).await,
            E::ResetPage => anonymous(password::reset_page(&cx).await),
            E::Reset => anonymous(password::reset(&cx, body, password::ResetStep::ByForm).await),
            E::ResetStart => anonymous(password::reset(&cx, body, password::ResetStep::Start).await),
            E::ResetFinish => anonymous(password::reset(&cx, body, password::ResetStep::Finish).await),
            E::Verify => verify::verify(&cx).await,
            E::Healthz => anonymous(reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            E::Readyz => anonymous(self.readyz().await),
            E::Static => anonymous(static_file(&parts.headers, param)),
            E::OpenApi => anonymous(asset(&parts.headers, crate::assets::openapi())),
            E::ConsoleUsers => console::users(&cx).await,
            E::ConsoleBans => console::bans(&cx).await,
            E::ConsoleAudit => console::audit(&cx).await,
            E::ConsoleExport => console::export(&cx).await,
            E::Console(action) => console::act(&cx, body, action).await,
        };
        match route.endpoint {
            E::Static => {}
            // An allowed forward-auth check answers the proxy's subrequest,
            // which copies identity headers from it and shows no browser
            // anything: page headers there only cost time. Its 401, 302 and
            // 403 reach the browser (Traefik and Caddy pass them on) and get them.
            E::Verify if response.status() == StatusCode::OK => {}
            // The document is the same for everyone until the next release:
            // cacheable, revalidated by its ETag.
            E::OpenApi => {
                reply::secure_headers(response.headers_mut(), self.replies.hsts());
                response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static(CACHEABLE));
            }
            _ => reply::secure_headers(response.headers_mut(), self.replies.hsts()),
        }
        if matches!(response.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            // The rest of the body was never read, so this HTTP/1.1 connection
            // cannot carry another request. Saying so keeps a keep-alive client
            // from sending its next request into a socket we are about to close.
            response.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        Outcome::with_user(route.name, user, response)
    }
}

/// Whether `path` (after the prefix) lies under the operator console.
fn is_console(path: &str) -> bool {
    ["/admin", "/api/admin"]
        .iter()
        .any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// How long browsers and caches may keep an embedded file before revalidating.
const CACHEABLE: &str = "public, max-age=3600";

fn static_file(headers: &HeaderMap, path: &str) -> Response {
    match crate::assets::find(path) {
        Some(a) => asset(headers, a),
        None => reply::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// An embedded file, or 304 when the client holds this very version.
fn asset(headers: &HeaderMap, file: crate::assets::Asset) -> Response {
    let mut r = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == file.etag.as_bytes()) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Body::full(bytes::Bytes::from_static(file.body)))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(file.content_type));
    if let Ok(v) = http::HeaderValue::from_str(file.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, http::HeaderValue::from_static(CACHEABLE));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_answers_json_and_pages_answer_html() {
        for r in ROUTES {
            if let Exact(p) | Prefix(p) = r.path
                && p.starts_with("/api/")
            {
                assert_eq!(r.format, R::Json, "{p}");
                assert!(r.name.starts_with("api_"), "{p} is named {}", r.name);
            }
        }
    }

    #[test]
    fn routes_are_found_by_method_and_path() {
        assert_eq!(find_route(&Method::HEAD, "/login").map(|(r, _)| r.endpoint), Some(E::LoginPage));
        assert_eq!(find_route(&Method::POST, "/login").map(|(r, _)| r.endpoint), Some(E::Password));
        let (r, id) = find_route(&Method::DELETE, "/api/sessions/abc").unwrap();
        assert_eq!((r.endpoint, id), (E::RevokeSession, "abc"));
        assert_eq!(find_route(&Method::DELETE, "/api/sessions").map(|(r, _)| r.endpoint), Some(E::RevokeOthers));
        assert_eq!(find_route(&Method::PUT, "/verify").map(|(r, _)| r.endpoint), Some(E::Verify));
        assert!(find_route(&Method::GET, "/api/send-login-otp").is_none());
        assert!(find_route(&Method::HEAD, "/api/me").is_none());
    }

    /// The table's order is free to follow how often a route is asked for.
    #[test]
    fn no_request_matches_two_routes() {
        let methods = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
        for r in ROUTES {
            let (Exact(p) | Prefix(p)) = r.path;
            let path = format!("{p}{}", if matches!(r.path, Prefix(_)) { "x" } else { "" });
            for m in &methods {
                let matching: Vec<&str> = ROUTES
                    .iter()
                    .filter(|o| o.methods.allows(m))
                    .filter(|o| match o.path {
                        Exact(q) => q == path,
                        Prefix(q) => path.starts_with(q),
                    })
                    .map(|o| o.name)
                    .collect();
                assert!(matching.len() <= 1, "{m} {path}: {matching:?}");
            }
        }
    }
}
