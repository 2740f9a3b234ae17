//! The backplane on a Redis Cluster: sharded pub/sub (`SPUBLISH` /
//! `SSUBSCRIBE`) on hash-tagged partition channels (see
//! [`crate::partition`]).
//!
//! - **Publishing** ([`sender`]): one lean connection and one `SPUBLISH`
//!   pipeline per master; `MOVED` refreshes the slot map and sends again
//!   (bounded).
//! - **Subscribing** ([`receiver`], [`node`]): a coordinator maps every
//!   wanted partition channel onto the master that serves its slot and
//!   runs one subscribing connection per such master. A connection that
//!   fails, a `MOVED` reply to `SSUBSCRIBE`, and a `sunsubscribe` Redis
//!   sends by itself (the slot moved: resharding, failover) make the
//!   coordinator fetch the slot map again and move the channels to their
//!   new master, where they are subscribed again. `subscribe` returns once
//!   every partition it needs is confirmed on its master.
//! - **Health** ([`health`]): every subscribing connection up and
//!   confirmed, publishing working, and every master answering with
//!   `cluster_state:ok`.

mod node;
mod receiver;
mod sender;

use switchyard_core::{Error, Health, Result};
use switchyard_redis::{RedisClient, SharedConnection};

use crate::publisher::PublishConn;

pub(crate) use receiver::run_cluster_receiver;
pub(crate) use sender::ClusterSink;

use crate::shared::Shared;

/// Start-up on a cluster: the slot map from a seed (`CLUSTER SLOTS`), then
/// a publishing connection to every master (each answering `PING` after
/// `AUTH`), all within `connect_timeout`.
pub(crate) async fn connect(client: &RedisClient) -> Result<()> {
    let cfg = client.config();
    let seeds = cfg.cluster.as_ref().map(|c| c.addrs()).unwrap_or_default();
    let Some(router) = client.router() else {
        return Ok(());
    };
    let checks = async {
        router.refresh().await?;
        let masters = router.masters().await?;
        futures::future::try_join_all(masters.iter().map(PublishConn::open_to)).await?;
        Ok::<_, Error>(())
    };
    match tokio::time::timeout(cfg.connect_timeout, checks).await {
        Ok(r) => r,
        Err(_) => Err(Error::Connect {
            backend: "redis",
            addr: seeds,
            timeout: cfg.connect_timeout,
            reason: "the cluster's slot map and every master did not answer in time".into(),
        }),
    }
}

/// The seeds of the cluster, for messages.
pub(crate) fn seeds(sh: &Shared) -> String {
    sh.config
        .redis
        .cluster
        .as_ref()
        .map_or_else(|| sh.config.redis.addr(), |c| c.addrs())
}

/// `health()` on a cluster. `conn` is the connection the cluster check
/// uses, opened on first use and dropped after a failure.
pub(crate) async fn health(
    sh: &Shared,
    conn: &tokio::sync::Mutex<Option<SharedConnection>>,
) -> Health {
    let cfg = &sh.config;
    let seeds = seeds(sh);
    if let Some(reason) = sh.denied.health_reason() {
        return Health::Degraded(format!("{reason} (redis cluster at {seeds})"));
    }
    let link = *sh.link.borrow();
    if !link.connected {
        let why = sh
            .last_failure
            .lock()
            .clone()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        return Health::Degraded(format!(
            "redis cluster at {seeds}: a subscribing connection is down{why}: delivering locally only for its partitions until it is back; {} message(s) wait in the outbox",
            sh.outbox.len()
        ));
    }
    if link.synced < sh.registry.version() {
        return Health::Degraded(format!(
            "redis cluster at {seeds} has not confirmed every subscription yet"
        ));
    }
    if !sh.outbox.is_healthy() {
        return Health::Degraded(format!(
            "publishing to redis cluster at {seeds} is failing: delivering locally; {} message(s) wait in the outbox",
            sh.outbox.len()
        ));
    }
    let mut slot = conn.lock().await;
    if slot.is_none() {
        let opened =
            tokio::time::timeout(cfg.probe_timeout, SharedConnection::open(sh.client.clone()))
                .await;
        match opened {
            Ok(Ok(c)) => *slot = Some(c),
            Ok(Err(e)) => {
                return Health::Degraded(format!(
                    "could not open a connection to check redis cluster at {seeds}: {e}"
                ));
            }
            Err(_) => {
                return Health::Degraded(format!(
                    "could not open a connection to check redis cluster at {seeds} within {:?}",
                    cfg.probe_timeout
                ));
            }
        }
    }
    let Some(c) = slot.as_ref() else {
        return Health::Ok;
    };
    let health = switchyard_redis::cluster_health(c, cfg.probe_timeout).await;
    if !matches!(health, Health::Ok) {
        *slot = None;
    }
    match health {
        Health::Down(why) => Health::Degraded(why),
        other => other,
    }
}
