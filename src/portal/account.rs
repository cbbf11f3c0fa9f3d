//! The account page and its actions (the seed's dashboard), as form posts and as
//! the JSON API of SPEC §4: toggle 2FA, confirm it, regenerate backup codes,
//! list and revoke sessions.

use std::sync::Arc;

use http::{HeaderMap, StatusCode, Uri};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::account::{self, AccountError};
use crate::auth::users::User;
use crate::body::Response;
use crate::portal::outcome::{failure, failure_json};
use crate::portal::pages::{base_context, read_form, render};
use crate::portal::{self as portal, api, request, respond};
use crate::router::{self, Authenticated, RequestInfo};

type Answer = (Response, Option<Arc<User>>);

/// The logged-in session, or the answer for a visitor without one.
async fn require_session(app: &App, headers: &HeaderMap, html: bool) -> Result<Authenticated, Response> {
    match router::authenticate(app, headers).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) if html => {
            let url = format!("{}{}/account", app.public_origin, app.prefix);
            Err(router::login_required(app, &http::Method::GET, headers, &url))
        }
        Ok(None) => Err(respond::json_error(StatusCode::UNAUTHORIZED, "authentication required")),
        Err(e) => Err(router::store_unavailable(app, &e, html)),
    }
}

fn account_failure(e: &AccountError) -> (StatusCode, Value, Option<u64>) {
    match e {
        AccountError::Login(l) => {
            let f = failure(l);
            (f.status, failure_json(&f), f.retry_after)
        }
        AccountError::NoSuchSession => (StatusCode::NOT_FOUND, json!({"success": false, "error": e.to_string()}), None),
        other => (StatusCode::BAD_REQUEST, json!({"success": false, "error": other.to_string()}), None),
    }
}

fn json_failure(e: &AccountError) -> Response {
    let (status, body, retry) = account_failure(e);
    let mut r = respond::json(status, &body);
    if let Some(s) = retry {
        respond::retry_after(&mut r, s);
    }
    r
}

/// What the account page shows beyond the stored data.
#[derive(Default)]
pub struct Notice<'a> {
    pub message: &'a str,
    pub error: &'a str,
    pub backup_codes: Vec<String>,
    pub confirm_enable: bool,
}

pub async fn page(
    app: &App,
    headers: &HeaderMap,
    auth: &Authenticated,
    status: StatusCode,
    n: Notice<'_>,
    new_token: Option<&str>,
) -> Response {
    let data = match portal::account_data(app, &auth.user.username).await {
        Ok(d) => d,
        Err(e) => return router::store_unavailable(app, &e, true),
    };
    let current = crate::store::Store::session_id(new_token.unwrap_or(&auth.token));
    let sessions: Vec<_> = data
        .sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created": portal::format_time(s.record.created),
                "last_seen": portal::format_time(s.record.last_seen),
                "ip": s.record.ip,
                "device": s.record.device,
                "current": s.id == current,
            })
        })
        .collect();
    let recent: Vec<_> =
        data.recent_logins.iter().map(|l| json!({"time": l.timestamp, "ip": l.ip, "device": l.device})).collect();
    let mut page = base_context(app, headers, new_token);
    page.ctx.insert("title", "Your account");
    page.ctx.insert(
        "user",
        &json!({
            "username": auth.user.username,
            "email": auth.user.email,
            "display_name": auth.user.display_name,
            "groups": auth.user.groups,
        }),
    );
    page.ctx.insert("otp_enabled", &data.state.otp_enabled);
    page.ctx.insert("backup_codes_left", &data.state.backup_codes_left);
    page.ctx.insert("backup_codes", &n.backup_codes);
    let txt = n.backup_codes.join("\n") + "\n";
    page.ctx.insert(
        "backup_codes_txt",
        &form_urlencoded::byte_serialize(txt.as_bytes()).collect::<String>().replace('+', "%20"),
    );
    page.ctx.insert("confirm_enable", &n.confirm_enable);
    page.ctx.insert("recent_logins", &recent);
    page.ctx.insert("sessions", &sessions);
    page.ctx.insert("message", n.message);
    page.ctx.insert("error", n.error);
    let mut r = render(app, status, "account.html", &page);
    if let Some(t) = new_token {
        respond::set_cookie(
            &mut r,
            app.cookies.session(t, auth.record.remember_me.then_some(app.config.session.remember_me)),
        );
    }
    r
}

pub async fn get_account(app: &App, uri: &Uri, headers: &HeaderMap) -> Answer {
    let auth = match require_session(app, headers, true).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let q = request::query(uri);
    let n = Notice { message: q.get("message").unwrap_or(""), ..Default::default() };
    let r = page(app, headers, &auth, StatusCode::OK, n, None).await;
    (r, Some(auth.user))
}

/// Which account action a request asks for.
#[derive(Clone, Copy)]
pub enum Action {
    ToggleOtp,
    ConfirmEnable,
    BackupCodes,
    Revoke,
    RevokeOthers,
}

/// Runs an action from a form post (HTML) or an API call (JSON).
pub async fn act(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
    info: &RequestInfo,
    action: Action,
    html: bool,
    path_id: Option<&str>,
) -> Answer {
    let auth = match require_session(app, headers, html).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let fields = if html { read_form(app, headers, body).await } else { api::form(app, headers, body).await };
    let fields = match fields {
        Ok(f) => f,
        Err(r) => return (r, Some(auth.user)),
    };
    let client = portal::client(info, headers);
    let user = auth.user.clone();
    let password = fields.get("password");
    let response = match action {
        Action::ToggleOtp => {
            if fields.flag("enable_otp") {
                match account::start_enable(app, &user, &client).await {
                    Ok(()) if html => {
                        let n = Notice {
                            message: "We e-mailed you a code. Enter it to turn on two-factor authentication.",
                            confirm_enable: true,
                            ..Default::default()
                        };
                        page(app, headers, &auth, StatusCode::OK, n, None).await
                    }
                    Ok(()) => respond::json(
                        StatusCode::OK,
                        &json!({"success": true, "verification_required": true, "message": "Verification code sent to your e-mail", "expires_in": app.config.otp.ttl.as_secs()}),
                    ),
                    Err(e) => fail(app, headers, &auth, &e, html).await,
                }
            } else {
                match account::disable(app, &user, password, &client).await {
                    Ok(()) if html => {
                        page(
                            app,
                            headers,
                            &auth,
                            StatusCode::OK,
                            Notice { message: "Two-factor authentication is off.", ..Default::default() },
                            None,
                        )
                        .await
                    }
                    Ok(()) => respond::json(
                        StatusCode::OK,
                        &json!({"success": true, "otp_enabled": false, "message": "Two-factor authentication disabled"}),
                    ),
                    Err(e) => fail(app, headers, &auth, &e, html).await,
                }
            }
        }
        Action::ConfirmEnable => {
            let code = fields.get("otp_code").unwrap_or("");
            match account::confirm_enable(app, &user, &auth.token, code, &client).await {
                Ok((codes, token)) if html => {
                    let n = Notice {
                        message: "Two-factor authentication is on. Store these backup codes somewhere safe.",
                        backup_codes: codes,
                        ..Default::default()
                    };
                    page(app, headers, &auth, StatusCode::OK, n, Some(&token)).await
                }
                Ok((codes, token)) => {
                    let mut r = respond::json(
                        StatusCode::OK,
                        &json!({"success": true, "otp_enabled": true, "backup_codes": codes}),
                    );
                    respond::set_cookie(
                        &mut r,
                        app.cookies.session(&token, auth.record.remember_me.then_some(app.config.session.remember_me)),
                    );
                    r
                }
                Err(e) => {
                    if html {
                        let (status, body, _) = account_failure(&e);
                        let msg = body["error"].as_str().unwrap_or("").to_string();
                        let n = Notice {
                            error: &msg,
                            confirm_enable: !matches!(
                                e,
                                AccountError::Login(
                                    crate::auth::login::LoginError::MaxAttempts
                                        | crate::auth::login::LoginError::Expired
                                )
                            ),
                            ..Default::default()
                        };
                        page(app, headers, &auth, status, n, None).await
                    } else {
                        json_failure(&e)
                    }
                }
            }
        }
        Action::BackupCodes => match account::regenerate_backup_codes(app, &user, password, &client).await {
            Ok(codes) if html => {
                let n = Notice {
                    message: "New backup codes. The old ones no longer work.",
                    backup_codes: codes,
                    ..Default::default()
                };
                page(app, headers, &auth, StatusCode::OK, n, None).await
            }
            Ok(codes) => respond::json(StatusCode::OK, &json!({"success": true, "backup_codes": codes})),
            Err(e) => fail(app, headers, &auth, &e, html).await,
        },
        Action::Revoke => {
            let id = path_id.or(fields.get("id")).unwrap_or("");
            match account::revoke(app, &user, id, &client).await {
                Ok(()) if html => {
                    page(
                        app,
                        headers,
                        &auth,
                        StatusCode::OK,
                        Notice { message: "Session signed out.", ..Default::default() },
                        None,
                    )
                    .await
                }
                Ok(()) => respond::json(StatusCode::OK, &json!({"success": true, "message": "Session revoked"})),
                Err(e) => fail(app, headers, &auth, &e, html).await,
            }
        }
        Action::RevokeOthers => match account::revoke_others(app, &user, &auth.token, &client).await {
            Ok(n) if html => {
                let msg = format!("Signed out {n} other session(s).");
                page(app, headers, &auth, StatusCode::OK, Notice { message: &msg, ..Default::default() }, None).await
            }
            Ok(n) => respond::json(StatusCode::OK, &json!({"success": true, "revoked": n})),
            Err(e) => fail(app, headers, &auth, &e, html).await,
        },
    };
    (response, Some(user))
}

async fn fail(app: &App, headers: &HeaderMap, auth: &Authenticated, e: &AccountError, html: bool) -> Response {
    if !html {
        return json_failure(e);
    }
    let (status, body, _) = account_failure(e);
    let msg = body["error"].as_str().unwrap_or("").to_string();
    page(app, headers, auth, status, Notice { error: &msg, ..Default::default() }, None).await
}

/// `GET api/sessions`.
pub async fn list_sessions(app: &App, headers: &HeaderMap) -> Answer {
    let auth = match require_session(app, headers, false).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let current = crate::store::Store::session_id(&auth.token);
    let sessions = match app.store.list_sessions(&auth.user.username).await {
        Ok(s) => s,
        Err(e) => return (router::store_unavailable(app, &e, false), Some(auth.user)),
    };
    let list: Vec<_> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created": portal::format_time(s.record.created),
                "last_seen": portal::format_time(s.record.last_seen),
                "ip": s.record.ip,
                "device": s.record.device,
                "current": s.id == current,
            })
        })
        .collect();
    (respond::json(StatusCode::OK, &json!({"success": true, "sessions": list})), Some(auth.user))
}
