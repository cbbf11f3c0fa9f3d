//! The console's one page (`admin.html`) as a typed view: users, banned
//! addresses or audit records, with the section's links and messages.

use http::StatusCode;
use serde::Serialize;

use crate::auth::roster::{MAX_PAGE, UserRow};
use crate::body::Response;
use crate::gate::Authenticated;
use crate::portal::context::Cx;
use crate::portal::pages::{Chrome, View};
use crate::reply::Failure;
use crate::store::AuditRecord;

/// Rows a page shows unless asked for another number.
const PAGE: usize = 50;

/// Which of the console's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Users,
    Bans,
    Audit,
}

impl Section {
    pub(super) fn path(self) -> &'static str {
        match self {
            Section::Users => "/admin",
            Section::Bans => "/admin/bans",
            Section::Audit => "/admin/audit",
        }
    }
}

/// `2026-12-06 17:05:09 UTC`.
pub(super) fn shown(unix: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// A page size from the query: 1 to [`MAX_PAGE`].
pub(super) fn page_size(given: Option<&str>) -> Result<usize, Failure> {
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
pub(super) struct UserView {
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
    pub(super) fn of(r: UserRow, now: u64) -> UserView {
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
pub(super) struct BanView {
    pub(super) ip: String,
    pub(super) until: String,
}

#[derive(Serialize)]
pub(super) struct AuditRow<'a> {
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
pub(super) struct AuditFilter {
    pub(super) user: String,
    pub(super) kind: String,
    pub(super) event: String,
    pub(super) ip: String,
    pub(super) since: String,
    pub(super) until: String,
}

#[derive(Serialize)]
pub(super) struct ConsoleView<'a> {
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
pub(super) struct Shown<'a> {
    pub(super) message: String,
    pub(super) q: &'a str,
    pub(super) total: usize,
    pub(super) users: Vec<UserView>,
    pub(super) bans: Vec<BanView>,
    pub(super) records: Vec<AuditRecord>,
    pub(super) filter: AuditFilter,
    pub(super) next_url: Option<String>,
    pub(super) export_url: String,
    pub(super) partial: bool,
}

impl Cx<'_> {
    pub(super) fn console_page(
        &self,
        auth: &Authenticated,
        section: Section,
        status: StatusCode,
        s: Shown<'_>,
    ) -> Response {
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
    pub(super) fn with_query(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() { self.link(path) } else { format!("{}?{q}", self.link(path)) }
    }
}
