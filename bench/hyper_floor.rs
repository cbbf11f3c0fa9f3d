//! The floor under the gateway's proxying: a minimal hyper 1.x reverse proxy
//! with nothing of the gateway's own (no session check, header hygiene,
//! access log or metrics), built the way the gateway serves: one
//! current-thread runtime per core, each with its own keep-alive pool to the
//! upstream. `bench/proxy.sh` runs it beside nginx and the gateway, so the
//! part of the gap to nginx that is hyper's own shows in the same run.
//!
//! With `200` for the upstream it proxies nothing and answers every request
//! with an empty 200: the floor under a forward-auth check, as the gateway
//! would answer one with no work to do.
//!
//! Usage: `hyper_floor LISTEN UPSTREAM|200` (`host:port`).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpSocket;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper_floor LISTEN UPSTREAM|200");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is host:port");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: Vec<_> = (0..cores)
        .map(|_| {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(serve(listen, upstream));
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// One core's share: its own listener on the shared port (SO_REUSEPORT), its
/// own connections and its own pool.
async fn serve(listen: SocketAddr, upstream: String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(listen).expect("bind");
    let listener = socket.listen(1024).expect("listen");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let answer_only = upstream == "200";
            let service = service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let uri: Option<Result<Uri, _>> = (!answer_only).then(|| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    format!("http://{upstream}{path}").parse()
                });
                async move {
                    let Some(uri) = uri else { return Ok(status(StatusCode::OK)) };
                    let Ok(uri) = uri else { return Ok(status(StatusCode::BAD_REQUEST)) };
                    *req.uri_mut() = uri;
                    Ok::<_, Infallible>(match client.request(req).await {
                        Ok(response) => response.map(http_body_util::Either::Left),
                        Err(_) => status(StatusCode::BAD_GATEWAY),
                    })
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn status(code: StatusCode) -> Response<http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>> {
    let mut response = Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *response.status_mut() = code;
    response
}
