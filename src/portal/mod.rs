//! The gateway's own endpoints under `auth.prefix`: pages, the JSON API,
//! forward-auth, health and static files. Handlers speak HTTP; decisions live in
//! `auth`, state in `store`.

pub mod respond;

use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;

use crate::app::App;
use crate::router::{Outcome, RequestInfo};

/// Dispatches `rest` (the path after the prefix).
pub async fn handle(app: &App, req: Request<Incoming>, info: RequestInfo, rest: &str) -> Outcome {
    let mut outcome = dispatch(app, req, info, rest).await;
    if outcome.route != "static" {
        respond::secure_headers(outcome.response.headers_mut(), app.hsts);
    }
    outcome
}

async fn dispatch(app: &App, req: Request<Incoming>, info: RequestInfo, rest: &str) -> Outcome {
    let _ = info;
    let method = req.method().clone();
    match (&method, rest) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            Outcome::new("healthz", respond::json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => Outcome::new("readyz", readyz(app).await),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/static/") => {
            Outcome::new("static", static_file(&req, &p["/static/".len()..]))
        }
        _ => {
            let html = respond::wants_html(req.headers());
            Outcome::new("not_found", respond::error(app, StatusCode::NOT_FOUND, "No such page.", html))
        }
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

fn static_file(req: &Request<Incoming>, path: &str) -> crate::body::Response {
    let Some(asset) = crate::assets::find(path) else {
        return respond::text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = if req.headers().get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == asset.etag.as_bytes()) {
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
