//! The invalidation channel: a pub/sub subscription to `{prefix}revoked`, on
//! which every step that ends a session announces its id (from inside the Lua
//! script that deletes it). Each announcement removes the id from this
//! process's near cache.
//!
//! The cache serves only while this channel is known to deliver: after the
//! subscription is confirmed and a ping has come back, and for `LEASE` after
//! each later ping was sent (a ping's answer arrives after every message
//! published before the ping reached Redis). A closed connection, a failed or
//! late ping, empties the cache at once; requests then go to Redis as without
//! a cache until a new subscription is up. On Sentinel the subscriber follows
//! the master; on Cluster any node will do, as a cluster forwards every
//! PUBLISH to all its nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::{PubSub, PubSubSink, PubSubStream};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connect::SubscriptionTarget;
use super::near_cache::NearCache;

/// How often the channel is pinged.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// How long after a ping was sent its answer lets the cache serve: the longest
/// a silently broken channel can leave a revoked session cached.
pub(super) const LEASE: Duration = Duration::from_secs(1);
/// Pauses between subscription attempts: short at first, so a failover or a
/// restart is followed quickly, then at most a second.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Aborts the task when the last handle to the store is dropped.
pub(super) struct Subscriber(JoinHandle<()>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts keeping `cache` in step with the channel, for as long as the
/// returned handle lives.
pub(super) fn spawn(
    cache: Arc<NearCache>,
    target: Arc<SubscriptionTarget>,
    channel: String,
    timeout: Duration,
) -> Subscriber {
    Subscriber(tokio::spawn(run(cache, target, channel, timeout)))
}

// How long the channel has been down, in real time, for the log.
#[allow(clippy::disallowed_methods)]
async fn run(cache: Arc<NearCache>, target: Arc<SubscriptionTarget>, channel: String, timeout: Duration) {
    let live = &crate::metrics::get().session_cache_live;
    let mut attempt = 0usize;
    let mut failing_since: Option<Instant> = None;
    loop {
        match subscribe(&target, &channel, attempt, timeout).await {
            Ok(pubsub) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(after_ms = since.elapsed().as_millis(), "near cache: invalidation channel back");
                }
                attempt = 0;
                let why = listen(&cache, pubsub, timeout, live).await;
                cache.go_dark();
                live.set(0);
                failing_since = Some(Instant::now());
                tracing::warn!(
                    reason = why,
                    "near cache: invalidation channel lost; cache emptied, sessions checked in Redis until it is back"
                );
            }
            Err(e) => {
                if attempt == 0 && failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    tracing::warn!(error = %e, "near cache: cannot subscribe to the invalidation channel; sessions are checked in Redis");
                }
                attempt += 1;
            }
        }
        let pause = RETRY_MIN.saturating_mul(1 << attempt.min(5)).min(RETRY_MAX);
        tokio::time::sleep(pause).await;
    }
}

async fn subscribe(
    target: &SubscriptionTarget,
    channel: &str,
    attempt: usize,
    timeout: Duration,
) -> Result<PubSub, String> {
    let clients = tokio::time::timeout(timeout, target.clients(attempt))
        .await
        .map_err(|_| "no answer finding the server".to_string())?
        .map_err(|e| e.to_string())?;
    let mut last = String::from("no server to subscribe to");
    for client in clients {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, deadpool_redis::redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "subscription timed out".into(),
        }
    }
    Err(last)
}

/// Applies announcements until the channel fails; says why it stopped.
async fn listen(cache: &NearCache, pubsub: PubSub, timeout: Duration, live: &prometheus::IntGauge) -> &'static str {
    let (sink, mut stream) = pubsub.split();
    let (pongs, mut answered) = mpsc::channel::<Instant>(4);
    let pinger = Pinger(tokio::spawn(ping(sink, pongs, timeout)));
    // The first answer proves the subscription delivers; only then serve.
    match tokio::time::timeout(timeout, answered.recv()).await {
        Ok(Some(sent)) => {
            cache.go_live();
            cache.extend_lease(sent, LEASE);
            live.set(1);
        }
        _ => return "no answer to the first ping",
    }
    let why = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => apply(cache, &msg),
                None => break "connection closed",
            },
            pong = answered.recv() => match pong {
                Some(sent) => {
                    // Everything published before this ping is queued already.
                    if !drain(cache, &mut stream) {
                        break "connection closed";
                    }
                    cache.extend_lease(sent, LEASE);
                }
                None => break "ping failed or timed out",
            },
        }
    };
    drop(pinger);
    why
}

fn apply(cache: &NearCache, msg: &deadpool_redis::redis::Msg) {
    match msg.get_payload::<String>() {
        Ok(id) => cache.invalidate(&id),
        // Not ours to read: forget everything rather than guess.
        Err(_) => cache.forget_all(),
    }
}

/// Applies every message already received; false if the stream has ended.
fn drain(cache: &NearCache, stream: &mut PubSubStream) -> bool {
    while let Some(next) = stream.next().now_or_never() {
        match next {
            Some(msg) => apply(cache, &msg),
            None => return false,
        }
    }
    true
}

/// Pings every `HEARTBEAT`, reporting when each answered ping was sent; ends
/// (closing `pongs`) at the first failure or late answer.
// When each ping was sent, in the monotonic time the near cache's lease counts in.
#[allow(clippy::disallowed_methods)]
async fn ping(mut sink: PubSubSink, pongs: mpsc::Sender<Instant>, timeout: Duration) {
    loop {
        let sent = Instant::now();
        match tokio::time::timeout(timeout.min(LEASE), sink.ping::<deadpool_redis::redis::Value>()).await {
            Ok(Ok(_)) if pongs.send(sent).await.is_ok() => {}
            _ => return,
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

struct Pinger(JoinHandle<()>);

impl Drop for Pinger {
    fn drop(&mut self) {
        self.0.abort();
    }
}
