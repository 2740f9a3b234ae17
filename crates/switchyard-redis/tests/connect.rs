#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Connecting to real redis-server processes started by the testkit.

use std::time::{Duration, Instant};

use switchyard_core::{Error, Health};
use switchyard_redis::{RedisClient, RedisConfig, ping_health};
use switchyard_testkit::{RedisOptions, RedisServer};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn connects_and_pings() {
    let server = RedisServer::start().unwrap();
    let url = format!("redis+streams://127.0.0.1:{}/0", server.port());
    let client = RedisClient::new(RedisConfig::from_url(&url).unwrap()).unwrap();
    let mut shared = client.shared().await.unwrap();
    assert_eq!(
        ping_health(&mut shared, "x", Duration::from_secs(1)).await,
        Health::Ok
    );
    let mut dedicated = client.dedicated(None).await.unwrap();
    assert_eq!(
        ping_health(&mut dedicated, "x", Duration::from_secs(1)).await,
        Health::Ok
    );
    client.pubsub().await.unwrap();
}

#[tokio::test]
async fn closed_port_fails_fast_naming_the_address() {
    let port = free_port();
    let cfg = RedisConfig::from_url(&format!(
        "redis+streams://127.0.0.1:{port}?connect_timeout=2s"
    ))
    .unwrap();
    let client = RedisClient::new(cfg).unwrap();
    let started = Instant::now();
    let err = client.shared().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "could not connect to redis at 127.0.0.1:{port} within 2s"
        )),
        "{text}"
    );
    let err = client.dedicated(None).await.unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
}

#[tokio::test]
async fn wrong_password_is_reported_without_the_password() {
    let server = RedisServer::start_with(RedisOptions::default().password("right-one")).unwrap();
    let url = format!("redis+streams://:hunter2@127.0.0.1:{}", server.port());
    let client = RedisClient::new(RedisConfig::from_url(&url).unwrap()).unwrap();
    let err = client.shared().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(!err.is_transient(), "{text}");

    let url = format!("redis+streams://:right-one@127.0.0.1:{}", server.port());
    let client = RedisClient::new(RedisConfig::from_url(&url).unwrap()).unwrap();
    let mut conn = client.shared().await.unwrap();
    assert_eq!(
        ping_health(&mut conn, "x", Duration::from_secs(1)).await,
        Health::Ok
    );
}

#[test]
fn tls_needs_the_feature() {
    let cfg = RedisConfig::from_url("rediss+streams://127.0.0.1:1").unwrap();
    let r = RedisClient::new(cfg);
    if cfg!(feature = "tls") {
        assert!(r.is_ok());
    } else {
        assert!(matches!(r, Err(Error::FeatureNotEnabled("tls"))));
    }
}
