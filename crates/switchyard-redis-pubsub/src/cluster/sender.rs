//! Publishing on a Redis Cluster: the outbox's batches split by the master
//! that serves each partition channel's slot, one lean connection and one
//! `SPUBLISH` pipeline per master (the same hand-written encoding as
//! `PUBLISH` on one server, over TCP or TLS).
//!
//! A command answered `MOVED` (the slot moved: resharding or failover),
//! `ASK`, `TRYAGAIN` or `CLUSTERDOWN` was not executed: it is sent again
//! after the slot map is refreshed, after a pause of `10 ms × hops`, at
//! most [`MAX_HOPS`] times within one attempt; then the attempt fails as
//! transient and the outbox retries while the messages are younger than
//! `outbox_ttl`. A master that cannot be reached fails the attempt for its
//! messages only: what reached the other masters is not sent twice.

use std::collections::HashMap;
use std::time::Duration;

use switchyard_redis::cluster::master_of;

use crate::outbox::OutboxEntry;
use crate::publisher::{Answered, Failed, PublishConn};
use crate::shared::Shared;

/// Most times one batch is sent again after redirections, per attempt.
pub(crate) const MAX_HOPS: u32 = 8;

/// The sender's connections to the masters.
#[derive(Default)]
pub(crate) struct ClusterSink {
    conns: HashMap<(String, u16), PublishConn>,
}

impl ClusterSink {
    /// Publishes `batch` on the masters; afterwards `batch` holds what is
    /// to be sent again.
    pub(crate) async fn send(
        &mut self,
        sh: &Shared,
        batch: &mut Vec<OutboxEntry>,
    ) -> (Answered, Option<Failed>) {
        let mut total = Answered::default();
        let Some(router) = sh.client.router().cloned() else {
            return (
                total,
                Some(Failed {
                    transient: false,
                    reason: "no cluster settings".into(),
                    connect: false,
                }),
            );
        };
        let timeout = sh.config.redis.response_timeout;
        for hop in 0..MAX_HOPS {
            if hop > 0 || router.ranges().is_empty() {
                if hop > 0 {
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(hop))).await;
                }
                if let Err(e) = self.refresh(&router).await {
                    return (
                        total,
                        Some(Failed::connect(format!(
                            "cannot fetch the cluster's slot map: {e}"
                        ))),
                    );
                }
            }
            let map = router.ranges();
            let mut per_node: HashMap<(String, u16), Vec<usize>> = HashMap::new();
            for (i, e) in batch.iter().enumerate() {
                let slot = switchyard_redis::key_slot(e.channel.as_bytes());
                if let Some(node) = master_of(&map, slot) {
                    per_node.entry(node).or_default().push(i);
                }
            }
            let mut failure = None;
            let mut jobs = Vec::with_capacity(per_node.len());
            for (node, idx) in per_node {
                let conn = match self.conns.remove(&node) {
                    Some(c) => c,
                    None => {
                        let cfg = router.node_config(&node.0, node.1);
                        match PublishConn::open_to(&cfg).await {
                            Ok(c) => c,
                            Err(e) => {
                                failure = Some(Failed::connect(format!(
                                    "cannot reach cluster master {}: {e}",
                                    cfg.addr()
                                )));
                                continue;
                            }
                        }
                    }
                };
                jobs.push((node, conn, idx));
            }
            let entries: &[OutboxEntry] = batch;
            let results = futures::future::join_all(jobs.iter_mut().map(|(_, conn, idx)| {
                let refs: Vec<&OutboxEntry> = idx.iter().filter_map(|&i| entries.get(i)).collect();
                async move { conn.spublish(&refs, timeout).await }
            }))
            .await;
            let mut done = vec![false; batch.len()];
            for ((node, conn, idx), result) in jobs.into_iter().zip(results) {
                match result {
                    Ok(a) => {
                        total.delivered += a.delivered;
                        total.refused += a.refused;
                        if total.first_refusal.is_none() {
                            total.first_refusal = a.first_refusal;
                        }
                        for &i in &idx {
                            if let Some(d) = done.get_mut(i) {
                                *d = true;
                            }
                        }
                        for r in a.redirected {
                            if let Some(d) = idx.get(r).and_then(|&i| done.get_mut(i)) {
                                *d = false;
                            }
                        }
                        self.conns.insert(node, conn);
                    }
                    Err(f) => failure = Some(f),
                }
            }
            let mut i = 0;
            batch.retain(|_| {
                let keep = !done.get(i).copied().unwrap_or(false);
                i += 1;
                keep
            });
            if batch.is_empty() {
                return (total, None);
            }
            if let Some(f) = failure {
                // A master is gone or failing: the map may name its successor.
                let _ = self.refresh(&router).await;
                return (total, Some(f));
            }
        }
        (
            total,
            Some(Failed::transient(format!(
                "the cluster redirected SPUBLISH {MAX_HOPS} times (a slot migration or failover in progress)"
            ))),
        )
    }

    /// Fetches the slot map again and forgets connections to nodes that
    /// are no masters any more.
    async fn refresh(
        &mut self,
        router: &switchyard_redis::cluster::Router,
    ) -> switchyard_core::Result<()> {
        router.refresh().await?;
        let map = router.ranges();
        self.conns
            .retain(|node, _| map.iter().any(|r| &r.master == node));
        Ok(())
    }

    /// Refreshes the map and PINGs every master (connecting as needed);
    /// true when every one answered.
    pub(crate) async fn probe(&mut self, sh: &Shared) -> bool {
        let Some(router) = sh.client.router().cloned() else {
            return false;
        };
        if self.refresh(&router).await.is_err() {
            return false;
        }
        let timeout = sh.config.redis.response_timeout;
        let mut nodes: Vec<(String, u16)> = Vec::new();
        for r in router.ranges().iter() {
            if !nodes.contains(&r.master) {
                nodes.push(r.master.clone());
            }
        }
        for node in nodes {
            let conn = match self.conns.remove(&node) {
                Some(c) => c,
                None => match PublishConn::open_to(&router.node_config(&node.0, node.1)).await {
                    Ok(c) => c,
                    Err(_) => return false,
                },
            };
            let mut conn = conn;
            if !conn.ping(timeout).await {
                return false;
            }
            self.conns.insert(node, conn);
        }
        true
    }
}
