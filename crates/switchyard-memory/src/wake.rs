//! Wakers collected under a lock and woken after it is released. The first
//! few live on the stack, so the hot path does not allocate.

use std::task::Waker;

const INLINE: usize = 4;

/// Wakers to wake once every lock is released. Wakes on drop too.
pub(crate) struct Wakers {
    inline: [Option<Waker>; INLINE],
    len: usize,
    spill: Vec<Waker>,
}

impl Wakers {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Wakers {
            inline: [const { None }; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Adds a waker if there is one.
    pub(crate) fn push_opt(&mut self, waker: Option<Waker>) {
        let Some(w) = waker else { return };
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(w);
                self.len += 1;
            }
            None => self.spill.push(w),
        }
    }

    /// Wakes everything collected so far.
    pub(crate) fn wake_all(&mut self) {
        for slot in &mut self.inline[..self.len] {
            if let Some(w) = slot.take() {
                w.wake();
            }
        }
        self.len = 0;
        if !self.spill.is_empty() {
            for w in self.spill.drain(..) {
                w.wake();
            }
        }
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        self.wake_all();
    }
}
