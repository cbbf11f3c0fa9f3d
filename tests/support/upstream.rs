//! An in-process upstream for the proxy tests: echoes requests as JSON, streams
//! large downloads, counts uploads, answers slowly on demand, and echoes
//! WebSocket messages. Optionally over TLS. It counts the requests it served
//! and whom the gateway said each was for, so a test can check from this side
//! that nothing arrived without an identity.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests served (to check that a refused request never arrived).
    pub hits: Arc<AtomicUsize>,
    /// How many requests arrived with each `Remote-User` value ("" for none).
    pub identities: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with_tls(None).await
    }

    pub async fn start_with_tls(tls: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Upstream {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let acceptor = tls.map(|(cert, key)| {
            super::crypto();
            use rustls_pki_types::pem::PemObject;
            let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(&cert)
                .expect("cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
            let mut cfg =
                rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("tls");
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let identities = Arc::new(Mutex::new(BTreeMap::new()));
        let seen = identities.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Its own thread and runtime: the upstream answers at its own pace
        // whatever load the test's runtime is under.
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { return };
                        let counter = counter.clone();
                        let seen = seen.clone();
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req: Request<Incoming>| {
                                counter.fetch_add(1, Ordering::SeqCst);
                                let user = req.headers().get("remote-user").map(|v| v.as_bytes().to_vec());
                                let user = String::from_utf8_lossy(user.as_deref().unwrap_or_default()).into_owned();
                                *seen.lock().unwrap().entry(user).or_default() += 1;
                                handle(req)
                            });
                            let builder = auto::Builder::new(TokioExecutor::new());
                            match acceptor {
                                Some(a) => {
                                    if let Ok(s) = a.accept(stream).await {
                                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                                    }
                                }
                                None => {
                                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
            rt.shutdown_background();
        });
        Upstream { addr, hits, identities, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests seen per `Remote-User` value ("" for requests without one).
    pub fn identities(&self) -> BTreeMap<String, usize> {
        self.identities.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn full(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()).boxed())
        .expect("response")
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            full(StatusCode::OK, "text/plain", "finally")
        }
        "/download" => {
            let total = query_num(&req, "bytes");
            // gap_ms=N: a pause before each 64 KiB chunk after the first.
            let gap = Duration::from_millis(query_num(&req, "gap_ms"));
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    if left < total && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    let n = left.min(chunk.len() as u64);
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n as usize))), left - n))
                }
            });
            // chunked=1: no Content-Length, so only the last chunk marks the end.
            let mut r = Response::builder().header("content-type", "application/octet-stream");
            if query_num(&req, "chunked") == 0 {
                r = r.header("content-length", total.to_string());
            }
            r.body(BodyExt::boxed(StreamBody::new(stream))).expect("response")
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => {
                        return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "broken upload"));
                    }
                }
            }
            full(StatusCode::OK, "application/json", format!("{{\"bytes\":{n}}}"))
        }
        "/ws" => websocket(req),
        _ => {
            let headers: BTreeMap<String, Vec<String>> = req
                .headers()
                .keys()
                .map(|k| {
                    let values = req
                        .headers()
                        .get_all(k)
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect();
                    (k.as_str().to_string(), values)
                })
                .collect();
            let echo = serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            full(StatusCode::OK, "application/json", echo.to_string())
        }
    })
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "text/plain", "not a websocket request");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                let _ = ws.send(msg).await;
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()).boxed())
        .expect("response")
}
