//! The coordinator of the subscribing side on a cluster: which master
//! holds which partition channel, one node task ([`super::node`]) per
//! master that holds any.
//!
//! It assigns every wanted channel (from the registry) to the master of its
//! slot in the router's slot map, starts a node task for a master that
//! gets channels, stops the task of a master that has none left, and sends
//! the others their new sets. It fetches the map again when a node task
//! asks (its connection failed, `SSUBSCRIBE` was answered `MOVED`, Redis
//! unsubscribed a channel by itself), every [`REFRESH_EVERY`] and while a
//! channel has no master; refreshes are spaced by the reconnect backoff.
//!
//! The link state it publishes: `connected` when every node task is
//! connected and every channel has a master; `synced` is the registry
//! version of the current assignment once every node task confirmed it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use switchyard_core::Backoff;
use switchyard_redis::cluster::master_of;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::node::{Assignment, Report, run_node};
use crate::shared::Shared;
use crate::stats::{WarnKind, add, limited_warn};

/// How often the slot map is fetched again when nothing asked for it.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A running node task.
struct Node {
    assign: watch::Sender<Assignment>,
    report: Arc<Mutex<Report>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The coordinator; returns when cancelled (its node tasks stop with it).
pub(crate) async fn run_cluster_receiver(sh: Arc<Shared>, cancel: CancellationToken) {
    let Some(router) = sh.client.router().cloned() else {
        return;
    };
    let cfg = &sh.config;
    // The node tasks end with this loop, even if it panics.
    let cancel = cancel.child_token();
    let _stop_nodes = cancel.clone().drop_guard();
    let wake = Arc::new(Notify::new());
    let mut nodes: HashMap<(String, u16), Node> = HashMap::new();
    let mut generation = 0u64;
    let mut assigned_version = 0u64;
    let mut need_assign = true;
    let mut need_refresh = false;
    let mut unrouted = false;
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut refresh_at = tokio::time::Instant::now();
    let mut periodic = tokio::time::interval(REFRESH_EVERY);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = |nodes: &mut HashMap<(String, u16), Node>| {
        for (_, n) in nodes.drain() {
            n.cancel.cancel();
        }
    };
    loop {
        let before = nodes.len();
        nodes.retain(|_, n| !n.task.is_finished());
        if nodes.len() != before {
            // A node task panicked: start it again.
            add(&sh.counters.loop_restarts, (before - nodes.len()) as u64);
            need_assign = true;
            generation += 1;
        }
        for n in nodes.values() {
            if std::mem::take(&mut n.report.lock().refresh) {
                need_refresh = true;
            }
        }
        let now = tokio::time::Instant::now();
        if need_refresh && now >= refresh_at {
            need_refresh = false;
            refresh_at = now + backoff.next_delay();
            let fetched = tokio::select! {
                () = cancel.cancelled() => {
                    stop(&mut nodes);
                    return;
                }
                r = tokio::time::timeout(cfg.redis.response_timeout, router.refresh()) => r,
            };
            match fetched {
                Ok(Ok(())) => need_assign = true,
                Ok(Err(e)) => {
                    need_refresh = true;
                    *sh.last_failure.lock() = Some(e.to_string());
                    limited_warn!(sh.warn, WarnKind::Link, error = %e,
                        "redis pubsub: cannot fetch the cluster's slot map; retrying");
                }
                Err(_) => {
                    need_refresh = true;
                    *sh.last_failure.lock() = Some(format!(
                        "no CLUSTER SLOTS reply within {:?}",
                        cfg.redis.response_timeout
                    ));
                }
            }
        }
        if need_assign {
            need_assign = false;
            let desired = sh.registry.desired();
            let map = router.ranges();
            let mut per: HashMap<(String, u16), BTreeSet<String>> = HashMap::new();
            unrouted = false;
            for ch in desired.channels {
                match master_of(&map, switchyard_redis::key_slot(ch.as_bytes())) {
                    Some(node) => {
                        per.entry(node).or_default().insert(ch);
                    }
                    None => unrouted = true,
                }
            }
            if unrouted {
                need_refresh = true;
            }
            let unchanged = assigned_version == desired.version
                && per.len() == nodes.len()
                && per.iter().all(|(node, set)| {
                    nodes
                        .get(node)
                        .is_some_and(|n| *n.assign.borrow().channels == *set)
                });
            if !unchanged || generation == 0 {
                generation += 1;
                assigned_version = desired.version;
                nodes.retain(|node, n| {
                    let keep = per.contains_key(node);
                    if !keep {
                        n.cancel.cancel();
                    }
                    keep
                });
                for (node, set) in per {
                    let a = Assignment {
                        channels: Arc::new(set),
                        generation,
                    };
                    match nodes.get(&node) {
                        Some(n) => {
                            n.assign.send_replace(a);
                        }
                        None => {
                            let (assign, rx) = watch::channel(a);
                            let report = Arc::new(Mutex::new(Report::default()));
                            let child = cancel.child_token();
                            let node_cfg = router.node_config(&node.0, node.1);
                            let task = tokio::spawn(run_node(
                                sh.clone(),
                                node_cfg,
                                rx,
                                report.clone(),
                                wake.clone(),
                                child.clone(),
                            ));
                            nodes.insert(
                                node,
                                Node {
                                    assign,
                                    report,
                                    cancel: child,
                                    task,
                                },
                            );
                        }
                    }
                }
            }
        }
        let connected = !unrouted && nodes.values().all(|n| n.report.lock().connected);
        let synced = !unrouted
            && nodes
                .values()
                .all(|n| n.report.lock().confirmed >= generation);
        sh.link.send_if_modified(|s| {
            let before = *s;
            s.connected = connected;
            if synced {
                s.synced = s.synced.max(assigned_version);
            }
            *s != before
        });
        if connected && synced && !need_refresh {
            backoff.reset();
        }
        let retry = if need_refresh {
            refresh_at
        } else {
            tokio::time::Instant::now() + REFRESH_EVERY
        };
        tokio::select! {
            () = cancel.cancelled() => {
                stop(&mut nodes);
                return;
            }
            () = sh.registry.changed.notified() => need_assign = true,
            () = wake.notified() => {}
            _ = periodic.tick() => need_refresh = true,
            () = tokio::time::sleep_until(retry), if need_refresh => {}
        }
    }
}
