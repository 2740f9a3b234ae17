//! One subscribing connection to one cluster master, holding the partition
//! channels the coordinator assigned to it (`SSUBSCRIBE`), probed for
//! liveness, opened again with jittered backoff.
//!
//! What it tells the coordinator (its [`Report`], then a wake-up):
//! connected or not, the assignment it has confirmed, and that the slot
//! map should be fetched again — after its connection failed, after
//! `SSUBSCRIBE` was answered `MOVED`/`TRYAGAIN`/`CLUSTERDOWN`, and after
//! Redis unsubscribed a channel by itself (`sunsubscribe`: the channel's
//! slot moved to another master). Channels that were not confirmed are
//! tried again after a backoff delay, or at once when the assignment
//! changes.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use switchyard_core::Backoff;
use switchyard_redis::RedisConfig;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::outbox::sleep_or_cancel;
use crate::publisher::is_cluster_retry;
use crate::receiver::{CHUNK, Scratch, handle, handle_or_wait, refuse, wait_for_room};
use crate::shared::Shared;
use crate::stats::{WarnKind, add, limited_warn};
use crate::subconn::{Change, Incoming, SubConn};

/// The channels a node task should hold, and the coordinator's
/// generation of that assignment.
#[derive(Clone, Debug, Default)]
pub(super) struct Assignment {
    pub(super) channels: Arc<BTreeSet<String>>,
    pub(super) generation: u64,
}

/// What a node task tells the coordinator.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) connected: bool,
    /// The generation of the last assignment held in full.
    pub(super) confirmed: u64,
    /// The slot map should be fetched again.
    pub(super) refresh: bool,
}

/// Why a connection was given up.
enum End {
    Cancelled,
    Failed(String),
}

/// The node task; returns when cancelled.
pub(super) async fn run_node(
    sh: Arc<Shared>,
    cfg: RedisConfig,
    mut assign: watch::Receiver<Assignment>,
    report: Arc<Mutex<Report>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(sh.config.reconnect_min, sh.config.reconnect_max);
    let mut opened_before = false;
    loop {
        let attempt = tokio::select! {
            () = cancel.cancelled() => return,
            r = SubConn::open_to(&cfg) => r,
        };
        let end = match attempt {
            Ok(mut conn) => {
                if opened_before {
                    add(&sh.counters.reconnects, 1);
                }
                opened_before = true;
                let mut node = NodeConn {
                    sh: &sh,
                    conn: &mut conn,
                    active: HashSet::new(),
                    targets: Scratch::default(),
                    report: &report,
                    wake: &wake,
                };
                node.serve(&mut assign, &cancel, &mut backoff).await
            }
            Err(e) => End::Failed(e.to_string()),
        };
        {
            let mut r = report.lock();
            r.connected = false;
            r.refresh = true;
        }
        wake.notify_one();
        match end {
            End::Cancelled => return,
            End::Failed(reason) => {
                limited_warn!(sh.warn, WarnKind::Link, node = %cfg.addr(), reason = %reason,
                    "redis pubsub: a subscribing connection to a cluster master failed; reconnecting (local delivery goes on)");
                *sh.last_failure.lock() = Some(format!("{}: {reason}", cfg.addr()));
            }
        }
        if sleep_or_cancel(backoff.next_delay(), &cancel).await {
            return;
        }
    }
}

/// One open connection and what it holds.
struct NodeConn<'a> {
    sh: &'a Shared,
    conn: &'a mut SubConn,
    active: HashSet<String>,
    targets: Scratch,
    report: &'a Mutex<Report>,
    wake: &'a Notify,
}

impl NodeConn<'_> {
    async fn serve(
        &mut self,
        assign: &mut watch::Receiver<Assignment>,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
    ) -> End {
        let cfg = &self.sh.config;
        let mut retry = Some(tokio::time::Instant::now());
        let mut probing = false;
        let mut check_at = tokio::time::Instant::now() + cfg.probe_interval;
        let mut last_rx = tokio::time::Instant::now();
        loop {
            if retry.is_some_and(|t| t <= tokio::time::Instant::now()) {
                retry = None;
                let a = assign.borrow_and_update().clone();
                let clean = tokio::select! {
                    () = cancel.cancelled() => return End::Cancelled,
                    r = self.reconcile(&a) => r,
                };
                match clean {
                    Err(e) => return End::Failed(format!("updating subscriptions: {e}")),
                    Ok(clean) => {
                        {
                            let mut r = self.report.lock();
                            r.connected = true;
                            if clean {
                                r.confirmed = r.confirmed.max(a.generation);
                            } else {
                                r.refresh = true;
                            }
                        }
                        self.wake.notify_one();
                        if clean {
                            backoff.reset();
                        } else {
                            retry = Some(tokio::time::Instant::now() + backoff.next_delay());
                        }
                    }
                }
            }
            let retry_at =
                retry.unwrap_or_else(|| tokio::time::Instant::now() + cfg.probe_interval);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return End::Cancelled,
                changed = assign.changed() => {
                    if changed.is_err() {
                        return End::Cancelled;
                    }
                    retry = Some(tokio::time::Instant::now());
                }
                () = tokio::time::sleep_until(retry_at), if retry.is_some() => {}
                () = tokio::time::sleep_until(check_at) => {
                    let now = tokio::time::Instant::now();
                    if !probing {
                        if let Err(e) = self.conn.start_probe(cfg.probe_timeout).await {
                            return End::Failed(e);
                        }
                        probing = true;
                        check_at = now + cfg.probe_timeout;
                    } else if now.duration_since(check_at) > cfg.probe_timeout / 4 {
                        // The timer fired late (CPU starvation): silence
                        // says nothing about the connection yet.
                        check_at = now + cfg.probe_timeout;
                    } else if now.duration_since(last_rx) >= cfg.probe_timeout {
                        return End::Failed(format!(
                            "no PING reply and no message within {:?} (half-open connection?)",
                            cfg.probe_timeout
                        ));
                    } else {
                        check_at = last_rx + cfg.probe_timeout;
                    }
                }
                incoming = self.conn.next() => {
                    last_rx = tokio::time::Instant::now();
                    match incoming {
                        Incoming::Message { channel, payload } => {
                            if let Some(m) = handle_or_wait(self.sh, channel, payload, &mut self.targets)
                                && wait_for_room(self.sh, &m, &mut self.targets, cancel).await
                            {
                                return End::Cancelled;
                            }
                        }
                        Incoming::ProbeAnswered => {
                            probing = false;
                            check_at = last_rx + cfg.probe_interval;
                        }
                        Incoming::Unsubscribed(channel) => {
                            // The slot moved away: hold it again where the
                            // refreshed map says.
                            let channel = String::from_utf8_lossy(channel).into_owned();
                            tracing::debug!(%channel, "redis pubsub: redis ended a sharded subscription (slot moved)");
                            self.active.remove(&channel);
                            self.report.lock().refresh = true;
                            self.wake.notify_one();
                            retry = Some(tokio::time::Instant::now() + backoff.next_delay());
                        }
                        Incoming::Failed(e) => return End::Failed(e),
                        Incoming::Closed => return End::Failed("redis closed the connection".into()),
                    }
                    self.sh.rx_bursts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Brings the connection in line with `a`; `Ok(false)` when some
    /// channel could not be held here (moved away): try again later.
    async fn reconcile(&mut self, a: &Assignment) -> Result<bool, String> {
        let sh = self.sh;
        let timeout = sh.config.redis.response_timeout;
        let add: Vec<String> = a
            .channels
            .iter()
            .filter(|c| !self.active.contains(*c))
            .cloned()
            .collect();
        let del: Vec<String> = self
            .active
            .iter()
            .filter(|c| !a.channels.contains(*c))
            .cloned()
            .collect();
        let targets = &mut self.targets;
        let mut on_msg = |channel: &[u8], payload: &[u8]| handle(sh, channel, payload, targets);
        let mut clean = true;
        for (change, names) in [(Change::SSubscribe, &add), (Change::SUnsubscribe, &del)] {
            for chunk in names.chunks(CHUNK) {
                let outcome = self
                    .conn
                    .change_sharded(change, chunk, timeout, &mut on_msg)
                    .await
                    .map_err(|e| e.to_string())?;
                for name in chunk {
                    match change {
                        Change::SSubscribe => self.active.insert(name.clone()),
                        _ => self.active.remove(name),
                    };
                }
                for (name, reply) in outcome.refused {
                    if change != Change::SSubscribe {
                        // Not held here any more either way.
                        continue;
                    }
                    self.active.remove(&name);
                    if is_cluster_retry(reply.as_bytes()) {
                        clean = false;
                    } else {
                        refuse(sh, change, std::slice::from_ref(&name), reply);
                    }
                }
                for name in outcome.lost {
                    self.active.remove(&name);
                    clean = false;
                }
            }
        }
        if !del.is_empty() {
            let registry = &sh.registry;
            sh.tracker.lock().retain_topics(|t| registry.has_match(t));
        }
        Ok(clean)
    }
}
