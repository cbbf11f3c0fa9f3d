//! The gateway's own endpoints under `auth.prefix`: pages, the JSON API,
//! forward-auth, health and static files. Handlers speak HTTP; decisions live in
//! `auth`, state in `store`.

mod account;
pub mod api;
mod outcome;
pub mod pages;
pub mod request;
pub mod respond;
mod verify;

use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::body::Incoming;

use crate::app::App;
use crate::auth::login::{Client, Completed};
use crate::body::Response;
use crate::router::{Outcome, RequestInfo};
use crate::store::{SessionInfo, StoreError, UserState};
use account::Action;

/// Dispatches `rest` (the path after the prefix).
pub async fn handle(app: &App, req: Request<Incoming>, info: RequestInfo, rest: &str) -> Outcome {
    let mut outcome = dispatch(app, req, info, rest).await;
    if outcome.route != "static" {
        respond::secure_headers(outcome.response.headers_mut(), app.hsts);
    }
    if outcome.response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read, so this HTTP/1.1 connection
        // cannot carry another request. Saying so keeps a keep-alive client
        // from sending its next request into a socket we are about to close.
        outcome.response.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    outcome
}

async fn dispatch(app: &App, req: Request<Incoming>, info: RequestInfo, rest: &str) -> Outcome {
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let (uri, h) = (&parts.uri, &parts.headers);
    let html = respond::wants_html(h);
    match (&method, rest) {
        (&Method::GET | &Method::HEAD, "/login") => Outcome::new("login", pages::get_login(app, uri, h).await),
        (&Method::POST, "/login") => Outcome::new("login", pages::post_login(app, uri, h, body, &info).await),
        (&Method::GET | &Method::HEAD, "/otp") => Outcome::new("otp", pages::get_otp(app, uri, h).await),
        (&Method::POST, "/otp") => Outcome::new("otp", pages::post_otp(app, h, body, &info).await),
        (&Method::POST, "/otp/resend") => Outcome::new("otp_resend", pages::post_resend(app, h, body, &info).await),
        (&Method::GET | &Method::HEAD, "/logout") => Outcome::new("logout", pages::get_logout(app, h).await),
        (&Method::POST, "/logout") => Outcome::new("logout", pages::post_logout(app, h, body, !html).await),
        (&Method::GET | &Method::HEAD, "/account" | "/") => acted("account", account::get_account(app, uri, h).await),
        (&Method::POST, "/account/otp") => {
            acted("account_otp", account::act(app, h, body, &info, Action::ToggleOtp, true, None).await)
        }
        (&Method::POST, "/account/otp/confirm") => {
            acted("account_otp_confirm", account::act(app, h, body, &info, Action::ConfirmEnable, true, None).await)
        }
        (&Method::POST, "/account/backup-codes") => {
            acted("account_backup_codes", account::act(app, h, body, &info, Action::BackupCodes, true, None).await)
        }
        (&Method::POST, "/account/sessions/revoke") => {
            acted("account_revoke", account::act(app, h, body, &info, Action::Revoke, true, None).await)
        }
        (&Method::POST, "/account/sessions/revoke-others") => {
            acted("account_revoke", account::act(app, h, body, &info, Action::RevokeOthers, true, None).await)
        }
        (&Method::DELETE, "/api/sessions") => {
            acted("api_sessions", account::act(app, h, body, &info, Action::RevokeOthers, false, None).await)
        }
        (&Method::POST, "/api/toggle-otp") => {
            acted("api_toggle_otp", account::act(app, h, body, &info, Action::ToggleOtp, false, None).await)
        }
        (&Method::POST, "/api/confirm-enable-otp") => {
            acted("api_confirm_enable_otp", account::act(app, h, body, &info, Action::ConfirmEnable, false, None).await)
        }
        (&Method::POST, "/api/backup-codes") => {
            acted("api_backup_codes", account::act(app, h, body, &info, Action::BackupCodes, false, None).await)
        }
        (&Method::GET, "/api/sessions") => acted("api_sessions", account::list_sessions(app, h).await),
        (&Method::DELETE, p) if p.starts_with("/api/sessions/") => {
            let id = p["/api/sessions/".len()..].to_owned();
            acted("api_sessions", account::act(app, h, body, &info, Action::Revoke, false, Some(&id)).await)
        }
        (&Method::POST, "/api/send-login-otp") => {
            Outcome::new("api_send_login_otp", api::send_login_otp(app, uri, h, body, &info).await)
        }
        (&Method::POST, "/api/verify-login-otp") => {
            Outcome::new("api_verify_login_otp", api::verify_login_otp(app, h, body, &info, false).await)
        }
        (&Method::POST, "/api/verify-backup-code") => {
            Outcome::new("api_verify_backup_code", api::verify_login_otp(app, h, body, &info, true).await)
        }
        (&Method::POST, "/api/resend-otp") => {
            Outcome::new("api_resend_otp", api::resend_otp(app, h, body, &info).await)
        }
        (_, "/verify") => verify::verify(app, uri, h, &info).await,
        (&Method::GET, "/api/me") => {
            let (r, user) = api::me(app, h).await;
            Outcome { route: "api_me", user, response: r }
        }
        (&Method::GET | &Method::HEAD, "/healthz") => {
            Outcome::new("healthz", respond::json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => Outcome::new("readyz", readyz(app).await),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/static/") => {
            Outcome::new("static", static_file(h, &p["/static/".len()..]))
        }
        _ => Outcome::new("not_found", respond::error(app, StatusCode::NOT_FOUND, "No such page.", html)),
    }
}

async fn readyz(app: &App) -> crate::body::Response {
    match app.store.ping().await {
        Ok(()) => respond::json(StatusCode::OK, &serde_json::json!({"status": "ready", "store": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store unreachable");
            respond::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "unavailable", "store": e.to_string()}),
            )
        }
    }
}

fn static_file(headers: &HeaderMap, path: &str) -> crate::body::Response {
    let Some(asset) = crate::assets::find(path) else {
        return respond::text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == asset.etag.as_bytes()) {
        let mut r = crate::body::Response::new(crate::body::Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        crate::body::Response::new(crate::body::Body::full(bytes::Bytes::from_static(asset.body)))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(asset.content_type));
    if let Ok(v) = http::HeaderValue::from_str(asset.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    r
}

fn acted(
    route: &'static str,
    (response, user): (Response, Option<std::sync::Arc<crate::auth::users::User>>),
) -> Outcome {
    Outcome { route, user, response }
}

/// Who is asking: the client IP (trusted-proxy aware) and user agent.
pub fn client(info: &RequestInfo, headers: &HeaderMap) -> Client {
    Client {
        ip: info.client_ip.to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect(),
    }
}

/// The pending-login token from its cookie.
pub fn pending_cookie<'a>(app: &App, headers: &'a HeaderMap) -> Option<&'a str> {
    crate::proxy::headers::cookie_value(headers, &app.cookies.pending_name)
}

/// Sets the new session cookie, clears the pending one, and ends any session the
/// browser carried before (rotation: the old id is dead).
pub async fn finish_login(app: &App, headers: &HeaderMap, done: &Completed, r: &mut Response) {
    if let Some(old) = crate::proxy::headers::cookie_value(headers, &app.cookies.session_name)
        && crate::session::plausible_token(old)
        && old != done.token
        && let Err(e) = app.store.delete_session(old).await
    {
        tracing::warn!(error = %e, "previous session not deleted");
    }
    let persistent = done.remember_me.then_some(app.config.session.remember_me);
    respond::set_cookie(r, app.cookies.session(&done.token, persistent));
    respond::set_cookie(r, app.cookies.clear(&app.cookies.pending_name));
}

/// One successful login, for the account page and `api/me`.
pub struct LoginRow {
    pub timestamp: String,
    pub ip: String,
    pub device: String,
}

pub struct AccountData {
    pub state: UserState,
    pub recent_logins: Vec<LoginRow>,
    pub sessions: Vec<SessionInfo>,
}

/// RFC 3339 UTC time of a unix timestamp.
pub fn format_time(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The seed's dashboard data: 2FA state, last 5 successful logins, sessions.
pub async fn account_data(app: &App, user: &str) -> Result<AccountData, StoreError> {
    let state = app.store.user_state(user).await?;
    let audit = app.store.recent_audit(Some(user), 100).await?;
    let recent_logins = audit
        .iter()
        .filter(|r| r.kind == crate::store::AuditKind::LoginAttempt && r.event == "success")
        .take(5)
        .map(|r| LoginRow {
            timestamp: format_time(r.time),
            ip: r.ip.clone(),
            device: crate::session::describe_device(&r.user_agent),
        })
        .collect();
    let mut sessions = app.store.list_sessions(user).await?;
    sessions.sort_by_key(|s| std::cmp::Reverse(s.record.last_seen));
    Ok(AccountData { state, recent_logins, sessions })
}
