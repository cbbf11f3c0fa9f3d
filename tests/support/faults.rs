//! A TCP fault injector for the tests. It sits between the gateway and one of
//! its dependencies (Redis, an upstream) and, switched at run time by the test,
//! passes bytes through, delays the replies, stops answering (a black hole:
//! nothing is lost or refused, the link just goes quiet), resets every
//! connection, refuses connections, or cuts each connection after some bytes of
//! reply. A real network fails in these ways; a mock client cannot.
//!
//! "Reply" means bytes from the dependency towards the gateway. The injector
//! runs on its own thread and runtime, so its timing does not depend on how
//! busy the test's runtime is.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the injector does to the traffic, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Every chunk of reply reaches the gateway this much later than it left
    /// the dependency (latency, not a bandwidth cap).
    Delay(Duration),
    /// Accept and read, never answer, never reset: open connections go quiet
    /// and new ones are accepted into the same silence. What was held back is
    /// delivered once the mode changes, as TCP would after a partition heals.
    BlackHole,
    /// Reset (RST) every open connection now, and each new one on accept.
    Reset,
    /// Stop listening, so connecting is refused; open connections are reset.
    /// Listening resumes on the same port when the mode changes.
    Refuse,
    /// Each connection forwards at most this many more reply bytes (counted
    /// from when the mode was set, or from its opening), then is reset.
    CutAfter(u64),
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Bumped at every `set`, so `CutAfter` budgets restart.
    generation: u64,
    fault: Fault,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    open: AtomicUsize,
    reply_bytes: AtomicU64,
    request_bytes: AtomicU64,
}

/// A running injector in front of `backend`. Dropping it stops it.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `backend`.
    pub fn start(backend: SocketAddr) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let (mode, rx) = watch::channel(Mode { generation: 0, fault: Fault::Pass });
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let c = counters.clone();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                tokio::select! {
                    _ = accept_loop(listener, addr, backend, rx, c) => {}
                    _ = stop_rx => {}
                }
            });
            rt.shutdown_background();
        });
        FaultProxy { addr, mode, counters, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches the fault; open connections follow at once.
    pub fn set(&self, fault: Fault) {
        self.mode.send_modify(|m| {
            m.generation += 1;
            m.fault = fault;
        });
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }

    /// Reply bytes delivered to the gateway since the start.
    pub fn reply_bytes(&self) -> u64 {
        self.counters.reply_bytes.load(Ordering::SeqCst)
    }

    /// Request bytes delivered to the dependency since the start.
    pub fn request_bytes(&self) -> u64 {
        self.counters.request_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    backend: SocketAddr,
    mut rx: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    loop {
        if rx.borrow_and_update().fault == Fault::Refuse {
            drop(listener);
            while rx.borrow_and_update().fault == Fault::Refuse {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            // tokio sets SO_REUSEADDR, so the port is free again at once.
            listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => panic!("fault proxy cannot listen on {addr} again: {e}"),
            };
            continue;
        }
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        if matches!(rx.borrow().fault, Fault::Reset | Fault::Refuse) {
            reset(&client);
            continue;
        }
        let (rx, counters) = (rx.clone(), counters.clone());
        tokio::spawn(async move {
            counters.open.fetch_add(1, Ordering::SeqCst);
            relay(client, backend, rx, &counters).await;
            counters.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Closes with RST instead of FIN.
fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Gateway → dependency.
    Request,
    /// Dependency → gateway.
    Reply,
}

#[derive(PartialEq)]
enum End {
    /// The sender closed its side; the close was passed on.
    Closed,
    /// The connection is to be reset.
    Reset,
}

async fn relay(client: TcpStream, backend: SocketAddr, rx: watch::Receiver<Mode>, counters: &Counters) {
    let server = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(backend)).await {
        Ok(Ok(s)) => s,
        // The dependency is down: the gateway sees its connection reset.
        _ => {
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let end = {
        let requests = pipe(&mut client_r, &mut server_w, Direction::Request, rx.clone(), counters);
        let replies = pipe(&mut server_r, &mut client_w, Direction::Reply, rx, counters);
        tokio::pin!(requests, replies);
        let (mut requests_done, mut replies_done) = (false, false);
        loop {
            let end = tokio::select! {
                end = &mut requests, if !requests_done => { requests_done = true; end }
                end = &mut replies, if !replies_done => { replies_done = true; end }
            };
            if end == End::Reset {
                break End::Reset;
            }
            if requests_done && replies_done {
                break End::Closed;
            }
        }
    };
    if end == End::Reset {
        reset(client_r.as_ref());
        reset(server_r.as_ref());
    }
}

/// Copies one direction, applying the current fault to each chunk as it is
/// written. A reader task keeps reading ahead (bounded) so a delay is latency.
async fn pipe(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    dir: Direction,
    mut rx: watch::Receiver<Mode>,
    counters: &Counters,
) -> End {
    let (tx, mut chunks) = mpsc::channel::<(Instant, Bytes)>(64);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let mut watcher = rx.clone();
    let write = async move {
        let mut generation = u64::MAX;
        let mut budget = u64::MAX;
        while let Some((read_at, mut data)) = chunks.recv().await {
            loop {
                let mode = *rx.borrow_and_update();
                if mode.generation != generation {
                    generation = mode.generation;
                    budget = match mode.fault {
                        Fault::CutAfter(n) => n,
                        _ => u64::MAX,
                    };
                }
                match (mode.fault, dir) {
                    (Fault::Reset | Fault::Refuse, _) => return End::Reset,
                    (Fault::BlackHole, _) => {
                        if rx.changed().await.is_err() {
                            return End::Reset;
                        }
                        continue;
                    }
                    (Fault::Delay(d), Direction::Reply) if Instant::now() < read_at + d => {
                        // Wakes early if the fault changes, and looks again.
                        tokio::select! {
                            _ = tokio::time::sleep_until(read_at + d) => {}
                            _ = rx.changed() => {}
                        }
                        continue;
                    }
                    (Fault::CutAfter(_), Direction::Reply) if data.len() as u64 >= budget => {
                        let part = data.split_to(budget as usize);
                        if to.write_all(&part).await.is_ok() {
                            counters.reply_bytes.fetch_add(part.len() as u64, Ordering::SeqCst);
                        }
                        return End::Reset;
                    }
                    _ => {}
                }
                if to.write_all(&data).await.is_err() {
                    return End::Reset;
                }
                budget = budget.saturating_sub(data.len() as u64);
                let counter = match dir {
                    Direction::Request => &counters.request_bytes,
                    Direction::Reply => &counters.reply_bytes,
                };
                counter.fetch_add(data.len() as u64, Ordering::SeqCst);
                break;
            }
        }
        let _ = to.shutdown().await;
        End::Closed
    };
    // A reset must reach connections that are idle, too.
    let reset_ordered = async move {
        loop {
            if matches!(watcher.borrow_and_update().fault, Fault::Reset | Fault::Refuse) {
                return;
            }
            if watcher.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        (_, end) = async { tokio::join!(read, write) } => end,
        () = reset_ordered => End::Reset,
    }
}
