//! Starting a request's future in the call that brings the request: a request settled without
//! waiting is answered at once, with no promise, executor task or microtask; one that waits is
//! handed on as a future that continues from where it stopped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub enum Started<F: Future> {
    Settled(F::Output),
    Waiting(Continuation<F>),
}

/// Polls `handling` once.
pub fn start<F: Future>(handling: F) -> Started<F> {
    let mut handling = Box::pin(handling);
    let relay = Arc::new(Relay::default());
    let first = Waker::from(Arc::clone(&relay));
    match handling.as_mut().poll(&mut Context::from_waker(&first)) {
        Poll::Ready(output) => Started::Settled(output),
        Poll::Pending => Started::Waiting(Continuation { handling, relay }),
    }
}

/// The rest of a started future, for an executor.
pub struct Continuation<F> {
    handling: Pin<Box<F>>,
    relay: Arc<Relay>,
}

impl<F: Future> Future for Continuation<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.relay.follow(cx.waker());
        self.handling.as_mut().poll(cx)
    }
}

/// The waker of the first poll, which has no task behind it yet. A future that keeps the first
/// waker it is given (`worker::Delay` does) would otherwise never wake the task that takes over:
/// its wake-ups are passed on to the waker of the task's latest poll. One that comes before the
/// task's first poll needs no passing on, since that poll comes anyway.
#[derive(Default)]
struct Relay(Mutex<Option<Waker>>);

impl Relay {
    fn follow(&self, waker: &Waker) {
        if let Ok(mut current) = self.0.lock()
            && !current.as_ref().is_some_and(|held| held.will_wake(waker))
        {
            *current = Some(waker.clone());
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(current) = self.0.lock()
            && let Some(waker) = current.as_ref()
        {
            waker.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A timer that, like `worker::Delay`, keeps the waker of its first poll only.
    struct FirstWakerTimer {
        fired: Rc<Cell<bool>>,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    impl Future for FirstWakerTimer {
        type Output = &'static str;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.fired.get() {
                return Poll::Ready("fired");
            }
            self.waker
                .borrow_mut()
                .get_or_insert_with(|| cx.waker().clone());
            Poll::Pending
        }
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_settled_future_is_answered_at_once() {
        assert!(matches!(start(async { 7 }), Started::Settled(7)));
    }

    #[test]
    fn a_wake_up_of_the_first_poll_reaches_the_task_that_took_over() {
        let (fired, waker) = (Rc::default(), Rc::default());
        let timer = FirstWakerTimer {
            fired: Rc::clone(&fired),
            waker: Rc::clone(&waker),
        };
        let Started::Waiting(rest) = start(timer) else {
            panic!("the timer has not fired");
        };
        let mut rest = Box::pin(rest);
        let task = Arc::new(Counter::default());
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        assert!(rest.as_mut().poll(&mut cx).is_pending());

        // The timer fires and wakes the only waker it kept: the first poll's.
        fired.set(true);
        waker.borrow().as_ref().map(Waker::wake_by_ref);
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert_eq!(rest.as_mut().poll(&mut cx), Poll::Ready("fired"));
    }
}
