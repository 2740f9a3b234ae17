//! Wakers collected under a lock and woken after it is released, in a
//! buffer reused per thread so the hot path does not allocate.

use std::cell::Cell;
use std::task::Waker;

thread_local! {
    static BUFFER: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
}

/// Wakers to wake once every lock is released. Wakes on drop too.
pub(crate) struct Wakers(Vec<Waker>);

impl Wakers {
    /// Takes this thread's reusable buffer.
    pub(crate) fn new() -> Self {
        Wakers(BUFFER.with(Cell::take))
    }

    /// Adds a waker if there is one.
    pub(crate) fn push_opt(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.0.push(w);
        }
    }

    /// Wakes everything collected so far.
    pub(crate) fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        self.wake_all();
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() <= 1024 {
            BUFFER.with(|c| c.set(buf));
        }
    }
}
