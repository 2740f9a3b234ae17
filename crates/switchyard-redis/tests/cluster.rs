//! Reaching a Redis Cluster: the cluster URL, the shared connection routing
//! by slot (and following a migrated slot), the slot map of the router
//! matching the cluster's own, and dedicated connections on the right
//! master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_redis::{RedisClient, RedisConfig, SharedConnection, key_slot, redis};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

fn url(cluster: &ClusterGroup) -> String {
    format!(
        "redis+streams+cluster://{}?connect_timeout=2s",
        cluster.host_list()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_connection_routes_by_slot_and_follows_a_migration() {
    let cluster = tokio::task::block_in_place(|| ClusterGroup::start(ClusterOptions::default()))
        .expect("cluster");
    let cfg = RedisConfig::from_url(&url(&cluster)).unwrap();
    let client = RedisClient::new(cfg).unwrap();
    assert!(client.is_cluster());
    let mut shared = SharedConnection::open(client.clone()).await.unwrap();
    // 100 keys spread over the three masters.
    for i in 0..100 {
        let key = format!("{{k{i}}}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut shared)
            .await
            .unwrap();
    }
    let mut per_master = std::collections::HashMap::new();
    for i in 0..100 {
        let key = format!("{{k{i}}}");
        let slot = key_slot(key.as_bytes());
        assert_eq!(
            slot,
            tokio::task::block_in_place(|| cluster.slot_of(&key)).unwrap()
        );
        let master = tokio::task::block_in_place(|| cluster.master_of(slot)).unwrap();
        *per_master.entry(master.addr).or_insert(0) += 1;
        // The router names the same master, and a dedicated connection
        // there reads the key.
        let node = client.config_for_key(key.as_bytes()).await.unwrap();
        assert_eq!(node.addr(), master.addr.to_string());
        let mut conn = client
            .dedicated_for(key.as_bytes(), Some(Duration::from_secs(2)))
            .await
            .unwrap();
        let v: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, i);
    }
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert_eq!(per_master.values().sum::<i32>(), 100);

    // Move the slot of {k0} to another master: the shared connection
    // follows MOVED, the router sees the change after a refresh.
    let slot = key_slot(b"{k0}");
    let from = tokio::task::block_in_place(|| cluster.master_of(slot))
        .unwrap()
        .addr;
    let to = tokio::task::block_in_place(|| cluster.topology())
        .unwrap()
        .into_iter()
        .find(|n| n.master && n.addr != from)
        .unwrap()
        .addr;
    let router = client.router().unwrap().clone();
    let before = router.epoch();
    let moved = tokio::task::block_in_place(|| cluster.migrate_slot(slot, to)).unwrap();
    assert_eq!(moved, 1);
    let v: i64 = redis::cmd("GET")
        .arg("{k0}")
        .query_async(&mut shared)
        .await
        .unwrap();
    assert_eq!(v, 0);
    router.refresh().await.unwrap();
    assert!(router.epoch() > before);
    assert_eq!(
        client.config_for_key(b"{k0}").await.unwrap().addr(),
        to.to_string()
    );
}

#[tokio::test]
async fn unreachable_seeds_are_a_clear_connect_error() {
    // Two ports nothing listens on (bound, then released).
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let cfg = RedisConfig::from_url(&format!(
        "redis+streams+cluster://u:hunter2@127.0.0.1:{},127.0.0.1:{}?connect_timeout=500ms",
        ports[0], ports[1]
    ))
    .unwrap();
    let client = RedisClient::new(cfg).unwrap();
    let e = SharedConnection::open(client.clone()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = client.router().unwrap().refresh().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("CLUSTER SLOTS"), "{text}");
    assert!(text.contains(&ports[1].to_string()), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
