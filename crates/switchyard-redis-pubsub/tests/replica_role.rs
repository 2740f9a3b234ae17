//! Pointed at a replica (no Sentinel).
//!
//! Reproduction of the defect: start two redis-servers, make the second a
//! replica (`REPLICAOF 127.0.0.1 <port of the first>`), connect the
//! backplane with `redis+pubsub://127.0.0.1:<replica port>`: `health()`
//! said `Ok`, although the replica's PUBLISHes reach only the replica's own
//! subscribers and never those of the primary.

mod support;

use switchyard_core::{Health, Transport};
use switchyard_testkit::RedisServer;

use support::{namespace, pubsub_url, replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_degraded_with_the_reason() -> anyhow::Result<()> {
    support::init_tracing();
    let primary = RedisServer::start()?;
    let secondary = RedisServer::start()?;
    secondary.cmd(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()])?;
    let ns = namespace();
    let on_replica = replica(&pubsub_url(&secondary.url(), &ns, "")).await?;
    match on_replica.health().await {
        Health::Degraded(why) => {
            anyhow::ensure!(why.contains("connected to a replica (read-only)"), "{why}");
        }
        other => anyhow::bail!("health on a replica: {other:?}"),
    }
    on_replica.close().await?;
    let on_primary = replica(&pubsub_url(&primary.url(), &ns, "")).await?;
    anyhow::ensure!(on_primary.health().await == Health::Ok);
    on_primary.close().await?;
    Ok(())
}
