//! The bounded local queue between a reader task and the application.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use switchyard_core::{Overflow, SubscriberStats};
use tokio::sync::Notify;

/// What became of a pushed item.
#[derive(Debug)]
pub(crate) enum Pushed<T> {
    /// It is in the queue.
    Queued,
    /// It is in the queue, and this older item was dropped to make room
    /// (`DropOldest`).
    DroppedOldest(T),
    /// The queue was full and this (new) item was not queued (`DropNewest`).
    DroppedNewest(T),
    /// The application closed the subscriber: nothing is queued any more.
    Closed(T),
}

struct State<T> {
    items: VecDeque<T>,
    /// The reader is gone: once drained, `poll_pop` returns `None`.
    producer_done: bool,
    /// The application is gone: pushes are refused.
    consumer_done: bool,
    waker: Option<Waker>,
}

/// A bounded queue with an [`Overflow`] policy. `Block` makes the reader
/// wait for room (lossless); `DropOldest` / `DropNewest` drop and hand the
/// dropped item back so the caller can count it (in group mode a dropped
/// entry stays pending in Redis and comes back after the ack timeout).
pub(crate) struct LocalQueue<T> {
    capacity: usize,
    overflow: Overflow,
    state: Mutex<State<T>>,
    room: Notify,
    /// The back-pressure warning (`Subscription::buffer_warning`).
    watch: Option<switchyard_core::BufferWatch>,
}

impl<T> LocalQueue<T> {
    /// A queue of `capacity` items (at least 1).
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        LocalQueue {
            capacity: capacity.max(1),
            overflow,
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.clamp(1, 1024)),
                producer_done: false,
                consumer_done: false,
                waker: None,
            }),
            room: Notify::new(),
            watch: None,
        }
    }

    /// Warns through `watch` while the queue stays full (see
    /// `Subscription::buffer_warning`).
    pub(crate) fn with_watch(mut self, watch: switchyard_core::BufferWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// The capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds an item, waiting for room under `Overflow::Block`.
    pub(crate) async fn push(&self, item: T) -> Pushed<T> {
        let mut item = item;
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(item) {
                Err(back) => item = back,
                Ok(pushed) => return pushed,
            }
            notified.await;
        }
    }

    /// Adds an item without waiting; `Err(item)` when `Block` and full.
    pub(crate) fn try_push(&self, item: T) -> Result<Pushed<T>, T> {
        let mut st = self.state.lock();
        if st.consumer_done {
            return Ok(Pushed::Closed(item));
        }
        let mut result = Pushed::Queued;
        if st.items.len() >= self.capacity {
            match self.overflow {
                Overflow::DropNewest => return Ok(Pushed::DroppedNewest(item)),
                Overflow::DropOldest => {
                    if let Some(old) = st.items.pop_front() {
                        result = Pushed::DroppedOldest(old);
                    }
                }
                _ => return Err(item),
            }
        }
        st.items.push_back(item);
        self.pushed(st);
        Ok(result)
    }

    /// After a push: releases the lock, then reports the new length and
    /// wakes the consumer (outside the lock).
    fn pushed(&self, mut st: parking_lot::MutexGuard<'_, State<T>>) {
        let len = st.items.len();
        let waker = st.waker.take();
        drop(st);
        if let Some(watch) = &self.watch {
            watch.observe(len);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Adds every item of `items` in order, waiting for room under
    /// `Overflow::Block`: one lock and one wake-up of the consumer per
    /// run of items that fit, instead of one per item. Items dropped by the
    /// overflow policy (older queued ones under `DropOldest`, new ones
    /// under `DropNewest`) are moved to `dropped` for the caller to count.
    /// `false` when the application closed the subscriber: what was not
    /// queued is left in `items`. Cancelled (dropped) while waiting, the
    /// items not queued yet are still in `items` and the dropped ones in
    /// `dropped`.
    pub(crate) async fn push_all(&self, items: &mut VecDeque<T>, dropped: &mut Vec<T>) -> bool {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.try_push_all(items, dropped) {
                return false;
            }
            if items.is_empty() {
                return true;
            }
            notified.await;
        }
    }

    /// [`push_all`](Self::push_all) without waiting: queues what fits (all
    /// of it under the drop policies) and leaves the rest in `items`.
    /// `false` when the application closed the subscriber.
    pub(crate) fn try_push_all(&self, items: &mut VecDeque<T>, dropped: &mut Vec<T>) -> bool {
        let mut st = self.state.lock();
        if st.consumer_done {
            return false;
        }
        let mut pushed = false;
        while let Some(item) = items.pop_front() {
            if st.items.len() >= self.capacity {
                match self.overflow {
                    Overflow::DropNewest => {
                        dropped.push(item);
                        continue;
                    }
                    Overflow::DropOldest => {
                        if let Some(old) = st.items.pop_front() {
                            dropped.push(old);
                        }
                    }
                    _ => {
                        items.push_front(item);
                        break;
                    }
                }
            }
            st.items.push_back(item);
            pushed = true;
        }
        if pushed {
            self.pushed(st);
        }
        true
    }

    /// Takes the next item; `Ready(None)` once the producer is done and the
    /// queue is drained (or the consumer closed).
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.state.lock();
        if let Some(item) = st.items.pop_front() {
            drop(st);
            self.room.notify_one();
            return Poll::Ready(Some(item));
        }
        if st.producer_done || st.consumer_done {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The reader is gone: the consumer gets what is left, then `None`.
    pub(crate) fn close_producer(&self) {
        let mut st = self.state.lock();
        st.producer_done = true;
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The subscriber is closing: refuse pushes, wake a waiting reader and
    /// a waiting `poll_pop` (it returns `None` at once), and return what
    /// was still queued.
    pub(crate) fn close_consumer(&self) -> Vec<T> {
        let mut st = self.state.lock();
        st.consumer_done = true;
        let left = st.items.drain(..).collect();
        let waker = st.waker.take();
        drop(st);
        self.room.notify_waiters();
        self.room.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
        left
    }

    /// Whether the application closed the subscriber.
    pub(crate) fn is_consumer_closed(&self) -> bool {
        self.state.lock().consumer_done
    }

    /// Items queued now.
    #[allow(dead_code)] // for group readers sizing their reads
    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Free slots now (0 under any policy when full).
    #[allow(dead_code)] // for group readers sizing their reads
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }
}

/// Subscriber counters shared between a reader task and its subscriber.
#[derive(Debug, Default)]
pub(crate) struct SubStats {
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) lost_to_retention: AtomicU64,
}

impl SubStats {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot as [`SubscriberStats`].
    pub(crate) fn snapshot(&self) -> SubscriberStats {
        let mut s = SubscriberStats::default();
        s.received = self.received.load(Ordering::Relaxed);
        s.acked = self.acked.load(Ordering::Relaxed);
        s.nacked = self.nacked.load(Ordering::Relaxed);
        s.redelivered = self.redelivered.load(Ordering::Relaxed);
        s.dead_lettered = self.dead_lettered.load(Ordering::Relaxed);
        s.dropped = self.dropped.load(Ordering::Relaxed);
        s.malformed = self.malformed.load(Ordering::Relaxed);
        s.lost_to_retention = self.lost_to_retention.load(Ordering::Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn pop_now<T>(q: &LocalQueue<T>) -> Poll<Option<T>> {
        let waker = futures::task::noop_waker();
        q.poll_pop(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let q = Arc::new(LocalQueue::new(2, Overflow::Block));
        assert!(matches!(q.push(1).await, Pushed::Queued));
        assert!(matches!(q.push(2).await, Pushed::Queued));
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { matches!(q2.push(3).await, Pushed::Queued) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pusher.is_finished());
        assert_eq!(pop_now(&q), Poll::Ready(Some(1)));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), pusher)
                .await
                .unwrap()
                .unwrap()
        );
        assert_eq!(pop_now(&q), Poll::Ready(Some(2)));
        assert_eq!(pop_now(&q), Poll::Ready(Some(3)));
        assert_eq!(pop_now(&q), Poll::Pending);
        q.close_producer();
        assert_eq!(pop_now(&q), Poll::Ready(None));
    }

    /// A batch larger than the room: what fits is queued at once, the
    /// rest once the consumer makes room, in order.
    #[tokio::test]
    async fn push_all_waits_for_room_and_keeps_order() {
        let q = Arc::new(LocalQueue::new(3, Overflow::Block));
        let q2 = q.clone();
        let pusher = tokio::spawn(async move {
            let mut items: VecDeque<u32> = (1..=5).collect();
            let mut dropped = Vec::new();
            let open = q2.push_all(&mut items, &mut dropped).await;
            (open, items.len(), dropped.len())
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 5 && std::time::Instant::now() < deadline {
            match pop_now(&q) {
                Poll::Ready(Some(v)) => got.push(v),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        let done = tokio::time::timeout(Duration::from_secs(5), pusher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done, (true, 0, 0));
    }

    #[tokio::test]
    async fn push_all_drop_policies_and_close() {
        let q = LocalQueue::new(2, Overflow::DropOldest);
        let (mut items, mut dropped) = ((1..=5).collect::<VecDeque<u32>>(), Vec::new());
        assert!(q.push_all(&mut items, &mut dropped).await);
        assert_eq!(dropped, vec![1, 2, 3]);
        assert_eq!(pop_now(&q), Poll::Ready(Some(4)));
        assert_eq!(pop_now(&q), Poll::Ready(Some(5)));
        let q = LocalQueue::new(2, Overflow::DropNewest);
        let (mut items, mut dropped) = ((1..=5).collect::<VecDeque<u32>>(), Vec::new());
        assert!(q.push_all(&mut items, &mut dropped).await);
        assert_eq!(dropped, vec![3, 4, 5]);
        assert_eq!(pop_now(&q), Poll::Ready(Some(1)));
        let q = LocalQueue::new(2, Overflow::Block);
        assert!(q.close_consumer().is_empty());
        let (mut items, mut dropped) = ((1..=3).collect::<VecDeque<u32>>(), Vec::new());
        assert!(!q.push_all(&mut items, &mut dropped).await);
        assert_eq!(items.len(), 3);
        assert!(dropped.is_empty());
    }

    #[tokio::test]
    async fn drop_policies() {
        let q = LocalQueue::new(1, Overflow::DropOldest);
        q.push(1).await;
        assert!(matches!(q.push(2).await, Pushed::DroppedOldest(1)));
        assert_eq!(pop_now(&q), Poll::Ready(Some(2)));
        let q = LocalQueue::new(1, Overflow::DropNewest);
        q.push(1).await;
        assert!(matches!(q.push(2).await, Pushed::DroppedNewest(2)));
        assert_eq!(pop_now(&q), Poll::Ready(Some(1)));
    }

    /// Reproduction: a `recv` waiting on an empty queue was not woken by
    /// `close_consumer` (the transport's close), so it ended only when
    /// something else polled it.
    #[tokio::test]
    async fn consumer_close_wakes_a_waiting_pop() {
        let q = Arc::new(LocalQueue::<u32>::new(4, Overflow::Block));
        let q2 = q.clone();
        let popper = tokio::spawn(async move { std::future::poll_fn(|cx| q2.poll_pop(cx)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!popper.is_finished());
        assert!(q.close_consumer().is_empty());
        let got = tokio::time::timeout(Duration::from_secs(5), popper)
            .await
            .expect("woken at once")
            .expect("no panic");
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn consumer_close_releases_blocked_reader() {
        let q = Arc::new(LocalQueue::new(1, Overflow::Block));
        q.push(1).await;
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { matches!(q2.push(2).await, Pushed::Closed(2)) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(q.close_consumer(), vec![1]);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), pusher)
                .await
                .unwrap()
                .unwrap()
        );
        assert!(q.is_consumer_closed());
    }
}
