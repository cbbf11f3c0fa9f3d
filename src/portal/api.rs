//! The JSON API of SPEC §4 (the seed's views, same names and response shapes).
//! JSON or form bodies are accepted; every state change passes the CSRF check.

use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::app::App;
use crate::auth::login::{self, PasswordOutcome};
use crate::body::Response;
use crate::portal::outcome::{failure, failure_json};
use crate::portal::request::{self, Fields};
use crate::portal::{self as portal, respond};
use crate::router::RequestInfo;

fn fail(e: &login::LoginError) -> Response {
    let f = failure(e);
    let mut r = respond::json(f.status, &failure_json(&f));
    if let Some(s) = f.retry_after {
        respond::retry_after(&mut r, s);
    }
    r
}

/// Reads the body and checks CSRF; an `Err` is the response to send.
pub async fn form(app: &App, headers: &HeaderMap, body: Incoming) -> Result<Fields, Response> {
    let fields = request::read_fields(headers, body).await.map_err(|e| e.response())?;
    if !request::csrf_ok(app, headers, &fields) {
        return Err(respond::json_error(StatusCode::FORBIDDEN, "cross-site request refused"));
    }
    Ok(fields)
}

pub async fn send_login_otp(
    app: &App,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Incoming,
    info: &RequestInfo,
) -> Response {
    let fields = match form(app, headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(name), Some(password)) = (fields.get("username_or_email"), fields.get("password")) else {
        return respond::json_error(StatusCode::BAD_REQUEST, "username_or_email and password are required");
    };
    let query = request::query(uri);
    let rd = request::validate_rd(app, fields.get("rd").or(query.get("rd")));
    let client = portal::client(info, headers);
    match login::password_step(app, name, password, fields.flag("remember_me"), rd, &client).await {
        Ok(PasswordOutcome::CodeSent { pending_token, masked_email, expires_in }) => {
            let mut r = respond::json(
                StatusCode::OK,
                &json!({
                    "success": true,
                    "otp_required": true,
                    "message": format!("Verification code sent to {masked_email}"),
                    "expires_in": expires_in,
                }),
            );
            respond::set_cookie(&mut r, app.cookies.pending(&pending_token, app.config.session.pending_login_ttl));
            r
        }
        Ok(PasswordOutcome::Done(done)) => {
            let mut r = respond::json(
                StatusCode::OK,
                &json!({"success": true, "otp_required": false, "redirect_url": done.redirect}),
            );
            portal::finish_login(app, headers, &done, &mut r).await;
            r
        }
        Err(e) => fail(&e),
    }
}

pub async fn verify_login_otp(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
    info: &RequestInfo,
    backup: bool,
) -> Response {
    let fields = match form(app, headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let field = if backup { "code" } else { "otp_code" };
    let Some(code) = fields.get(field) else {
        return respond::json_error(StatusCode::BAD_REQUEST, &format!("{field} is required"));
    };
    let pending = portal::pending_cookie(app, headers);
    let client = portal::client(info, headers);
    let result = if backup {
        login::backup_step(app, pending, code, &client).await
    } else {
        login::code_step(app, pending, code, &client).await
    };
    match result {
        Ok(done) => {
            let mut r = respond::json(
                StatusCode::OK,
                &json!({"success": true, "message": "Login successful", "redirect_url": done.redirect}),
            );
            portal::finish_login(app, headers, &done, &mut r).await;
            r
        }
        Err(e) => fail(&e),
    }
}

pub async fn resend_otp(app: &App, headers: &HeaderMap, body: Incoming, info: &RequestInfo) -> Response {
    if let Err(r) = form(app, headers, body).await {
        return r;
    }
    let client = portal::client(info, headers);
    match login::resend(app, portal::pending_cookie(app, headers), &client).await {
        Ok(expires_in) => respond::json(
            StatusCode::OK,
            &json!({"success": true, "message": "A new verification code has been sent", "expires_in": expires_in}),
        ),
        Err(e) => fail(&e),
    }
}

pub async fn me(app: &App, headers: &HeaderMap) -> (Response, Option<std::sync::Arc<crate::auth::users::User>>) {
    let auth = match crate::router::authenticate(app, headers).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return (respond::json_error(StatusCode::UNAUTHORIZED, "authentication required"), None);
        }
        Err(e) => return (crate::router::store_unavailable(app, &e, false), None),
    };
    let user = auth.user.clone();
    let data = match portal::account_data(app, &user.username).await {
        Ok(d) => d,
        Err(e) => return (crate::router::store_unavailable(app, &e, false), Some(user)),
    };
    let recent: Vec<_> =
        data.recent_logins.iter().map(|l| json!({"timestamp": l.timestamp, "ip": l.ip, "device": l.device})).collect();
    let body = json!({
        "success": true,
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "groups": user.groups,
        "otp_enabled": data.state.otp_enabled,
        "backup_codes_left": data.state.backup_codes_left,
        "recent_logins": recent,
    });
    (respond::json(StatusCode::OK, &body), Some(user))
}
