//! TLS sentinels: a primary, a replica and three sentinels all TLS-only on
//! one CA, requiring a client certificate (testkit `SentinelOptions::tls`).
//! A `rediss+streams+sentinel://…?tls_ca=…&tls_cert=…&tls_key=…` transport
//! publishes 100 messages that a group member consumes, the primary moves
//! by `SENTINEL FAILOVER`, 100 more are published and consumed: exactly 200
//! acknowledged deliveries, none lost, none twice. A client trusting
//! another CA gets a TLS error at once, not a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{Error, Health, Message, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{SentinelGroup, SentinelOptions};

/// Messages per phase (before and after the failover).
const N: u64 = 100;
/// Deadline of each wait.
const WAIT: Duration = Duration::from_secs(60);
/// Generous: on a loaded machine a TLS handshake with a starved process
/// takes a while. A refused certificate fails well within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn start() -> SentinelGroup {
    SentinelGroup::start(SentinelOptions::default().master_name("sy-tls").tls(true))
        .expect("sentinel group starts")
}

fn namespace() -> String {
    format!(
        "sentinel-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

/// The Sentinel URL of the group over TLS, trusting `ca`.
fn url(group: &SentinelGroup, ns: &str, ca: &std::path::Path) -> String {
    let files = group.tls_files().expect("a TLS group");
    let sentinels: Vec<String> = group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "rediss+streams+sentinel://{}/{}/0?namespace={ns}&block=200ms&connect_timeout={}ms&sentinel_poll=50ms&tls_ca={}&tls_cert={}&tls_key={}",
        sentinels.join(","),
        group.master_name(),
        CONNECT_TIMEOUT.as_millis(),
        ca.display(),
        files.client.cert.display(),
        files.client.key.display()
    )
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after
/// [`WAIT`].
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `range`, each message retried until acknowledged (a publish
/// failing with an error was not written: the failover is over before
/// this runs, so no attempt is ambiguous in practice; XLEN checks it).
async fn publish(t: &RedisStreamsTransport, topic: &Topic, range: std::ops::Range<u64>) {
    let deadline = Instant::now() + WAIT;
    for i in range {
        loop {
            let m = Message::new(topic.clone(), i.to_le_bytes().to_vec());
            match t.publish(m).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "publish {i}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// What the group member saw: every delivery's index, and the acks that
/// succeeded.
#[derive(Default)]
struct Seen {
    deliveries: Vec<u64>,
    acked: u64,
}

fn role(group: &SentinelGroup, addr: std::net::SocketAddr) -> Option<String> {
    let node = group.nodes().iter().find(|n| n.addr() == addr)?;
    let reply = node.cmd(&["ROLE"]).ok()?;
    reply.as_array()?.first()?.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinels_carry_a_failover_without_losing_or_repeating() {
    let group = tokio::task::block_in_place(start);
    let ns = namespace();
    let ca = group.tls_files().unwrap().ca_cert;
    let cfg = StreamsConfig::from_url(&url(&group, &ns, &ca)).expect("valid url");
    assert!(cfg.redis.tls && cfg.redis.sentinel.is_some());
    let transport = Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connects"));
    let topic = Topic::new("orders").unwrap();
    let mut sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group("workers")
                .start(Start::Earliest)
                .ack_timeout(Duration::from_secs(30)),
        )
        .await
        .expect("subscribe");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let member = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let d = tokio::select! {
                    _ = stopped.changed() => break,
                    d = sub.recv() => d,
                };
                match d {
                    Some(Ok(d)) => {
                        let index = u64::from_le_bytes(d.payload()[..].try_into().unwrap());
                        seen.lock().deliveries.push(index);
                        if d.ack().await.is_ok() {
                            seen.lock().acked += 1;
                        }
                    }
                    // Errors while the primary moves; the member goes on.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            sub.close().await.expect("close the member");
        })
    };

    publish(&transport, &topic, 0..N).await;
    wait_for("the first 100 acknowledged", || seen.lock().acked >= N).await;

    // The entries, the group's state and the acks are on the replica
    // before it is promoted: WAIT on the connection that wrote last.
    let old = group.current_primary_addr().unwrap();
    tokio::task::block_in_place(|| {
        let mut conn = group.primary().unwrap().connect().unwrap();
        conn.command(&["SET", "sync-marker", "1"]).unwrap();
        let replicas = conn.command(&["WAIT", "1", "10000"]).unwrap();
        assert_eq!(replicas.as_int(), Some(1), "{replicas:?}");
    });
    let new = tokio::task::block_in_place(|| group.failover_and_wait(WAIT))
        .unwrap_or_else(|e| panic!("{e}\n{}", group.log_tails()));
    assert_ne!(old, new);
    // Until the sentinels demote it, the old primary still takes writes
    // (lost when it resyncs): publish only once it is a replica, and the
    // transport is healthy again.
    let demoted = || tokio::task::block_in_place(|| role(&group, old)).as_deref() == Some("slave");
    wait_for("the old primary demoted", demoted).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let health = transport.health().await;
        if health == Health::Ok {
            break;
        }
        assert!(Instant::now() < deadline, "not healthy: {health:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    publish(&transport, &topic, N..2 * N).await;
    wait_for("all 200 acknowledged", || seen.lock().acked >= 2 * N).await;
    stop.send(true).unwrap();
    member.await.unwrap();

    let (deliveries, acked) = {
        let seen = seen.lock();
        (seen.deliveries.clone(), seen.acked)
    };
    let distinct: BTreeSet<u64> = deliveries.iter().copied().collect();
    assert_eq!(distinct, (0..2 * N).collect::<BTreeSet<_>>(), "none lost");
    assert_eq!(deliveries.len() as u64, 2 * N, "none delivered twice");
    assert_eq!(acked, 2 * N);
    // On the new primary: 200 entries (no publish written twice), none
    // pending.
    let key = keys::stream_key(&ns, &topic);
    let (xlen, pending) = tokio::task::block_in_place(|| {
        let primary = group.primary().unwrap();
        assert_eq!(primary.addr(), new);
        let xlen = primary.cmd(&["XLEN", &key]).unwrap();
        let pending = primary.cmd(&["XPENDING", &key, "workers"]).unwrap();
        (xlen, pending)
    });
    assert_eq!(xlen.as_int(), Some(2 * N as i64));
    assert_eq!(
        pending.as_array().and_then(|a| a.first()?.as_int()),
        Some(0)
    );
    transport.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinels_with_a_wrong_ca_are_a_tls_error_not_a_hang() {
    let group = tokio::task::block_in_place(start);
    let wrong = group.tls_files().unwrap().other_ca_cert;
    let cfg = StreamsConfig::from_url(&url(&group, &namespace(), &wrong)).unwrap();
    let started = Instant::now();
    let e = RedisStreamsTransport::connect(cfg)
        .await
        .map(drop)
        .expect_err("the sentinels' certificate is refused");
    let took = started.elapsed();
    // No sentinel timed out: each refused the handshake.
    assert!(took < CONNECT_TIMEOUT, "took {took:?}: {e}");
    let Error::Tls {
        backend,
        addr,
        kind,
        reason,
    } = &e
    else {
        panic!("not a TLS error: {e:?}");
    };
    assert_eq!(*kind, "unknown issuer", "{e}");
    assert_eq!(*backend, "redis sentinel", "{e}");
    for sentinel in group.sentinel_addrs() {
        assert!(addr.contains(&sentinel.to_string()), "{e}");
        let refused = format!("{sentinel}: TLS failed (unknown issuer)");
        assert!(reason.contains(&refused), "{e}");
    }
    assert!(reason.contains("tls_ca"), "says what to check: {e}");
    assert!(!e.is_transient(), "{e}");
}
