//! Every numeric setting fed its extremes (0, 1, its bounds, one past its
//! maximum, `u64::MAX` in every unit, a number past `u64`) through
//! `switchyard::connect` and through the builders: nothing panics or aborts,
//! a value outside its documented range is refused with
//! `Error::InvalidConfig`/`Error::InvalidUrl` naming the setting, and a value
//! inside it gives a transport that works (a message makes the round trip).
//!
//! Reproductions of the defects (each used to be accepted):
//! `redis+streams://…?writer_queue=18446744073709551615` panicked in
//! `connect`; `?writer_batch=1000000000` aborted the process on a 112 GB
//! allocation; `writer_batch`/`writer_in_flight` of `u64::MAX` panicked the
//! writer task (every later publish returned `Closed`);
//! `redis+pubsub://…?probe_interval=18446744073709551615s` panicked the
//! receiving loop; `?close_timeout=18446744073709551615s` made `close()`
//! panic; `maxlen=18446744073709551615` made every XADD fail.
#![cfg(all(
    feature = "memory",
    feature = "redis-streams",
    feature = "redis-pubsub"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use switchyard::prelude::*;
use switchyard::redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard::redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::RedisServer;

/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A count, `min..=max`.
    Count(u64, u64),
    /// A duration in milliseconds, `min..=max`.
    Millis(u64, u64),
}

/// A URL parameter, its range, and the parameters it needs beside it to be
/// tried alone (`reconnect_min` must stay below `reconnect_max`).
#[derive(Clone, Copy, Debug)]
struct Param {
    name: &'static str,
    kind: Kind,
    companion: &'static str,
    /// At its smallest value the transport is valid but cannot be expected
    /// to carry a message (a 1 ms connect, response or probe timeout, a 1 ms
    /// outbox TTL): only "no panic, no `Closed`" is checked there.
    timing_bound: bool,
}

const fn count(name: &'static str, min: u64, max: u64) -> Param {
    Param {
        name,
        kind: Kind::Count(min, max),
        companion: "",
        timing_bound: false,
    }
}

const fn millis(name: &'static str, min: u64, max: u64) -> Param {
    Param {
        name,
        kind: Kind::Millis(min, max),
        companion: "",
        timing_bound: false,
    }
}

const fn timing(p: Param) -> Param {
    Param {
        timing_bound: true,
        ..p
    }
}

const fn with(p: Param, companion: &'static str) -> Param {
    Param { companion, ..p }
}

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Shared by both Redis adapters.
const REDIS: &[Param] = &[
    timing(millis("connect_timeout", 1, 10 * MINUTE)),
    timing(millis("response_timeout", 1, HOUR)),
    millis("connect_retry", 0, HOUR),
    millis("connect_retry_max_delay", 10, MINUTE),
];

const STREAMS: &[Param] = &[
    // 0 means no cap.
    count("maxlen", 0, i64::MAX as u64),
    count("read_count", 1, 100_000),
    count("writer_queue", 1, 1 << 20),
    count("writer_batch", 1, 100_000),
    count("writer_in_flight", 1, 1024),
    count("breaker_threshold", 1, 1_000_000),
    millis("retention", 1, 365 * DAY),
    millis("block", 1, 5 * MINUTE),
    millis("claim_interval", 1, HOUR),
    millis("consumer_idle_cleanup", 1, 30 * DAY),
    millis("pattern_rescan", 1, HOUR),
    millis("breaker_cool_down", 1, HOUR),
];

const PUBSUB: &[Param] = &[
    count("outbox", 1, 10_000_000),
    count("outbox_bytes", 16 << 20, u32::MAX as u64),
    count("batch", 1, 100_000),
    timing(millis("outbox_ttl", 1, HOUR)),
    millis("outbox_wait", 0, MINUTE),
    millis("remote_wait", 0, 10_000),
    millis("probe_interval", 1, HOUR),
    timing(millis("probe_timeout", 1, HOUR)),
    with(millis("reconnect_min", 0, 10 * MINUTE), "reconnect_max=10m"),
    with(millis("reconnect_max", 1, 10 * MINUTE), "reconnect_min=0"),
    millis("close_timeout", 0, HOUR),
    millis("warn_interval", 1, DAY),
    count("partitions", 1, 1024),
];

const MEMORY: &[Param] = &[
    // 0 means the largest retention, 100000000.
    count("retention", 0, 100_000_000),
    count("dead_letter_retention", 0, 100_000_000),
    count("redelivery_tick_ms", 1, 60_000),
];

/// The extremes of `p`: (URL value, inside the range).
fn extremes(p: &Param) -> Vec<(String, bool)> {
    let (min, max) = match p.kind {
        Kind::Count(min, max) | Kind::Millis(min, max) => (min, max),
    };
    let mut numbers = vec![0, 1, min, max, u64::MAX];
    if max < u64::MAX {
        numbers.push(max + 1);
    }
    numbers.sort_unstable();
    numbers.dedup();
    let inside = |n: u64| (min..=max).contains(&n);
    let mut out: Vec<(String, bool)> = match p.kind {
        Kind::Count(..) => numbers
            .iter()
            .map(|&n| (n.to_string(), inside(n)))
            .collect(),
        Kind::Millis(..) => numbers
            .iter()
            .map(|&n| (format!("{n}ms"), inside(n)))
            .collect(),
    };
    // Past u64: a parse error, never a wrap-around.
    out.push(("18446744073709551616".to_owned(), false));
    if matches!(p.kind, Kind::Millis(..)) {
        out.push(("18446744073709551615s".to_owned(), false));
        out.push(("18446744073709551615m".to_owned(), false));
    }
    out
}

/// `base?name=value&...`; Redis URLs get a namespace of their own.
fn url(base: &str, params: &[(&str, String)], companions: &[&str]) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut url = base.to_owned();
    let mut sep = '?';
    if base.starts_with("redis") {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        url.push_str(&format!("?namespace=x{}-{n}", std::process::id()));
        sep = '&';
    }
    for (name, value) in params {
        url.push_str(&format!("{sep}{name}={value}"));
        sep = '&';
    }
    for c in companions.iter().filter(|c| !c.is_empty()) {
        url.push(sep);
        url.push_str(c);
        sep = '&';
    }
    url
}

/// What happened to one URL.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected and carried a message.
    RoundTrip,
    /// Connected (or failed to, on a timing bound) without a panic and
    /// without `Closed`.
    Survived,
}

/// Connects to `url`; on success publishes one message to a subscriber and
/// (unless `carry` is false) waits for it.
async fn exercise(url: &str, carry: bool) -> Result<Outcome> {
    let transport = match switchyard::connect(url).await {
        Ok(t) => t,
        Err(e @ (Error::InvalidConfig(_) | Error::InvalidUrl { .. })) => return Err(e),
        Err(e) if !carry && e.is_transient() => return Ok(Outcome::Survived),
        Err(e) => panic!("{url}: unexpected error {e}"),
    };
    let outcome = round_trip(&transport, carry).await;
    let closed = tokio::time::timeout(DEADLINE, transport.close()).await;
    assert!(closed.is_ok(), "{url}: close took more than {DEADLINE:?}");
    match outcome {
        Ok(o) => Ok(o),
        Err(e) if !carry && e.is_transient() => Ok(Outcome::Survived),
        Err(e) => panic!("{url}: {e}"),
    }
}

async fn round_trip(transport: &Arc<dyn Transport>, carry: bool) -> Result<Outcome> {
    let topic = Topic::new("extreme.t")?;
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()))
        .await?;
    let published = transport.publish(Message::new(topic, "x")).await;
    assert!(!matches!(published, Err(Error::Closed)), "publish: Closed");
    published?;
    if !carry {
        return Ok(Outcome::Survived);
    }
    let got = tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .map_err(|_| Error::Backend("no delivery within the deadline".into()))?;
    let d = got.ok_or(Error::Closed)??;
    assert_eq!(&d.payload()[..], b"x");
    Ok(Outcome::RoundTrip)
}

/// Every parameter of `params` alone at each of its extremes.
async fn each_extreme(base: &str, params: &[Param]) -> (usize, usize, usize) {
    let (mut refused, mut carried, mut survived) = (0, 0, 0);
    for p in params {
        for (value, inside) in extremes(p) {
            let url = url(base, &[(p.name, value.clone())], &[p.companion]);
            let at_timing_bound = p.timing_bound && value == "1ms";
            match exercise(&url, !at_timing_bound).await {
                Err(e) => {
                    assert!(!inside, "{url}: refused a value in range: {e}");
                    assert!(e.to_string().contains(p.name), "{url}: {e}");
                    refused += 1;
                }
                Ok(outcome) => {
                    assert!(inside, "{url}: accepted a value out of range");
                    match outcome {
                        Outcome::RoundTrip => carried += 1,
                        Outcome::Survived => survived += 1,
                    }
                }
            }
        }
    }
    (refused, carried, survived)
}

/// The number of extremes of `params`, inside and outside the ranges.
fn expected(params: &[Param]) -> (usize, usize) {
    let all: Vec<bool> = params
        .iter()
        .flat_map(|p| extremes(p).into_iter().map(|(_, inside)| inside))
        .collect();
    let inside = all.iter().filter(|i| **i).count();
    (all.len() - inside, inside)
}

fn redis_base(server: &RedisServer, scheme: &str) -> String {
    format!("{scheme}://{}", server.addr())
}

/// Every numeric URL parameter an adapter reads is in the tables above, so
/// a new one cannot skip these checks (`instance_id`, hex, is tried below).
#[test]
fn the_tables_cover_every_url_parameter() {
    let listed = |params: &[Param], name: &str| params.iter().any(|p| p.name == name);
    // `wait_replicas` cannot carry a message on a server without replicas
    // (every publish waits for one): its range and `wait_timeout`'s are
    // checked by redis-streams' `config::tests::wait_replicas_ranges` and
    // exercised against real replicas in its replica_role/failover tests.
    const NEEDS_REPLICAS: &[&str] = &["wait_replicas", "wait_timeout"];
    // `retain` takes rules, not a number: its extremes (0, i64::MAX, past
    // it, 365 days, 257 rules) are checked by core's `retention` tests and
    // redis-streams' `retention` tests.
    for name in switchyard::redis_streams::URL_PARAMS {
        assert!(
            listed(STREAMS, name) || NEEDS_REPLICAS.contains(name) || *name == "retain",
            "{name} missing from STREAMS"
        );
    }
    for name in switchyard::redis_pubsub::URL_PARAMS {
        assert!(
            listed(PUBSUB, name) || *name == "instance_id",
            "{name} missing from PUBSUB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_url_parameter_at_its_extremes() {
    let server = RedisServer::start().expect("redis-server must be installed");
    let streams: Vec<Param> = REDIS.iter().chain(STREAMS).copied().collect();
    let pubsub: Vec<Param> = REDIS.iter().chain(PUBSUB).copied().collect();
    for (base, params) in [
        (redis_base(&server, "redis+streams"), streams.as_slice()),
        (redis_base(&server, "redis+pubsub"), pubsub.as_slice()),
        ("memory://".to_owned(), MEMORY),
    ] {
        let (refused, carried, survived) = each_extreme(&base, params).await;
        let (outside, inside) = expected(params);
        let timing_bounds = params.iter().filter(|p| p.timing_bound).count();
        assert_eq!(refused, outside, "{base}");
        assert_eq!(carried + survived, inside, "{base}");
        assert!(survived <= timing_bounds, "{base}: {survived} survived");
    }
    // instance_id is hex, not a count: any 64-bit value, nothing past it.
    let base = redis_base(&server, "redis+pubsub");
    for (id, inside) in [
        ("0", true),
        ("ffffffffffffffff", true),
        ("10000000000000000", false),
    ] {
        let url = url(&base, &[("instance_id", id.to_owned())], &[]);
        let outcome = exercise(&url, true).await;
        assert_eq!(outcome.is_ok(), inside, "{url}: {outcome:?}");
    }
}

#[tokio::test]
async fn builders_at_their_extremes() {
    let d = Duration::MAX;
    let streams = [
        StreamsConfig::default().with_writer_queue(usize::MAX),
        StreamsConfig::default().with_writer_batch(1_000_000_000),
        StreamsConfig::default().with_writer_batch(usize::MAX),
        StreamsConfig::default().with_writer_in_flight(usize::MAX),
        StreamsConfig::default().with_read_count(0),
        StreamsConfig::default().with_maxlen(Some(u64::MAX)),
        StreamsConfig::default().with_min_id_age(Some(d)),
        StreamsConfig::default().with_block(d),
        StreamsConfig::default().with_claim_interval(Some(Duration::ZERO)),
        StreamsConfig::default().with_consumer_idle_cleanup(Duration::ZERO),
        StreamsConfig::default().with_pattern_rescan(d),
        StreamsConfig::default().with_breaker(0, Duration::from_secs(1)),
        StreamsConfig::default().with_breaker(1, d),
        StreamsConfig::new(
            switchyard::redis_streams::StreamsConfig::default()
                .redis
                .with_connect_timeout(Duration::ZERO),
        ),
    ];
    for cfg in streams {
        let e = RedisStreamsTransport::connect(cfg.clone()).await.err();
        assert!(
            matches!(&e, Some(Error::InvalidConfig(m)) if m.ends_with("(set in code)")),
            "{cfg:?}: {e:?}"
        );
    }
    let pubsub = [
        PubSubConfig::default().with_outbox(usize::MAX),
        PubSubConfig::default().with_outbox_bytes(usize::MAX),
        PubSubConfig::default().with_outbox_bytes(0),
        PubSubConfig::default().with_batch(1_000_000_000),
        PubSubConfig::default().with_outbox_ttl(d),
        PubSubConfig::default().with_outbox_wait(d),
        PubSubConfig::default().with_remote_wait(d),
        PubSubConfig::default().with_probe_interval(d),
        PubSubConfig::default().with_probe_timeout(Duration::ZERO),
        PubSubConfig::default().with_reconnect(Duration::ZERO, d),
        PubSubConfig::default().with_close_timeout(d),
        PubSubConfig::default().with_gap_tracker_capacity(usize::MAX),
        PubSubConfig::default().with_warn_interval(d),
    ];
    for cfg in pubsub {
        let e = RedisPubSubTransport::connect(cfg.clone()).await.err();
        assert!(
            matches!(&e, Some(Error::InvalidConfig(m)) if m.ends_with("(set in code)")),
            "{cfg:?}: {e:?}"
        );
    }
    // Memory builders bring values into range; the hub works at the bounds.
    let cfg = switchyard::memory::MemoryConfig::default()
        .with_retention(usize::MAX)
        .with_dead_letter_retention(0)
        .with_redelivery_tick(d);
    assert!(cfg.validate().is_ok());
    let memory = switchyard::memory::MemoryTransport::with_config(cfg);
    let t: Arc<dyn Transport> = Arc::new(memory);
    assert_eq!(round_trip(&t, true).await.unwrap(), Outcome::RoundTrip);
    // Subscription settings: refused at subscribe, never a panic in recv.
    let topic = Topic::new("extreme.sub").unwrap();
    for sub in [
        Subscription::new(topic.clone()).ack_timeout(d),
        Subscription::new(topic.clone()).ack_timeout(Duration::ZERO),
        Subscription::new(topic.clone()).max_attempts(u32::MAX),
        Subscription::new(topic.clone()).max_attempts(0),
        Subscription::new(topic.clone()).buffer(usize::MAX),
        Subscription::new(topic.clone()).buffer(0),
    ] {
        let sub = sub.group_member("g", "c");
        let e = t.subscribe(sub.clone()).await.err();
        assert!(matches!(e, Some(Error::InvalidConfig(_))), "{sub:?}: {e:?}");
    }
}

/// Random combinations of extremes, on all three adapters at once.
fn combination(params: &'static [Param]) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let one = (0..params.len(), 0usize..10).prop_map(move |(i, j)| {
        let p = &params[i];
        let values = extremes(p);
        (p.name, values[j % values.len()].0.clone())
    });
    proptest::collection::vec(one, 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any combination: connect never panics; a refused one is a
    /// configuration error; an accepted one never reports `Closed`.
    #[test]
    fn any_combination_of_extremes_never_panics(
        streams in combination(STREAMS),
        pubsub in combination(PUBSUB),
        memory in combination(MEMORY),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = RedisServer::start().expect("redis-server must be installed");
        rt.block_on(async {
            for (base, params) in [
                (redis_base(&server, "redis+streams"), &streams),
                (redis_base(&server, "redis+pubsub"), &pubsub),
                ("memory://".to_owned(), &memory),
            ] {
                let params: Vec<(&str, String)> = params.clone();
                // A duplicate parameter is a parse question, not a range one.
                let mut names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
                names.sort_unstable();
                names.dedup();
                let url = url(&base, &params, &[]);
                match exercise(&url, false).await {
                    Ok(outcome) => assert_eq!(outcome, Outcome::Survived, "{url}"),
                    Err(e) => assert!(
                        names.iter().any(|n| e.to_string().contains(n))
                            || e.to_string().contains("twice")
                            || e.to_string().contains("reconnect_min"),
                        "{url}: {e}"
                    ),
                }
            }
        });
    }
}

/// Any duration, with the extremes likely.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_millis(1)),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        (0u64..=u64::MAX).prop_map(Duration::from_millis),
        (0u64..=100 * DAY).prop_map(Duration::from_millis),
    ]
}

/// Any count, with the extremes likely.
fn any_count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        0u64..=20_000_000,
        any::<u64>(),
    ]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any value through the builders: `validate` never panics, and accepts
    /// exactly the documented ranges.
    #[test]
    fn builders_accept_exactly_their_ranges(
        counts in proptest::collection::vec(any_count(), 8),
        durations in proptest::collection::vec(any_duration(), 12),
    ) {
        let n = |i: usize| usize::try_from(counts[i]).unwrap_or(usize::MAX);
        let streams = StreamsConfig::default()
            .with_maxlen(Some(counts[0]))
            .with_read_count(n(1))
            .with_writer_queue(n(2))
            .with_writer_batch(n(3))
            .with_writer_in_flight(n(4))
            .with_block(durations[0])
            .with_claim_interval(Some(durations[1]))
            .with_consumer_idle_cleanup(durations[2])
            .with_pattern_rescan(durations[3])
            .with_min_id_age(Some(durations[4]));
        let in_ms = |d: Duration, min: u64, max: u64| (u128::from(min)..=u128::from(max)).contains(&ms(d))
            && !(min > 0 && d < Duration::from_millis(min));
        let expected = (0..=i64::MAX as u64).contains(&counts[0])
            && (1..=100_000).contains(&counts[1])
            && (1..=1 << 20).contains(&counts[2])
            && (1..=100_000).contains(&counts[3])
            && (1..=1024).contains(&counts[4])
            && in_ms(durations[0], 1, 5 * MINUTE)
            && in_ms(durations[1], 1, HOUR)
            && in_ms(durations[2], 1, 30 * DAY)
            && in_ms(durations[3], 1, HOUR)
            && in_ms(durations[4], 1, 365 * DAY);
        prop_assert_eq!(streams.validate().is_ok(), expected, "{:?}", streams);

        let pubsub = PubSubConfig::default()
            .with_outbox(n(5))
            .with_batch(n(6))
            .with_gap_tracker_capacity(n(7))
            .with_outbox_ttl(durations[5])
            .with_outbox_wait(durations[6])
            .with_probe_interval(durations[7])
            .with_probe_timeout(durations[8])
            .with_reconnect(Duration::ZERO, durations[9])
            .with_close_timeout(durations[10])
            .with_warn_interval(durations[11]);
        let within = |d: Duration, max: u64| ms(d) <= u128::from(max) && d <= Duration::from_millis(max);
        let expected = (1..=10_000_000).contains(&counts[5])
            && (1..=100_000).contains(&counts[6])
            && (1..=10_000_000).contains(&counts[7])
            && in_ms(durations[5], 1, HOUR)
            && within(durations[6], MINUTE)
            && in_ms(durations[7], 1, HOUR)
            && in_ms(durations[8], 1, HOUR)
            && in_ms(durations[9], 1, 10 * MINUTE)
            && within(durations[10], HOUR)
            && in_ms(durations[11], 1, DAY);
        prop_assert_eq!(pubsub.validate().is_ok(), expected, "{:?}", pubsub);

        let sub = Subscription::new(Topic::new("p.t").unwrap())
            .buffer(n(0))
            .max_attempts(u32::try_from(counts[1]).unwrap_or(u32::MAX))
            .ack_timeout(durations[0]);
        let expected = (1..=1 << 20).contains(&counts[0])
            && (1..=1_000_000).contains(&counts[1])
            && in_ms(durations[0], 1, DAY);
        prop_assert_eq!(sub.validate().is_ok(), expected, "{:?}", sub);
    }
}
