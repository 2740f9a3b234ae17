//! Ending a group subscriber: the closer task.
//!
//! Every group subscriber has a closer that waits until the subscriber is
//! closed (`Subscriber::close`) or its transport is (`Transport::close`),
//! and then runs the same sequence either way:
//!
//! 1. stop every task and end `recv` (it returns `None` at once); the
//!    entries in the local buffer are queued for release;
//! 2. wait (bounded) for the tasks to end, so no read is still delivering,
//!    and for the reader's last `XREADGROUP` to end in Redis too
//!    ([`reader::settle`]: `CLIENT UNBLOCK`, or up to `block` without it) —
//!    a read still blocked there would take new entries for this consumer
//!    after it is gone;
//! 3. wait (bounded) for the ack flusher to send the queued acks — an acked
//!    entry must be out of the pending list before the pending list is
//!    scanned for entries to give back;
//! 4. give back to the group what was fetched and never handed out: the
//!    buffered entries, any a task still held when it ended, and any a read
//!    cut short fetched without handing them here. Their delivery count
//!    goes back by one (they used up no attempt), and other members take
//!    them at once instead of after the ack timeout;
//! 5. remove this consumer from the group when nothing is pending for it.
//!
//! A read that blocks longer than the close waits (`block` above 5 s and
//! no `CLIENT UNBLOCK`) is settled after `close` returned: once it ends,
//! steps 4 and 5 run again for what it took.
//!
//! A subscriber dropped without `close` aborts its closer: like a crash,
//! its entries stay pending and come back after the ack timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{CLOSE_FLUSH_TIMEOUT, Group, acker, cleanup, keep, reader};

/// Runs the close sequence once the subscriber or its transport stops,
/// then sets `done`.
pub(crate) async fn run(g: Arc<Group>, tasks: Vec<JoinHandle<()>>, done: watch::Sender<bool>) {
    g.stopped().await;
    g.stop();
    for task in tasks {
        // The tasks end at their next await point; bound the wait anyway.
        if tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::debug!(group = %g.cfg.group, "a group task did not end in time on close");
        }
    }
    let settle = reader::settle(&g);
    tokio::pin!(settle);
    let settled = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut settle)
        .await
        .is_ok();
    acker::drain(&g, CLOSE_FLUSH_TIMEOUT).await;
    let buffered = g.tracker.lock().take_buffered();
    for (stream, id, attempt) in buffered {
        g.give_back_unseen(stream, id, attempt);
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, keep::release_untracked(&g)).await;
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, keep::release(&g)).await;
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, cleanup::remove_self(&g)).await;
    done.send_replace(true);
    if !settled {
        settle.await;
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, keep::release_untracked(&g)).await;
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, keep::release(&g)).await;
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, cleanup::remove_self(&g)).await;
    }
}

/// The longest the close sequence can take: its bounded steps.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_secs(7 * CLOSE_FLUSH_TIMEOUT.as_secs());

/// Waits until the closer set `done` (or was aborted), at most `timeout`.
pub(crate) async fn wait(done: &mut watch::Receiver<bool>, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, done.wait_for(|d| *d)).await;
}
