//! Password-protected sentinels (`requirepass` on the sentinels, testkit
//! `SentinelOptions::sentinel_password`): the Streams adapter finds the
//! primary with `sentinel_auth=same` (the nodes' password also opens the
//! sentinels) and with sentinel credentials set in code that differ from
//! the nodes'; without the sentinels' password, or with a wrong one, it
//! fails at once with an error naming the sentinels and saying they
//! refused authentication, never showing a password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_core::{Error, Message, Start, Subscription, Topic, Transport};
use switchyard_redis::RedisConfig;
use switchyard_redis::sentinel::SentinelConfig;
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{SentinelGroup, SentinelOptions};

/// Messages published and consumed per case.
const N: u64 = 50;
/// Deadline for consuming them.
const WAIT: Duration = Duration::from_secs(30);
/// Generous for a loaded machine; a refusal comes well within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const NODE_PW: &str = "node-pw-4711";
const SENTINEL_PW: &str = "sentinel-pw-0815";
const WRONG_PW: &str = "wrong-pw-9999";

fn start(sentinel_password: &str) -> SentinelGroup {
    SentinelGroup::start(
        SentinelOptions::default()
            .password(NODE_PW)
            .sentinel_password(sentinel_password),
    )
    .expect("sentinel group starts")
}

fn namespace(case: &str) -> String {
    format!(
        "sentinel-auth-{case}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

/// `s1,s2,s3` of the group.
fn hosts(group: &SentinelGroup) -> String {
    group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A Sentinel URL with the nodes' password and `extra` parameters.
fn url(group: &SentinelGroup, ns: &str, extra: &str) -> String {
    format!(
        "redis+streams+sentinel://:{NODE_PW}@{}/{}/0?namespace={ns}&block=200ms&connect_timeout={}ms{extra}",
        hosts(group),
        group.master_name(),
        CONNECT_TIMEOUT.as_millis()
    )
}

/// Subscribes a group member, publishes `N` messages and consumes them:
/// exactly `N` distinct messages, each acknowledged once.
async fn publish_and_consume(cfg: StreamsConfig) {
    let transport = RedisStreamsTransport::connect(cfg).await.expect("connects");
    let topic = Topic::new("orders").unwrap();
    let mut sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group("workers")
                .start(Start::Earliest),
        )
        .await
        .expect("subscribe");
    for i in 0..N {
        transport
            .publish(Message::new(topic.clone(), i.to_le_bytes().to_vec()))
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeSet::new();
    let mut acked = 0u64;
    while seen.len() < N as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(Ok(d))) => d,
            other => panic!("after {} of {N}: {other:?}", seen.len()),
        };
        let index = u64::from_le_bytes(d.payload()[..].try_into().expect("8 bytes"));
        assert!(seen.insert(index), "{index} delivered twice");
        d.ack().await.expect("ack");
        acked += 1;
    }
    assert_eq!(seen, (0..N).collect::<BTreeSet<_>>());
    assert_eq!(acked, N);
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await;
    assert!(extra.is_err(), "an extra delivery: {extra:?}");
    sub.close().await.expect("close");
    transport.close().await.expect("close the transport");
}

/// The error of a connect the sentinels refuse: it names every sentinel,
/// says they refused authentication (not that they are unreachable), is
/// not transient, never shows a password, and comes within the connect
/// timeout.
async fn assert_refused(group: &SentinelGroup, cfg: StreamsConfig, passwords: &[&str]) {
    let started = Instant::now();
    let e = RedisStreamsTransport::connect(cfg)
        .await
        .map(drop)
        .expect_err("the sentinels refuse");
    let took = started.elapsed();
    assert!(took < CONNECT_TIMEOUT, "took {took:?}: {e}");
    let text = format!("{e} / {e:?}");
    for addr in group.sentinel_addrs() {
        assert!(text.contains(&addr.to_string()), "{addr} not named: {text}");
    }
    assert!(
        text.contains("refused authentication"),
        "does not say the sentinels refused authentication: {text}"
    );
    assert!(!text.contains("unreachable"), "{text}");
    for pw in passwords {
        assert!(!text.contains(pw), "shows a password: {text}");
    }
    assert!(!e.is_transient(), "a retry cannot fix credentials: {text}");
    assert!(matches!(e, Error::Backend(_)), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_auth_same_uses_the_nodes_password_for_the_sentinels() {
    let group = tokio::task::block_in_place(|| start(NODE_PW));
    let url = url(&group, &namespace("same"), "&sentinel_auth=same");
    let cfg = StreamsConfig::from_url(&url).expect("valid url");
    publish_and_consume(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_credentials_in_code_may_differ_from_the_nodes() {
    let group = tokio::task::block_in_place(|| start(SENTINEL_PW));
    let sentinels = group
        .sentinel_addrs()
        .iter()
        .map(|a| (a.ip().to_string(), a.port()))
        .collect();
    let redis = RedisConfig::new("127.0.0.1", 1)
        .with_credentials(None, Some(NODE_PW.into()))
        .with_namespace(namespace("code"))
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_sentinel(
            SentinelConfig::new(sentinels, group.master_name())
                .with_credentials(None, Some(SENTINEL_PW.into())),
        );
    let cfg = StreamsConfig::new(redis).with_block(Duration::from_millis(200));
    publish_and_consume(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_refusing_the_credentials_are_named_and_not_transient() {
    let group = tokio::task::block_in_place(|| start(SENTINEL_PW));
    let ns = namespace("refused");
    // No sentinel credentials: the sentinels answer NOAUTH.
    let cfg = StreamsConfig::from_url(&url(&group, &ns, "")).unwrap();
    assert_refused(&group, cfg, &[NODE_PW, SENTINEL_PW]).await;
    // The nodes' password is not the sentinels' (WRONGPASS).
    let cfg = StreamsConfig::from_url(&url(&group, &ns, "&sentinel_auth=same")).unwrap();
    assert_refused(&group, cfg, &[NODE_PW, SENTINEL_PW]).await;
    // A wrong sentinel password set in code.
    let mut cfg = StreamsConfig::from_url(&url(&group, &ns, "")).unwrap();
    let sentinel = cfg.redis.sentinel.take().unwrap();
    cfg.redis.sentinel = Some(sentinel.with_credentials(None, Some(WRONG_PW.into())));
    assert_refused(&group, cfg, &[NODE_PW, SENTINEL_PW, WRONG_PW]).await;
    // The right one connects.
    let mut cfg = StreamsConfig::from_url(&url(&group, &ns, "")).unwrap();
    let sentinel = cfg.redis.sentinel.take().unwrap();
    cfg.redis.sentinel = Some(sentinel.with_credentials(None, Some(SENTINEL_PW.into())));
    publish_and_consume(cfg).await;
}
