//! Worker threads: each runs a single-threaded runtime, and each connection
//! lives on one of them from accept to close.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::accept::{Accepted, Accepting, Held};
use super::handler::Handler;
use super::limits::Limits;
use super::listener::Listener;
use crate::shutdown::Shutdown;

/// Like [`serve`], but each connection lives on one of `workers` threads that
/// each run a single-threaded runtime: a request, its upstream exchange and its
/// timers stay on one core, with no hand-off between threads. The accept loop
/// runs on the calling runtime and deals connections out in turn.
pub async fn serve_on_workers<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: Shutdown,
    workers: usize,
) -> std::io::Result<()> {
    let workers = workers.max(1);
    let accepting = Arc::new(Accepting::new(handler, limits, listener.tls.clone(), shutdown));
    let mut queues = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        // Unbounded, yet bounded by the connection cap: every queued
        // connection holds its permit.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Held)>();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().thread_stack_size(STACK_SIZE).build()?;
        let accepting = accepting.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .stack_size(STACK_SIZE)
            .spawn(move || {
                crate::worker::set_index(index);
                runtime.block_on(async move {
                    // This worker's access-log lines go to the writer in batches.
                    tokio::spawn(crate::logging::batch_access_log());
                    while let Some((stream, peer, held)) = rx.recv().await {
                        if let Ok(stream) = TcpStream::from_std(stream) {
                            accepting.spawn(Accepted { stream, peer, held });
                        }
                    }
                    // Accepting stopped: keep this runtime, and the connections
                    // on it, until every connection has ended (the permits are
                    // shared, so this waits for every worker's).
                    accepting.drain().await
                })
            })?;
        queues.push(tx);
        threads.push(thread);
    }
    let mut next = 0;
    accepting
        .accept(&listener.tcp, |Accepted { stream, peer, held }| {
            // The stream leaves this runtime's reactor and joins the worker's.
            let Ok(stream) = stream.into_std() else { return };
            let _ = queues[next].send((stream, peer, held));
            next = (next + 1) % queues.len();
        })
        .await;
    drop(listener);
    drop(queues);
    // Each worker drains before its thread ends.
    let joined = tokio::task::spawn_blocking(move || threads.into_iter().map(|t| t.join().unwrap_or(false)).collect());
    let drained: Vec<bool> = joined.await.unwrap_or_default();
    if drained.contains(&false) {
        tracing::warn!("shutdown grace elapsed; closing remaining connections");
    }
    Ok(())
}

/// Stack size of every runtime thread (the main runtime's too).
pub const STACK_SIZE: usize = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::Request;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::body::Response;
    use crate::config::ServerConfig;
    use crate::server::handler::ConnInfo;

    /// Answers with the index of the worker thread that served the request.
    struct WhichWorker;
    impl Handler for WhichWorker {
        async fn handle(self: Arc<Self>, _: Request<Incoming>, _: ConnInfo) -> Response {
            Response::new(crate::body::Body::full(crate::worker::index().to_string()))
        }
    }

    /// Each connection goes to the next worker in turn and all its requests are
    /// served there; shutting down returns once the workers have stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_dealt_to_the_workers_in_turn_and_stay_on_theirs() {
        use http_body_util::BodyExt;
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None).await.unwrap();
        let addr = listener.local_addr();
        let shutdown = Shutdown::default();
        let mut limits = Limits::from_config(&ServerConfig::default());
        limits.shutdown_grace = Duration::from_secs(2);
        let served = tokio::spawn(serve_on_workers(listener, Arc::new(WhichWorker), limits, shutdown.clone(), 2));
        let mut dealt = Vec::new();
        for _ in 0..4 {
            // One keep-alive connection, three requests on it, one after another.
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            let conn = tokio::spawn(conn);
            let mut seen = Vec::new();
            for _ in 0..3 {
                let req =
                    Request::get("/").header("host", "gateway").body(http_body_util::Empty::<bytes::Bytes>::new());
                sender.ready().await.unwrap();
                let resp = sender.send_request(req.unwrap()).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                seen.push(String::from_utf8(body.to_vec()).unwrap());
            }
            assert!(seen.iter().all(|w| *w == seen[0]), "one connection, one worker: {seen:?}");
            dealt.push(seen[0].clone());
            drop(sender);
            let _ = conn.await;
        }
        assert_eq!(dealt, ["0", "1", "0", "1"], "connections dealt in turn");
        shutdown.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(5), served).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "serving stops on shutdown: {stopped:?}");
    }
}
