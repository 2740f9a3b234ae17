//! Start-up retry (`connect_retry`): `connect` keeps trying while Redis is
//! not up yet, fails at once on what a retry cannot fix, and gives up at
//! its deadline saying how often it tried.
//!
//! Reproduction of the gap: `connect` failed once when Redis was not up
//! yet; services wrote their own `connect_with_retry` loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchyard_core::{Message, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{RedisOptions, RedisServer};

fn url(server: &RedisServer, extra: &str) -> String {
    let base = server.url();
    let rest = base.strip_prefix("redis://").unwrap();
    format!("redis+streams://{rest}?connect_timeout=500ms{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_server_that_comes_up_later() {
    let mut server = tokio::task::block_in_place(RedisServer::start).unwrap();
    tokio::task::block_in_place(|| server.stop()).unwrap();
    let cfg = StreamsConfig::from_url(&url(
        &server,
        "&connect_retry=30s&connect_retry_max_delay=100ms",
    ))
    .unwrap();
    let connecting = tokio::spawn(RedisStreamsTransport::connect(cfg));
    // The service starts before Redis does.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !connecting.is_finished(),
        "connect gave up while Redis was down"
    );
    tokio::task::block_in_place(|| server.start_again()).unwrap();
    let bus = tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .expect("connect returns once Redis is up")
        .unwrap()
        .expect("connects");
    bus.publish(Message::new(Topic::new("t").unwrap(), "up"))
        .await
        .unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_connect_retry_it_fails_at_once_and_with_it_gives_up_at_the_deadline() {
    let mut server = tokio::task::block_in_place(RedisServer::start).unwrap();
    tokio::task::block_in_place(|| server.stop()).unwrap();
    let cfg = StreamsConfig::from_url(&url(&server, "")).unwrap();
    let started = Instant::now();
    let e = RedisStreamsTransport::connect(cfg).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(!e.to_string().contains("gave up after"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let cfg = StreamsConfig::from_url(&url(
        &server,
        "&connect_retry=600ms&connect_retry_max_delay=50ms",
    ))
    .unwrap();
    let started = Instant::now();
    let e = RedisStreamsTransport::connect(cfg).await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let text = e.to_string();
    assert!(
        text.contains("gave up after") && text.contains("connect_retry"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_not_retried() {
    let server = tokio::task::block_in_place(|| {
        RedisServer::start_with(RedisOptions::default().password("right-pw"))
    })
    .unwrap();
    let addr = server.addr();
    let cfg = StreamsConfig::from_url(&format!(
        "redis+streams://:wrong-pw@{addr}?connect_retry=30s"
    ))
    .unwrap();
    let started = Instant::now();
    let e = RedisStreamsTransport::connect(cfg).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!e.to_string().contains("wrong-pw"), "{e}");
}

#[test]
fn connect_retry_ranges_are_checked() {
    for (bad, says) in [
        ("connect_retry=61m", "connect_retry must be 0 (off) to 1h"),
        (
            "connect_retry_max_delay=1ms",
            "connect_retry_max_delay must be 10ms to 1m",
        ),
        ("connect_retry=soon", "connect_retry"),
    ] {
        let e = StreamsConfig::from_url(&format!("redis+streams://u:hunter2@h?{bad}")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(says), "{bad}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
