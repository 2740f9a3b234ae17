//! Finding the primary through Sentinel: the address the sentinels name,
//! clear errors for a wrong master name and for sentinels that do not
//! answer, and a client that notices a failover by itself.
//!
//! Reproduction of the defect: there was no way to reach a Sentinel-managed
//! primary; `redis+streams+sentinel://…` was refused as an unknown scheme.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchyard_core::Error;
use switchyard_redis::{RedisClient, RedisConfig, redis, sentinel};
use switchyard_testkit::{SentinelGroup, SentinelOptions};

fn url(group: &SentinelGroup, master: &str) -> String {
    let sentinels: Vec<String> = group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "redis+streams+sentinel://{}/{master}?connect_timeout=1s&sentinel_poll=50ms",
        sentinels.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinels_name_the_primary_and_a_client_follows_a_failover() {
    let group = tokio::task::block_in_place(|| SentinelGroup::start(SentinelOptions::default()))
        .expect("sentinel group");
    let cfg = RedisConfig::from_url(&url(&group, group.master_name())).unwrap();
    let primary = group.current_primary_addr().unwrap();
    let resolved = sentinel::resolve(&cfg).await.unwrap();
    assert_eq!(resolved.addr(), primary.to_string());

    let client = RedisClient::new(cfg.clone()).unwrap();
    let mut conn = client
        .dedicated(Some(Duration::from_secs(2)))
        .await
        .unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
    assert!(matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"));
    assert_eq!(client.primary_epoch(), 0);

    tokio::task::block_in_place(|| {
        group.failover().unwrap();
        group
            .wait_for_new_primary(primary, Duration::from_secs(60))
            .unwrap()
    });
    // The client's poll notices the new primary by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.primary_epoch() == 0 {
        assert!(
            Instant::now() < deadline,
            "the client never saw the failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.primary_epoch(), 1);
    let now = sentinel::resolve(&cfg).await.unwrap();
    assert_ne!(now.addr(), primary.to_string());
    assert_eq!(
        now.addr(),
        group.current_primary_addr().unwrap().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_name_is_not_transient_and_says_so() {
    let group = tokio::task::block_in_place(|| SentinelGroup::start(SentinelOptions::default()))
        .expect("sentinel group");
    let cfg = RedisConfig::from_url(&url(&group, "no-such-master")).unwrap();
    let e = sentinel::resolve(&cfg).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("no sentinel monitors a master named \"no-such-master\""),
        "{text}"
    );
    assert!(text.contains("check the master name"), "{text}");
    let e = RedisClient::new(cfg)
        .unwrap()
        .dedicated(None)
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
}

#[tokio::test]
async fn sentinels_that_do_not_answer_are_a_transient_connect_error() {
    // Two ports nothing listens on.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (a, b) = (free(), free());
    let cfg = RedisConfig::from_url(&format!(
        "redis+streams+sentinel://127.0.0.1:{a},127.0.0.1:{b}/m?connect_timeout=500ms"
    ))
    .unwrap();
    let started = Instant::now();
    let e = sentinel::resolve(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{a}")) && text.contains(&format!("127.0.0.1:{b}")),
        "{text}"
    );
    let e = switchyard_redis::lean::connect(&cfg).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}
