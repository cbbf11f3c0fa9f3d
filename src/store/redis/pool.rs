//! The pool of Redis connections, and when a pooled connection is checked.
//!
//! deadpool-redis checks every connection at every checkout with an
//! UNWATCH+PING round trip. That doubles the round trips of each store
//! operation, and against a Redis slower than half of `store.timeout` the
//! check alone used up the deadline: every operation failed although Redis
//! answered each command in time. Here the same check runs only when there is
//! a reason to doubt the connection: its last command did not complete (an I/O
//! error, a timeout, or a deadline that dropped the call half-way), or it has
//! sat unused long enough for a server `timeout` or a NAT to have cut it.
//! Everything else about connections (creating them, the check itself) stays
//! deadpool-redis's.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// A connection unused for this long is checked before it is handed out.
const IDLE_CHECK: Duration = Duration::from_secs(15);

/// deadpool-redis's manager, checking connections only when in doubt.
pub(super) struct Manager {
    inner: deadpool_redis::Manager,
}

impl Manager {
    pub(super) fn new(inner: deadpool_redis::Manager) -> Manager {
        Manager { inner }
    }
}

/// A pooled connection and whether its last command completed.
pub(super) struct Tracked {
    conn: MultiplexedConnection,
    in_doubt: bool,
}

impl managed::Manager for Manager {
    type Type = Tracked;
    type Error = RedisError;

    async fn create(&self) -> Result<Tracked, RedisError> {
        Ok(Tracked { conn: managed::Manager::create(&self.inner).await?, in_doubt: false })
    }

    async fn recycle(&self, c: &mut Tracked, metrics: &Metrics) -> RecycleResult<RedisError> {
        if c.in_doubt || metrics.last_used() >= IDLE_CHECK {
            managed::Manager::recycle(&self.inner, &mut c.conn, metrics).await?;
            c.in_doubt = false;
        }
        Ok(())
    }
}

pub(super) type Pool = managed::Pool<Manager, Connection>;

/// A connection checked out of the pool; it goes back when dropped.
pub(super) struct Connection(managed::Object<Manager>);

impl From<managed::Object<Manager>> for Connection {
    fn from(o: managed::Object<Manager>) -> Self {
        Connection(o)
    }
}

/// Whether a failed command leaves the connection's state unknown. A reply
/// that is an error (NOSCRIPT, WRONGTYPE, ...) came over a working connection.
fn leaves_doubt(e: &RedisError) -> bool {
    !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            // Set before sending: a deadline that drops this future half-way
            // leaves the connection in doubt.
            self.0.in_doubt = true;
            let reply = self.0.conn.req_packed_command(cmd).await;
            self.0.in_doubt = reply.as_ref().is_err_and(leaves_doubt);
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.0.in_doubt = true;
            let reply = self.0.conn.req_packed_commands(pipeline, offset, count).await;
            self.0.in_doubt = reply.as_ref().is_err_and(leaves_doubt);
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.0.conn.get_db()
    }
}
