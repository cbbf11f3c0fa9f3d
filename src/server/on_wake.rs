//! A future polled only when it woke its task itself.
//!
//! `tokio::select!` polls every branch at every wake of its task. A
//! connection's task wakes two or three times a request for hyper's sake (the
//! request's bytes, the upstream's answer, ...), and its other branches, the
//! shutdown signal and the idle check's timer, were polled each time for
//! nothing: a lock in the shutdown watch and a timer check, some 600
//! instructions a proxied request (callgrind). [`OnWake`] gives the future it
//! wraps a waker of its own and polls it only once that waker has fired (and
//! on its first poll), so a wake meant for hyper costs one atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// `fut`, polled only after its own wake-ups.
pub fn on_wake<F: Future>(fut: F) -> OnWake<F> {
    let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: Mutex::new(None) });
    OnWake { fut, own: Waker::from(flag.clone()), flag, task: None }
}

pin_project_lite::pin_project! {
    pub struct OnWake<F> {
        #[pin]
        fut: F,
        flag: Arc<Flag>,
        // The waker handed to `fut`: it marks the flag and wakes the task.
        own: Waker,
        // The task's waker last stored in the flag, compared at each poll
        // without taking the lock.
        task: Option<Waker>,
    }
}

struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            // First poll, or polled from another task: whatever `fut` waits
            // for must wake this one, and `fut` is polled to register anew.
            *this.flag.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            *this.task = Some(cx.waker().clone());
            this.flag.woken.store(true, Ordering::Relaxed);
        }
        if !this.flag.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        this.fut.poll(&mut Context::from_waker(this.own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, waking through the waker
    /// it was last polled with.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_future_is_polled_first_and_then_only_after_its_own_wake() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None));
        let probe = Probe { polls: polls.clone(), ready: ready.clone(), waker: waker.clone() };
        let mut fut = Box::pin(on_wake(probe));

        struct CountWakes(AtomicUsize);
        impl Wake for CountWakes {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let task = Arc::new(CountWakes(AtomicUsize::new(0)));
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);

        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll reaches the future");
        for _ in 0..5 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "wakes meant for others do not poll it");

        ready.store(true, Ordering::SeqCst);
        waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "its own wake wakes the task");
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_new_task_polls_the_future_again() {
        let polls = Arc::new(AtomicUsize::new(0));
        let probe =
            Probe { polls: polls.clone(), ready: Arc::new(AtomicBool::new(false)), waker: Arc::new(Mutex::new(None)) };
        let mut fut = Box::pin(on_wake(probe));
        let (a, b) = (Waker::noop().clone(), Waker::from(Arc::new(Noop)));
        assert!(fut.as_mut().poll(&mut Context::from_waker(&a)).is_pending());
        assert!(fut.as_mut().poll(&mut Context::from_waker(&b)).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2, "re-registered with the new task");
    }

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
}
