//! The console's audit trail: the search (filters from the query, a page
//! from the store by cursor), and its export as CSV with every field a
//! spreadsheet might run guarded.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::access::at_console;
use super::view::{AuditFilter, Section, Shown, page_size};
use crate::body::Response;
use crate::gate::Authenticated;
use crate::portal::context::{Answer, Cx, format_time};
use crate::reply::{self, Failure, Format};
use crate::store::{AuditCursor, AuditKind, AuditPage, AuditQuery, AuditRecord};

/// Most records one CSV export holds; a `Link: rel="next"` header goes on.
const EXPORT_ROWS: usize = 10_000;

/// Most searches one export makes (each looks at a bounded number of records).
const EXPORT_SEARCHES: usize = 40;

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
pub(in crate::portal) async fn audit(cx: &Cx<'_>) -> Answer {
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
pub(in crate::portal) async fn export(cx: &Cx<'_>) -> Answer {
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
