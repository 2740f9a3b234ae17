//! Publishing on a Redis Cluster: the same XADD encoding and lean
//! connections as on one server, one connection per master.
//!
//! Each batch the writer takes is split by the master that serves each
//! stream's slot in the router's map (fetched first when empty); every
//! master gets one pipeline. A `publish_batch` whose topics live on
//! several masters is answered once every part is ([`Join`]), in the
//! caller's order. An XADD answered `MOVED` (the slot moved: resharding or
//! failover) or `ASK` (the slot is being migrated) was not executed: it
//! comes back to the writer ([`Redirect`]), which refreshes the slot map
//! once for every redirect waiting and sends it again — after a pause of
//! `10 ms × hops` for `ASK`, at most [`MAX_HOPS`] times, then the caller
//! gets a transient error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use switchyard_core::{Error, Message, MessageId, Result};
use switchyard_redis::cluster::Router;
use tokio::sync::{mpsc, oneshot};

use super::lean::LeanConn;
use super::resp;
use super::{Pending, Waiter, WriterTask};
use crate::retention::trim;

/// Most times one message is sent again after `MOVED`/`ASK`.
pub(super) const MAX_HOPS: u32 = 8;

/// An XADD answered `MOVED` or `ASK`, with who waits for it.
pub(super) struct Redirect {
    pub(super) message: Message,
    pub(super) waiter: Waiter,
    pub(super) hops: u32,
}

/// Whether an error reply is a cluster redirection.
pub(super) fn is_redirect(text: &str) -> bool {
    text.starts_with("MOVED ") || text.starts_with("ASK ")
}

/// The parts of one `publish_batch` split over masters: the caller hears
/// back once every part is answered.
pub(super) struct Join {
    reply: Mutex<Option<oneshot::Sender<Result<Vec<MessageId>>>>>,
    results: Mutex<Vec<Option<Result<MessageId>>>>,
    left: AtomicUsize,
}

impl Join {
    fn new(reply: oneshot::Sender<Result<Vec<MessageId>>>, n: usize) -> Arc<Join> {
        Arc::new(Join {
            reply: Mutex::new(Some(reply)),
            results: Mutex::new((0..n).map(|_| None).collect()),
            left: AtomicUsize::new(n),
        })
    }

    /// The result of part `index`; the last one answers the caller (the
    /// first error, or every id in order).
    pub(super) fn set(&self, index: usize, result: Result<MessageId>) {
        {
            let mut results = self.results.lock();
            match results.get_mut(index) {
                Some(slot @ None) => *slot = Some(result),
                _ => return,
            }
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let results = std::mem::take(&mut *self.results.lock());
        let answer = results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Closed)))
            .collect::<Result<Vec<_>>>();
        if let Some(reply) = self.reply.lock().take() {
            let _ = reply.send(answer);
        }
    }
}

/// The cluster side of the writer.
pub(super) struct State {
    router: Arc<Router>,
    conns: HashMap<(String, u16), LeanConn>,
    redirects: mpsc::Sender<Redirect>,
    pub(super) incoming: mpsc::Receiver<Redirect>,
}

impl State {
    /// With room for `queue` redirects waiting at once.
    pub(super) fn new(router: Arc<Router>, queue: usize) -> State {
        let (redirects, incoming) = mpsc::channel(queue.max(1));
        State {
            router,
            conns: HashMap::new(),
            redirects,
            incoming,
        }
    }

    /// Waits until every pipeline in flight was answered, then closes.
    pub(super) async fn finish(&mut self) {
        for (_, conn) in self.conns.drain() {
            conn.finish().await;
        }
    }
}

/// Splits a `publish_batch` into one waiter per message.
pub(super) fn parts(
    messages: Vec<Message>,
    reply: oneshot::Sender<Result<Vec<MessageId>>>,
    out: &mut Vec<(Message, Waiter, u32)>,
) {
    let join = Join::new(reply, messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        out.push((m, Waiter::Part(join.clone(), i), 0));
    }
}

impl WriterTask {
    /// Publishes `items` (each with the times it was redirected so far) on
    /// the masters that serve their streams.
    pub(super) async fn publish_cluster(
        &mut self,
        items: Vec<(Message, Waiter, u32)>,
        now_ms: u64,
    ) {
        let Some(state) = self.cluster.as_mut() else {
            return;
        };
        if state.router.ranges().is_empty()
            && let Err(e) = state.router.refresh().await
        {
            for (_, w, _) in items {
                w.complete(Err(e.clone()));
            }
            return;
        }
        let map = state.router.ranges();
        let mut per_node: HashMap<(String, u16), (Vec<u8>, Pending)> = HashMap::new();
        for (m, w, hops) in items {
            let (key, retention) = self.keys.get(&m.topic);
            let slot = switchyard_redis::key_slot(key.as_bytes());
            let Some(node) = switchyard_redis::cluster::master_of(&map, slot) else {
                w.complete(Err(Error::Transient(format!(
                    "redis XADD: no master serves slot {slot} of {key} (CLUSTERDOWN?); publish again"
                ))));
                continue;
            };
            let (buf, pending) = per_node.entry(node).or_insert_with(|| {
                let mut p = Pending::new(self.ctx.clone(), 0);
                p.redirect = Some(state.redirects.clone());
                (Vec::new(), p)
            });
            resp::put_xadd(buf, key, trim(&retention, now_ms), &m);
            pending.push(w, 1);
            pending.msgs.push_back((m, hops));
        }
        for ((host, port), (mut buf, mut pending)) in per_node {
            if self.wait_replicas > 0 {
                let replicas = self.wait_replicas.to_string();
                let ms = self.wait_timeout.as_millis().max(1).to_string();
                switchyard_redis::lean::put_command(
                    &mut buf,
                    &[b"WAIT", replicas.as_bytes(), ms.as_bytes()],
                );
                pending.wait_for(self.wait_replicas, self.wait_timeout);
            }
            self.send_node(host, port, &buf, pending).await;
        }
    }

    /// Sends one pipeline to the master at `host:port`, opening its
    /// connection first if needed (a failed connection makes the slot map
    /// be fetched again: the node may be gone).
    async fn send_node(&mut self, host: String, port: u16, bytes: &[u8], pending: Pending) {
        let in_flight = self.in_flight;
        let Some(state) = self.cluster.as_mut() else {
            return;
        };
        let node = (host, port);
        if state.conns.get(&node).is_some_and(LeanConn::is_dead) {
            state.conns.remove(&node);
            let _ = state.router.refresh().await;
        }
        if !state.conns.contains_key(&node) {
            let cfg = state.router.node_config(&node.0, node.1);
            match LeanConn::connect(&cfg, in_flight).await {
                Ok(c) => {
                    if self.ever_connected {
                        self.ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    self.ever_connected = true;
                    state.conns.insert(node.clone(), c);
                }
                Err(e) => {
                    let _ = state.router.refresh().await;
                    pending.fail(e);
                    return;
                }
            }
        }
        if let Some(conn) = state.conns.get_mut(&node) {
            conn.send(bytes, pending).await;
        }
    }

    /// Sends `first` and every other redirect waiting again, after one
    /// refresh of the slot map.
    pub(super) async fn resend(&mut self, first: Redirect, now_ms: u64) {
        let Some(state) = self.cluster.as_mut() else {
            return;
        };
        let mut all = vec![first];
        while let Ok(r) = state.incoming.try_recv() {
            all.push(r);
        }
        let hops = all.iter().map(|r| r.hops).max().unwrap_or(1);
        // ASK: the slot is being migrated; the map changes once it is done.
        tokio::time::sleep(Duration::from_millis(10 * u64::from(hops))).await;
        if let Err(e) = state.router.refresh().await {
            tracing::debug!(error = %e, "redis-streams: refreshing the slot map after MOVED/ASK failed");
        }
        let mut items = Vec::with_capacity(all.len());
        for r in all {
            if r.hops >= MAX_HOPS {
                self.ctx
                    .stats
                    .publish_errors
                    .fetch_add(1, Ordering::Relaxed);
                r.waiter.complete(Err(Error::Transient(format!(
                    "redis XADD: the cluster redirected it {MAX_HOPS} times (a slot migration or failover in progress); publish again"
                ))));
                continue;
            }
            items.push((r.message, r.waiter, r.hops));
        }
        self.publish_cluster(items, now_ms).await;
    }
}
