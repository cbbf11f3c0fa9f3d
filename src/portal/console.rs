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
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::context::{Answer, Cx, format_time};
use super::pages::{Chrome, View};
use crate::auth::operator::{ChangeError, Operator};
use crate::auth::roster::{MAX_PAGE, UserRow};
use crate::body::Response;
use crate::gate::{Authenticated, Target};
use crate::reply::{self, Failure, Format};
use crate::store::{AuditCursor, AuditKind, AuditPage, AuditQuery, AuditRecord, IpBan};

/// The one refusal of everyone but an operator, on every path under the console.
const NOT_AN_OPERATOR: &str = "This page is for the gateway's operators only.";

/// Rows a page shows unless asked for another number.
const PAGE: usize = 50;

/// Most records one CSV export holds; a `Link: rel="next"` header goes on.
const EXPORT_ROWS: usize = 10_000;

/// Most searches one export makes (each looks at a bounded number of records).
const EXPORT_SEARCHES: usize = 40;

/// Which of the console's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Users,
    Bans,
    Audit,
}

impl Section {
    fn path(self) -> &'static str {
        match self {
            Section::Users => "/admin",
            Section::Bans => "/admin/bans",
            Section::Audit => "/admin/audit",
        }
    }
}

/// A signed-in member of the admin group, or the answer for anyone else.
async fn operator(cx: &Cx<'_>, back: &str) -> Result<Authenticated, Answer> {
    let auth = cx.logged_in_back(back).await.map_err(|r| (r, None))?;
    let group = &cx.portal.settings.admin_group;
    if !auth.user.groups.iter().any(|g| g == group) {
        return Err((cx.fail(Failure::Denied(NOT_AN_OPERATOR)), Some(auth.user)));
    }
    Ok(auth)
}

/// An operator at two factors (step-up below that, back to `back`).
async fn at_console(cx: &Cx<'_>, back: &str) -> Result<Authenticated, Answer> {
    let auth = operator(cx, back).await?;
    if let Err(r) = cx.at_level_back(&auth, Target::Console, back).await {
        return Err((r, Some(auth.user)));
    }
    Ok(auth)
}

/// Any other path under the console: what a visitor who is not an
/// operator gets on its real routes (so none of them is told apart).
pub(super) async fn refuse(cx: &Cx<'_>) -> Answer {
    match operator(cx, "/admin").await {
        Err(answer) => answer,
        Ok(auth) => (cx.fail(Failure::Denied(NOT_AN_OPERATOR)), Some(auth.user)),
    }
}

fn by(cx: &Cx<'_>, auth: &Authenticated) -> Operator {
    let client = cx.client();
    Operator { ip: client.ip, agent: client.user_agent, name: Some(auth.user.username.clone()) }
}

/// `2026-12-06 17:05:09 UTC`.
fn shown(unix: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// A page size from the query: 1 to [`MAX_PAGE`].
fn page_size(given: Option<&str>) -> Result<usize, Failure> {
    match given {
        None => Ok(PAGE),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Failure::Missing(format!("limit: a number from 1 to {MAX_PAGE}").into())),
        },
    }
}

// ---- the pages' views ----

#[derive(Serialize)]
struct UserView {
    username: String,
    email: String,
    display_name: String,
    groups: Vec<String>,
    disabled: bool,
    factors: Vec<&'static str>,
    backup_codes_left: u32,
    locked_until: Option<String>,
    sessions: usize,
    last_login: Option<String>,
}

impl UserView {
    fn of(r: UserRow, now: u64) -> UserView {
        let f = &r.factors;
        let factors = [(f.otp_enabled, "e-mail"), (f.totp_enabled, "app"), (f.passkey_enabled, "passkey")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        UserView {
            factors,
            backup_codes_left: f.backup_codes_left,
            locked_until: r.locked_for.map(|s| shown(now + s)),
            last_login: r.last_login.map(shown),
            username: r.username,
            email: r.email,
            display_name: r.display_name,
            groups: r.groups,
            disabled: r.disabled,
            sessions: r.sessions,
        }
    }
}

#[derive(Serialize)]
struct BanView {
    ip: String,
    until: String,
}

#[derive(Serialize)]
struct AuditRow<'a> {
    time: String,
    kind: &'a str,
    event: &'a str,
    username: &'a str,
    user: &'a str,
    actor: &'a str,
    ip: &'a str,
    user_agent: &'a str,
    details: &'a str,
}

impl<'a> AuditRow<'a> {
    fn of(r: &'a AuditRecord) -> AuditRow<'a> {
        AuditRow {
            time: shown(r.time),
            kind: r.kind.as_str(),
            event: &r.event,
            username: &r.username,
            user: r.user.as_deref().unwrap_or(""),
            actor: r.actor.as_deref().unwrap_or(""),
            ip: &r.ip,
            user_agent: &r.user_agent,
            details: &r.details,
        }
    }
}

/// The audit search as the form shows it again.
#[derive(Serialize, Default)]
struct AuditFilter {
    user: String,
    kind: String,
    event: String,
    ip: String,
    since: String,
    until: String,
}

#[derive(Serialize)]
struct ConsoleView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    section: &'static str,
    operator: &'a str,
    message: &'a str,
    error: &'a str,
    info: &'a str,
    q: &'a str,
    total: usize,
    users: Vec<UserView>,
    bans: Vec<BanView>,
    audit: Vec<AuditRow<'a>>,
    filter: AuditFilter,
    /// The next page's address, when there is one.
    next_url: Option<String>,
    /// The CSV export of this search.
    export_url: String,
    /// The search stopped at its scan budget before filling the page.
    partial: bool,
}

impl View for ConsoleView<'_> {
    fn chrome(&self) -> &Chrome<'_> {
        &self.chrome
    }
}

/// What one of the console's pages shows, besides the chrome.
#[derive(Default)]
struct Shown<'a> {
    message: String,
    q: &'a str,
    total: usize,
    users: Vec<UserView>,
    bans: Vec<BanView>,
    records: Vec<AuditRecord>,
    filter: AuditFilter,
    next_url: Option<String>,
    export_url: String,
    partial: bool,
}

impl Cx<'_> {
    fn console_page(&self, auth: &Authenticated, section: Section, status: StatusCode, s: Shown<'_>) -> Response {
        let (name, title) = match section {
            Section::Users => ("users", "Users"),
            Section::Bans => ("bans", "Banned addresses"),
            Section::Audit => ("audit", "Audit trail"),
        };
        let view = ConsoleView {
            chrome: self.portal.chrome(self.headers, None, title),
            section: name,
            operator: &auth.user.username,
            message: &s.message,
            error: "",
            info: "",
            q: s.q,
            total: s.total,
            users: s.users,
            bans: s.bans,
            audit: s.records.iter().map(AuditRow::of).collect(),
            filter: s.filter,
            next_url: s.next_url,
            export_url: s.export_url,
            partial: s.partial,
        };
        self.portal.page(status, "admin.html", &view)
    }

    /// `{prefix}{path}?{query}` (without `?` when the query is empty).
    fn with_query(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() { self.link(path) } else { format!("{}?{q}", self.link(path)) }
    }
}

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

// ---- the audit trail ----

#[derive(Deserialize, Default)]
struct AuditForm {
    user: Option<String>,
    kind: Option<String>,
    event: Option<String>,
    ip: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

/// A time from a query (`audit::parse_time`), or the 400 naming `field`.
fn parse_time(field: &str, s: &str, end_of_day: bool) -> Result<u64, Failure> {
    crate::audit::parse_time(s, end_of_day).ok_or_else(|| {
        Failure::Missing(format!("{field}: not a time (use 2026-12-06, 2026-12-06T17:05 (UTC) or unix seconds)").into())
    })
}

/// The store's query for the form's fields, or why they cannot be one.
fn audit_query(f: &AuditForm, limit: usize) -> Result<AuditQuery, Failure> {
    let text = |v: &Option<String>, field: &str| -> Result<Option<String>, Failure> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 128 => Err(Failure::Missing(format!("{field}: at most 128 characters").into())),
            v => Ok(v.map(str::to_owned)),
        }
    };
    let kind = match f.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("login_attempt") => Some(AuditKind::LoginAttempt),
        Some("security_event") => Some(AuditKind::SecurityEvent),
        Some(_) => return Err(Failure::Missing("kind: login_attempt or security_event".into())),
    };
    let before = match f.before.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<AuditCursor>().map_err(|()| Failure::Missing("before: not a cursor".into()))?),
    };
    let since =
        f.since.as_deref().filter(|v| !v.trim().is_empty()).map(|v| parse_time("since", v, false)).transpose()?;
    let until =
        f.until.as_deref().filter(|v| !v.trim().is_empty()).map(|v| parse_time("until", v, true)).transpose()?;
    Ok(AuditQuery {
        user: text(&f.user, "user")?,
        kind,
        event: text(&f.event, "event")?,
        ip: text(&f.ip, "ip")?,
        since,
        until,
        before,
        limit,
    })
}

/// The search's fields as links carry them (without `before` and `limit`).
fn filter_pairs(f: &AuditForm) -> Vec<(&'static str, &str)> {
    fn v(o: &Option<String>) -> &str {
        o.as_deref().map(str::trim).unwrap_or("")
    }
    vec![
        ("user", v(&f.user)),
        ("kind", v(&f.kind)),
        ("event", v(&f.event)),
        ("ip", v(&f.ip)),
        ("since", v(&f.since)),
        ("until", v(&f.until)),
    ]
}

#[derive(Serialize)]
struct AuditJson<'a> {
    cursor: String,
    #[serde(flatten)]
    record: &'a AuditRecord,
    time_utc: String,
}

/// `GET admin/audit`, `GET api/admin/audit?user=&kind=&event=&ip=&since=&until=&before=&limit=`.
pub(super) async fn audit(cx: &Cx<'_>) -> Answer {
    let auth = match at_console(cx, Section::Audit.path()).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let r = match audit_shown(cx, &auth).await {
        Ok(r) => r,
        Err(f) => cx.fail(f),
    };
    (r, Some(auth.user))
}

async fn audit_shown(cx: &Cx<'_>, auth: &Authenticated) -> Result<Response, Failure> {
    let form: AuditForm = cx.query().parse()?;
    let q = audit_query(&form, page_size(form.limit.as_deref())?)?;
    let AuditPage { records, next } = cx.portal.store.search_audit(&q).await?;
    let partial = next.is_some() && records.len() < q.limit;
    if cx.format == Format::Json {
        let rows: Vec<AuditJson> = records
            .iter()
            .map(|(c, r)| AuditJson { cursor: c.to_string(), record: r, time_utc: format_time(r.time) })
            .collect();
        let next = next.map(|c| c.to_string());
        return Ok(reply::json(StatusCode::OK, &json!({"success": true, "records": rows, "next": next})));
    }
    let pairs = filter_pairs(&form);
    let next_url = next.map(|c| {
        let c = c.to_string();
        let mut p = pairs.clone();
        p.push(("before", &c));
        cx.with_query("/admin/audit", &p)
    });
    let v = |o: &Option<String>| o.as_deref().map(str::trim).unwrap_or("").to_owned();
    let filter = AuditFilter {
        user: v(&form.user),
        kind: v(&form.kind),
        event: v(&form.event),
        ip: v(&form.ip),
        since: v(&form.since),
        until: v(&form.until),
    };
    let shown = Shown {
        records: records.into_iter().map(|(_, r)| r).collect(),
        filter,
        next_url,
        export_url: cx.with_query("/api/admin/audit/export", &pairs),
        partial,
        ..Shown::default()
    };
    Ok(cx.console_page(auth, Section::Audit, StatusCode::OK, shown))
}

/// `GET api/admin/audit/export?...`: the search as CSV (a header row, then
/// a record a line, newest first), at most [`EXPORT_ROWS`] records; a
/// `Link: <...>; rel="next"` header gives the rest.
pub(super) async fn export(cx: &Cx<'_>) -> Answer {
    let auth = match at_console(cx, Section::Audit.path()).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let r = match export_csv(cx).await {
        Ok(r) => r,
        Err(f) => cx.fail(f),
    };
    (r, Some(auth.user))
}

async fn export_csv(cx: &Cx<'_>) -> Result<Response, Failure> {
    let form: AuditForm = cx.query().parse()?;
    let mut q = audit_query(&form, 1000)?;
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    let (mut rows, mut next) = (0, None);
    for _ in 0..EXPORT_SEARCHES {
        q.limit = 1000.min(EXPORT_ROWS - rows);
        let page = cx.portal.store.search_audit(&q).await?;
        for (_, r) in &page.records {
            csv_row(&mut out, r);
        }
        rows += page.records.len();
        next = page.next;
        match next {
            Some(c) if rows < EXPORT_ROWS => q.before = Some(c),
            _ => break,
        }
    }
    let mut r = Response::new(crate::body::Body::full(out));
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(
        http::header::CONTENT_DISPOSITION,
        http::HeaderValue::from_static("attachment; filename=\"portcullis-audit.csv\""),
    );
    if let Some(c) = next {
        let c = c.to_string();
        let mut pairs = filter_pairs(&form);
        pairs.push(("before", &c));
        let url = format!("{}{}", cx.portal.settings.public_origin, cx.with_query("/api/admin/audit/export", &pairs));
        if let Ok(v) = http::HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
            h.insert(http::header::LINK, v);
        }
    }
    Ok(r)
}

const CSV_HEADER: &str = "time,kind,event,username,user,actor,ip,user_agent,details";

/// One record as a CSV line (RFC 4180, CRLF).
fn csv_row(out: &mut String, r: &AuditRecord) {
    let time = format_time(r.time);
    let fields = [
        time.as_str(),
        r.kind.as_str(),
        &r.event,
        &r.username,
        r.user.as_deref().unwrap_or(""),
        r.actor.as_deref().unwrap_or(""),
        &r.ip,
        &r.user_agent,
        &r.details,
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

/// A field, quoted when it must be, and with a `'` before a first
/// character a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, or a
/// tab or carriage return): names, user agents and details are as clients
/// sent them, and an export is opened by people.
fn csv_field(out: &mut String, f: &str) {
    let guarded = f.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = guarded || f.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in f.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn field(f: &str) -> String {
        let mut s = String::new();
        csv_field(&mut s, f);
        s
    }

    #[test]
    fn csv_fields_are_quoted_and_guarded_against_formulas() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for f in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(field(f).starts_with("\"'"), "{f}: {}", field(f));
        }
        assert_eq!(field("a=b"), "a=b", "only a first character is a formula");
    }

    #[test]
    fn an_audit_search_names_its_bad_field() {
        let bad = |f: AuditForm| match audit_query(&f, 10) {
            Err(Failure::Missing(m)) => m.into_owned(),
            other => panic!("{:?}", other.map(|_| ())),
        };
        assert!(bad(AuditForm { kind: Some("x".into()), ..AuditForm::default() }).starts_with("kind:"));
        assert!(bad(AuditForm { before: Some("x".into()), ..AuditForm::default() }).starts_with("before:"));
        assert!(bad(AuditForm { since: Some("x".into()), ..AuditForm::default() }).starts_with("since:"));
        let q = audit_query(&AuditForm { user: Some(" bob ".into()), ..AuditForm::default() }, 10).unwrap();
        assert_eq!(q.user.as_deref(), Some("bob"));
    }
}
