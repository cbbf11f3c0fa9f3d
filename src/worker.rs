//! Which worker thread runs the code at hand. `server::serve_on_workers`
//! numbers each of its threads as it starts; per-worker resources (the
//! proxy's upstream pools) pick their share by it, so a request and its
//! upstream exchange stay on one core. A module of its own, below both, so
//! the proxy need not know the server.

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which worker thread this is (0 outside `server::serve_on_workers`'s
/// threads). `#[inline]`: read on every proxied request, from another
/// module (and, in a release build, possibly another codegen unit).
#[inline]
pub fn index() -> usize {
    WORKER.get()
}

/// Numbers the calling thread: once, by each worker thread as it starts.
pub(crate) fn set_index(index: usize) {
    WORKER.set(index);
}
