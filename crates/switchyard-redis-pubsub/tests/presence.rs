//! Presence across the backplane: `subscribers(topic)` counts this
//! replica's subscribers (`local`) and the replicas subscribed to the
//! topic (`remote`, `PUBSUB NUMSUB`; on a cluster `SHARDNUMSUB` of its
//! partition channel), exactly, as replicas join and leave.
//!
//! Reproduction of the gap: presence rooms needed "how many replicas
//! hold this room", and there was no public API for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use switchyard_core::{Subscription, Topic, Transport};
use switchyard_testkit::{ClusterGroup, ClusterOptions, RedisServer};

use support::{namespace, pubsub_url, replica, wait_until};

async fn run(url: &str) -> anyhow::Result<()> {
    let (a, b, c) = (
        replica(url).await?,
        replica(url).await?,
        replica(url).await?,
    );
    let room = Topic::new("rooms.42")?;
    assert_eq!(c.subscribers(&room).await?.remote, Some(0));
    let sa = a.subscribe(Subscription::new(room.clone())).await?;
    let sb1 = b.subscribe(Subscription::new(room.clone())).await?;
    let sb2 = b.subscribe(Subscription::new(room.clone())).await?;
    let counts = c.subscribers(&room).await?;
    assert_eq!(
        (counts.local, counts.remote),
        (0, Some(2)),
        "two replicas hold the room"
    );
    let counts = b.subscribers(&room).await?;
    assert_eq!((counts.local, counts.remote), (2, Some(2)));
    sb1.close().await?;
    assert_eq!(b.subscribers(&room).await?.local, 1);
    sb2.close().await?;
    // b's last subscriber left: its connection unsubscribes.
    wait_until(Duration::from_secs(10), "b to leave the room", || async {
        matches!(c.subscribers(&room).await, Ok(n) if n.remote == Some(1))
    })
    .await?;
    sa.close().await?;
    for t in [a, b, c] {
        t.close().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_a_room_are_counted_exactly() -> anyhow::Result<()> {
    let server = tokio::task::block_in_place(RedisServer::start)?;
    run(&pubsub_url(&server.url(), &namespace(), "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_a_room_are_counted_on_a_cluster() -> anyhow::Result<()> {
    let cluster = tokio::task::block_in_place(|| {
        ClusterGroup::start(ClusterOptions::default().replicas_per_master(0))
    })?;
    let url = pubsub_url(
        &format!("redis+pubsub+cluster://{}", cluster.host_list()),
        &namespace(),
        "",
    )
    .replacen("redis+pubsub://", "redis+pubsub+cluster://", 1);
    run(&url).await
}
