//! The password pages and calls: changing it from a session
//! (`account/password`, `api/password`) and resetting it by e-mail (`reset`,
//! `api/password-reset/start|finish`). The work is `auth::account` and
//! `auth::reset`'s; here are the forms and the answers.

use http::StatusCode;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::context::{Answer, Cx};
use super::outcome::{Back, Done, Notice, Page};
use super::pages::{ResetNotice, password_form, reset_form};
use crate::auth::reset::ResetAnswer;
use crate::body::Response;
use crate::gate::Target;
use crate::reply::{Failure, Format};

#[derive(Serialize)]
struct Said<'a> {
    message: &'a str,
}

#[derive(Deserialize)]
struct ChangeForm {
    current_password: Option<String>,
    new_password: Option<String>,
    /// The form's second copy (browsers only; the API takes one).
    confirm_password: Option<String>,
}

/// A browser's second copy of the new password must match the first.
fn confirmed(cx: &Cx<'_>, new: &str, confirm: Option<&str>) -> Result<(), Failure> {
    if cx.format == Format::Html && confirm != Some(new) {
        return Err(Failure::Missing("The two new passwords do not match.".into()));
    }
    Ok(())
}

fn required(value: Option<String>, field: &'static str) -> Result<String, Failure> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| Failure::Missing(format!("{field} is required").into()))
}

/// `GET account/password`: the form.
pub(super) async fn change_page(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let r = password_form(cx, &auth, StatusCode::OK, "");
    (r, Some(auth.user))
}

/// `POST account/password`, `POST api/password {current_password,
/// new_password}`: the current password again and a strong new one; the
/// other sessions end and this one goes on under a new cookie.
pub(super) async fn change(cx: &Cx<'_>, body: Incoming) -> Answer {
    let auth = match cx.logged_in().await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let form: ChangeForm = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return (r, Some(auth.user)),
    };
    if let Err(r) = cx.at_level(&auth, Target::Account).await {
        return (r, Some(auth.user));
    }
    let result = async {
        let new = required(form.new_password, "new_password")?;
        confirmed(cx, &new, form.confirm_password.as_deref())?;
        let current = form.current_password.as_deref();
        let token = cx.portal.account.change_password(&auth.user, &auth.token, current, &new, &cx.client()).await?;
        let message = "Your password was changed. Your other sessions were signed out.";
        let cookie = cx.rotated(&auth, &token);
        let notice = Notice { message: message.into(), new_token: Some(token), ..Notice::default() };
        Ok(Done::account(Said { message }, notice).with_cookie(cookie))
    }
    .await;
    let r = cx.reply(result, Back::Password(&auth)).await;
    (r, Some(auth.user))
}

#[derive(Deserialize)]
struct ResetForm {
    username_or_email: Option<String>,
    code: Option<String>,
    new_password: Option<String>,
    confirm_password: Option<String>,
    /// A code from the authenticator app, or a backup code.
    otp_code: Option<String>,
}

/// What a reset request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResetStep {
    Start,
    Finish,
    /// The page's form: `Finish` when it carries a code, else `Start`.
    ByForm,
}

const CODE_SENT: &str =
    "If an account matches, a code is on its way to its e-mail address. It is valid for 15 minutes.";
const RESET_DONE: &str =
    "Your password was changed, and every session of your account was signed out. Sign in with the new password.";

/// `GET reset`: the form asking for the name.
pub(super) async fn reset_page(cx: &Cx<'_>) -> Response {
    let n = ResetNotice { step: "start", username: "", error: "", info: "", message: "" };
    reset_form(cx, StatusCode::OK, n)
}

/// `POST reset`, `POST api/password-reset/start {username_or_email}`,
/// `POST api/password-reset/finish {username_or_email, code, new_password,
/// otp_code?}`.
pub(super) async fn reset(cx: &Cx<'_>, body: Incoming, step: ResetStep) -> Response {
    let form: ResetForm = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let typed = form.username_or_email.clone().unwrap_or_default();
    let finish = match step {
        ResetStep::Start => false,
        ResetStep::Finish => true,
        ResetStep::ByForm => form.code.is_some(),
    };
    let client = cx.client();
    let (result, back) = if finish {
        let result = async {
            let name = required(form.username_or_email, "username_or_email")?;
            let code = required(form.code, "code")?;
            let new = required(form.new_password, "new_password")?;
            confirmed(cx, &new, form.confirm_password.as_deref())?;
            let answer = ResetAnswer {
                username_or_email: &name,
                code: &code,
                new_password: &new,
                second_factor: form.otp_code.as_deref(),
            };
            cx.portal.reset.finish(&answer, &client).await?;
            let page = Page::Reset { step: "done", username: String::new(), info: "" };
            Ok(Done::new(Said { message: RESET_DONE }, page))
        }
        .await;
        (result, Back::Reset { step: "finish", username: &typed })
    } else {
        let result = async {
            let name = required(form.username_or_email, "username_or_email")?;
            cx.portal.reset.start(&name, &client).await?;
            let page = Page::Reset { step: "finish", username: name, info: CODE_SENT };
            Ok(Done::new(Said { message: CODE_SENT }, page))
        }
        .await;
        (result, Back::Reset { step: "start", username: &typed })
    };
    cx.reply(result, back).await
}
