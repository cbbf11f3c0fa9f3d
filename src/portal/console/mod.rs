//! The operator console (`{prefix}/admin`, `{prefix}/api/admin/*`): users
//! with their factors, locks, sessions and last login; banned addresses; the
//! audit trail, searchable and exportable as CSV; and the actions on them
//! (unlock, end sessions, reset second factors, disable and enable, lift a
//! ban). Pages answer HTML and work without JavaScript; the API answers JSON.
//!
//! Who gets in: a member of `auth.admin_group` at two factors
//! (`Target::Console`; a one-factor session is asked for the second factor).
//! Everyone else who is signed in gets the same 403, and so does every path
//! under the console that is not one of its routes, so a probe learns
//! nothing of what is there. Every action is a POST whose CSRF check comes
//! before the level's (a cross-site request is refused as such), and is
//! audited by `auth::operator` with the operator as its actor.

use http::StatusCode;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

mod access;
mod audit;
mod view;

use super::context::{Answer, Cx, format_time};
use crate::auth::operator::ChangeError;
use crate::auth::roster::MAX_PAGE;
use crate::body::Response;
use crate::gate::{Authenticated, Target};
use crate::reply::{self, Failure, Format};
use crate::store::IpBan;
use access::{at_console, by, operator};
use view::{BanView, Section, Shown, UserView, page_size, shown};

pub(super) use access::refuse;
pub(super) use audit::{audit, export};

// ---- users ----

#[derive(Deserialize, Default)]
struct UsersQuery {
    q: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET admin`, `GET api/admin/users?q=&after=&limit=`.
pub(super) async fn users(cx: &Cx<'_>) -> Answer {
    let auth = match at_console(cx, Section::Users.path()).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let query: UsersQuery = match cx.query().parse() {
        Ok(q) => q,
        Err(e) => return (cx.fail(e), Some(auth.user)),
    };
    let r = match users_shown(cx, &auth, &query, String::new()).await {
        Ok(r) => r,
        Err(f) => cx.fail(f),
    };
    (r, Some(auth.user))
}

/// The users page (or its JSON) for `query`, saying `message`.
async fn users_shown(
    cx: &Cx<'_>,
    auth: &Authenticated,
    query: &UsersQuery,
    message: String,
) -> Result<Response, Failure> {
    let limit = page_size(query.limit.as_deref())?;
    let q = query.q.as_deref().unwrap_or("");
    let page = cx.portal.operator.users_page(q, query.after.as_deref(), limit).await?;
    if cx.format == Format::Json {
        return Ok(reply::json(
            StatusCode::OK,
            &json!({"success": true, "users": page.users, "next": page.next, "total": page.total}),
        ));
    }
    let now = cx.portal.clock.now_unix();
    let next_url = page.next.as_deref().map(|after| cx.with_query("/admin", &[("q", q), ("after", after)]));
    let shown = Shown {
        message,
        q,
        total: page.total,
        users: page.users.into_iter().map(|u| UserView::of(u, now)).collect(),
        next_url,
        ..Shown::default()
    };
    Ok(cx.console_page(auth, Section::Users, StatusCode::OK, shown))
}

// ---- bans ----

/// `GET admin/bans`, `GET api/admin/bans`.
pub(super) async fn bans(cx: &Cx<'_>) -> Answer {
    let auth = match at_console(cx, Section::Bans.path()).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let r = match bans_shown(cx, &auth, String::new()).await {
        Ok(r) => r,
        Err(f) => cx.fail(f),
    };
    (r, Some(auth.user))
}

async fn bans_shown(cx: &Cx<'_>, auth: &Authenticated, message: String) -> Result<Response, Failure> {
    let bans: Vec<IpBan> = cx.portal.operator.bans(MAX_PAGE).await?;
    if cx.format == Format::Json {
        let rows: Vec<Value> = bans.iter().map(|b| json!({"ip": b.ip, "until": format_time(b.until)})).collect();
        return Ok(reply::json(StatusCode::OK, &json!({"success": true, "bans": rows})));
    }
    let bans = bans.into_iter().map(|b| BanView { until: shown(b.until), ip: b.ip }).collect();
    Ok(cx.console_page(auth, Section::Bans, StatusCode::OK, Shown { message, bans, ..Shown::default() }))
}

// ---- actions ----

/// What an action names.
#[derive(Deserialize, Default)]
struct Named {
    name: Option<String>,
    ip: Option<String>,
    /// The users page's filter, to show the same page again.
    q: Option<String>,
}

/// The console's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Unlock,
    EndSessions,
    ResetFactors,
    Disable,
    Enable,
    Unban,
}

/// `POST admin/<action>` (a form) and `POST api/admin/<action>` (JSON):
/// the operator, the form with its CSRF check, two factors, then the action.
pub(super) async fn act(cx: &Cx<'_>, body: Incoming, action: Action) -> Answer {
    let section = if action == Action::Unban { Section::Bans } else { Section::Users };
    let auth = match operator(cx, section.path()).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let form: Named = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return (r, Some(auth.user)),
    };
    if let Err(r) = cx.at_level_back(&auth, Target::Console, section.path()).await {
        return (r, Some(auth.user));
    }
    let r = match perform(cx, &auth, action, &form).await {
        Ok((json, message)) => match cx.format {
            Format::Json => {
                let mut json = json;
                json["success"] = json!(true);
                json["message"] = json!(message);
                Ok(reply::json(StatusCode::OK, &json))
            }
            Format::Html if section == Section::Bans => bans_shown(cx, &auth, message).await,
            Format::Html => {
                let query = UsersQuery { q: form.q.clone(), ..UsersQuery::default() };
                users_shown(cx, &auth, &query, message).await
            }
        },
        Err(f) => Err(f),
    };
    (r.unwrap_or_else(|f| cx.fail(f)), Some(auth.user))
}

/// Does `action`: its JSON fields and the words the page shows.
async fn perform(cx: &Cx<'_>, auth: &Authenticated, action: Action, form: &Named) -> Result<(Value, String), Failure> {
    let ops = &cx.portal.operator;
    let by = by(cx, auth);
    if action == Action::Unban {
        let ip = form.ip.as_deref().map(str::trim).filter(|v| !v.is_empty());
        let ip = ip.ok_or_else(|| Failure::Missing("ip is required".into()))?;
        let done = ops
            .unlock_address(ip, &by)
            .await?
            .ok_or_else(|| Failure::Missing("ip: not an address (or an IPv6 /64)".into()))?;
        let message = format!("{}: ban lifted ({} rate windows cleared).", done.ip, done.windows_cleared);
        return Ok((json!(done), message));
    }
    let name = form.name.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let name = name.ok_or_else(|| Failure::Missing("name is required".into()))?;
    let user = ops.users().snapshot().find(name).cloned().ok_or(Failure::NoSuchUser)?;
    let account = user.username.as_str();
    let changed = |e: ChangeError| match e {
        ChangeError::NoSuchUser => Failure::NoSuchUser,
        ChangeError::Users(e) => Failure::UsersFile(e),
        ChangeError::Store(e) => Failure::Store(e),
    };
    Ok(match action {
        Action::Unlock => {
            let done = ops.unlock(account, &by).await?;
            let message =
                if done.was_locked { format!("{account} is unlocked.") } else { format!("{account} was not locked.") };
            (json!(done), message)
        }
        Action::EndSessions => {
            let done = ops.revoke_sessions(account, &by).await?;
            (json!(done), format!("Ended {} session(s) of {account}.", done.revoked))
        }
        Action::ResetFactors => {
            let done = ops.reset_factors(account, &by).await.map_err(changed)?;
            let message = format!(
                "Removed the authenticator app, passkeys and backup codes of {account} (they had: {}). They were e-mailed about it.",
                crate::auth::operator::describe_factors(&done.factors)
            );
            (json!(done), message)
        }
        Action::Disable if account == auth.user.username => {
            // An operator who did would be signed out of the console for good.
            return Err(Failure::Missing("name: operators cannot disable their own account here".into()));
        }
        Action::Disable | Action::Enable => {
            let disabled = action == Action::Disable;
            let done = ops.set_disabled(account, disabled, &by).await.map_err(changed)?;
            let message = match (done.changed, disabled) {
                (false, true) => format!("{account} was already disabled."),
                (false, false) => format!("{account} was already enabled."),
                (true, true) => format!("{account} is disabled; {} session(s) ended.", done.sessions_ended),
                (true, false) => format!("{account} is enabled."),
            };
            (json!(done), message)
        }
        Action::Unban => unreachable!("handled above"),
    })
}
