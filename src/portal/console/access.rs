//! Who gets into the operator console: a member of `auth.admin_group` at two
//! factors; everyone else signed in gets the same 403, on every path under it.

use crate::auth::operator::Operator;
use crate::gate::{Authenticated, Target};
use crate::portal::context::{Answer, Cx};
use crate::reply::Failure;

/// The one refusal of everyone but an operator, on every path under the console.
const NOT_AN_OPERATOR: &str = "This page is for the gateway's operators only.";

/// A signed-in member of the admin group, or the answer for anyone else.
pub(super) async fn operator(cx: &Cx<'_>, back: &str) -> Result<Authenticated, Answer> {
    let auth = cx.logged_in_back(back).await.map_err(|r| (r, None))?;
    let group = &cx.portal.settings.admin_group;
    if !auth.user.groups.contains(group) {
        return Err((cx.fail(Failure::Denied(NOT_AN_OPERATOR)), Some(auth.user)));
    }
    Ok(auth)
}

/// An operator at two factors (step-up below that, back to `back`).
pub(super) async fn at_console(cx: &Cx<'_>, back: &str) -> Result<Authenticated, Answer> {
    let auth = operator(cx, back).await?;
    if let Err(r) = cx.at_level_back(&auth, Target::Console, back).await {
        return Err((r, Some(auth.user)));
    }
    Ok(auth)
}

/// Any other path under the console: what a visitor who is not an
/// operator gets on its real routes (so none of them is told apart).
pub(in crate::portal) async fn refuse(cx: &Cx<'_>) -> Answer {
    match operator(cx, "/admin").await {
        Err(answer) => answer,
        Ok(auth) => (cx.fail(Failure::Denied(NOT_AN_OPERATOR)), Some(auth.user)),
    }
}

pub(super) fn by(cx: &Cx<'_>, auth: &Authenticated) -> Operator {
    let client = cx.client();
    Operator { ip: client.ip, agent: client.user_agent, name: Some(auth.user.username.clone()) }
}
