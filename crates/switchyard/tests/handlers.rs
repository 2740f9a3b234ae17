//! The handler API (`Bus::handle`) on memory and on a real Redis (Streams):
//! bounded concurrency, exact counts of retries and dead letters, the retry
//! policy's delays, keep-alive, and shutdown within (and past) its deadline.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/recording.rs"]
mod recording;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::prelude::*;
use switchyard::{Handler, HandlerHandle};
use tokio::sync::watch;

/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Job {
    n: u64,
}

/// Polls `done` every 5 ms until it holds; panics with `what` after [`DEADLINE`].
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_report(
    handle: &HandlerHandle,
    what: &str,
    mut done: impl FnMut(&HandlerReport) -> bool,
) {
    wait_for(what, || done(&handle.report())).await;
}

async fn publish_jobs(bus: &Bus, topic: &Topic, range: std::ops::Range<u64>) {
    let messages: Vec<Message> = range
        .map(|n| bus.message(topic, &Job { n }).unwrap())
        .collect();
    bus.transport().publish_batch(messages).await.unwrap();
}

/// Tracks handler calls running at once and the most seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// 100 jobs, concurrency 8: never more than 8 calls at once, each job
/// handled exactly once; every 10th fails its first attempt and job 55
/// panics on its first: retried once each.
async fn concurrency_and_retries(transport: Arc<dyn Transport>) {
    let bus = Bus::new(transport.clone());
    let topic = Topic::new("handlers.load").unwrap();
    let gauge = Arc::new(Gauge::default());
    let done = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let handle = {
        let (gauge, done, calls) = (gauge.clone(), done.clone(), calls.clone());
        bus.handle(
            Subscription::new(topic.clone()).group_member("load", "m1"),
            move |job: Incoming<Job>| {
                let (gauge, done, calls) = (gauge.clone(), done.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gauge.enter();
                    // Some work, so that calls overlap.
                    tokio::time::sleep(Duration::from_millis(1 + job.value.n % 3)).await;
                    gauge.leave();
                    let n = job.value.n;
                    if job.attempt() == 1 && n == 55 {
                        panic!("job 55 panics on its first attempt");
                    }
                    if job.attempt() == 1 && n.is_multiple_of(10) {
                        return Err(format!("job {n} fails its first attempt").into());
                    }
                    *done.lock().unwrap().entry(n).or_default() += 1;
                    Ok(())
                }
            },
        )
        .concurrency(8)
        .retry(RetryPolicy::Immediate)
        .spawn()
        .await
        .unwrap()
    };
    publish_jobs(&bus, &topic, 0..100).await;
    wait_report(&handle, "100 jobs handled", |r| r.handled >= 100).await;
    let report = handle.shutdown().await.unwrap();

    let max = gauge.max.load(Ordering::SeqCst);
    assert!((1..=8).contains(&max), "{max} calls at once");
    let done = done.lock().unwrap();
    assert_eq!(done.len(), 100);
    assert!(done.values().all(|&times| times == 1), "{done:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 111);
    assert_eq!(report.handled, 100, "{report:?}");
    assert_eq!(report.retried, 11, "{report:?}");
    assert_eq!(report.panicked, 1, "{report:?}");
    assert_eq!(report.deliveries(), 111, "{report:?}");
    assert_eq!(
        (
            report.exhausted,
            report.dead_lettered,
            report.decode_failures,
            report.abandoned,
            report.unsettled,
            report.settle_errors,
            report.receive_errors,
        ),
        (0, 0, 0, 0, 0, 0, 0),
        "{report:?}"
    );
}

/// Permanent failures and malformed payloads land in the dead-letter topic,
/// each with its reason; the rest is handled.
async fn permanent_and_malformed(transport: Arc<dyn Transport>) {
    let bus = Bus::new(transport.clone());
    let topic = Topic::new("handlers.poison").unwrap();
    let mut dlq = transport
        .subscribe(Subscription::new(topic.dead_letter().unwrap()).start(Start::Earliest))
        .await
        .unwrap();
    let handle = bus
        .handle(
            Subscription::new(topic.clone()).group_member("poison", "m1"),
            |job: Incoming<Job>| async move {
                if job.value.n.is_multiple_of(3) {
                    return Err(HandlerError::permanent(format!(
                        "job {} is poison",
                        job.value.n
                    )));
                }
                Ok(())
            },
        )
        .concurrency(4)
        .spawn()
        .await
        .unwrap();
    publish_jobs(&bus, &topic, 0..10).await;
    for raw in ["not json", "{\"m\":1}"] {
        transport
            .publish(Message::new(topic.clone(), raw))
            .await
            .unwrap();
    }
    wait_report(&handle, "10 jobs and 2 malformed payloads", |r| {
        r.handled + r.dead_lettered + r.decode_failures >= 12
    })
    .await;
    let report = handle.shutdown().await.unwrap();
    assert_eq!(
        (report.handled, report.dead_lettered, report.decode_failures),
        (6, 4, 2),
        "{report:?}"
    );
    assert_eq!((report.retried, report.exhausted), (0, 0), "{report:?}");

    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while reasons.len() < 6 && tokio::time::Instant::now() < deadline {
        for d in dlq.recv_batch(16, Duration::from_millis(100)).await {
            let d = d.unwrap();
            reasons.push(d.headers().get(header::DLQ_REASON).unwrap().to_owned());
        }
    }
    // Nothing more: exactly six.
    assert!(
        dlq.recv_batch(16, Duration::from_millis(200))
            .await
            .is_empty()
    );
    reasons.sort();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(
        reasons[..2].iter().all(|r| r.starts_with("decode error:")),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[2..],
        [
            "job 0 is poison",
            "job 3 is poison",
            "job 6 is poison",
            "job 9 is poison"
        ]
    );
}

/// Shutdown while long calls run: no new delivery is taken, the calls in
/// flight finish within the deadline, the rest goes back to the group.
async fn shutdown_drains(transport: Arc<dyn Transport>) {
    let bus = Bus::new(transport.clone());
    let topic = Topic::new("handlers.drain").unwrap();
    let sub = || {
        Subscription::new(topic.clone())
            .group_member("drain", "m1")
            .ack_timeout(Duration::from_secs(5))
    };
    let started = Arc::new(AtomicUsize::new(0));
    let (gate, gate_rx) = watch::channel(false);
    let mut handle = {
        let started = started.clone();
        bus.handle(sub(), move |_job: Incoming<Job>| {
            let started = started.clone();
            let mut gate = gate_rx.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.wait_for(|open| *open).await.unwrap();
                Ok(())
            }
        })
        .concurrency(4)
        .shutdown_deadline(Duration::from_secs(10))
        .spawn()
        .await
        .unwrap()
    };
    publish_jobs(&bus, &topic, 0..20).await;
    wait_for("4 calls running", || started.load(Ordering::SeqCst) == 4).await;
    handle.stop();
    gate.send_replace(true);
    let report = handle.shutdown().await.unwrap();
    assert_eq!(
        started.load(Ordering::SeqCst),
        4,
        "no delivery taken after stop"
    );
    assert_eq!((report.handled, report.abandoned), (4, 0), "{report:?}");
    assert_eq!(report.deliveries(), 4, "{report:?}");

    // The next member gets the other 16, each once.
    let seen = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let next = {
        let seen = seen.clone();
        bus.handle(
            Subscription::new(topic.clone())
                .group_member("drain", "m2")
                .ack_timeout(Duration::from_secs(5)),
            move |job: Incoming<Job>| {
                *seen.lock().unwrap().entry(job.value.n).or_default() += 1;
                async { Ok(()) }
            },
        )
        .concurrency(4)
        .spawn()
        .await
        .unwrap()
    };
    wait_report(&next, "the other 16", |r| r.handled >= 16).await;
    let report = next.shutdown().await.unwrap();
    assert_eq!(report.handled, 16, "{report:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 16);
    assert!(seen.values().all(|&n| n == 1));
}

/// Calls that outlive the shutdown deadline are abandoned (counted) and
/// their messages come back to the next member.
async fn deadline_abandons(transport: Arc<dyn Transport>, ack_timeout: Duration) {
    let bus = Bus::new(transport.clone());
    let topic = Topic::new("handlers.abandon").unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let handle = {
        let started = started.clone();
        bus.handle(
            Subscription::new(topic.clone())
                .group_member("abandon", "m1")
                .ack_timeout(ack_timeout),
            move |_job: Incoming<Job>| {
                let started = started.clone();
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    // Never finishes by itself.
                    std::future::pending::<()>().await;
                    Ok(())
                }
            },
        )
        .concurrency(3)
        .shutdown_deadline(Duration::from_millis(100))
        .spawn()
        .await
        .unwrap()
    };
    publish_jobs(&bus, &topic, 0..10).await;
    wait_for("3 calls running", || started.load(Ordering::SeqCst) == 3).await;
    let report = handle.shutdown().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 3);
    assert_eq!((report.abandoned, report.handled), (3, 0), "{report:?}");
    assert_eq!(report.deliveries(), 3, "{report:?}");

    let seen = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let again = Arc::new(AtomicUsize::new(0));
    let next = {
        let (seen, again) = (seen.clone(), again.clone());
        bus.handle(
            Subscription::new(topic.clone())
                .group_member("abandon", "m2")
                .ack_timeout(ack_timeout),
            move |job: Incoming<Job>| {
                *seen.lock().unwrap().entry(job.value.n).or_default() += 1;
                if job.attempt() > 1 {
                    again.fetch_add(1, Ordering::SeqCst);
                }
                async { Ok(()) }
            },
        )
        .concurrency(4)
        .spawn()
        .await
        .unwrap()
    };
    wait_report(&next, "all 10 on the next member", |r| r.handled >= 10).await;
    let report = next.shutdown().await.unwrap();
    assert_eq!(report.handled, 10, "{report:?}");
    assert_eq!(again.load(Ordering::SeqCst), 3, "the 3 abandoned come back");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    assert!(seen.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrency_and_retries() {
    concurrency_and_retries(switchyard::connect("memory://").await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_permanent_and_malformed_are_dead_lettered() {
    permanent_and_malformed(switchyard::connect("memory://").await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_shutdown_drains_in_flight_calls() {
    shutdown_drains(switchyard::connect("memory://").await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_shutdown_deadline_abandons_and_they_come_back() {
    let transport = switchyard::connect("memory://?redelivery_tick_ms=10")
        .await
        .unwrap();
    deadline_abandons(transport, Duration::from_secs(30)).await;
}

/// The exponential policy's delays, as the adapter received them: attempt
/// by attempt through a recording transport, not by the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_delays_grow_and_cap() {
    let inner = switchyard::connect("memory://?redelivery_tick_ms=5")
        .await
        .unwrap();
    let recording = recording::Recording::wrap(inner.clone());
    let bus = Bus::new(recording.clone());
    let topic = Topic::new("handlers.backoff").unwrap();
    let handle = bus
        .handle(
            Subscription::new(topic.clone())
                .group_member("backoff", "m1")
                .max_attempts(5),
            |_job: Incoming<Job>| async { Err("always fails".into()) },
        )
        .retry(RetryPolicy::Exponential {
            first: Duration::from_millis(5),
            max: Duration::from_millis(30),
            factor: 3,
        })
        .spawn()
        .await
        .unwrap();
    bus.publish(&topic, &Job { n: 1 }).await.unwrap();
    wait_report(&handle, "5 attempts", |r| r.exhausted >= 1).await;
    let report = handle.shutdown().await.unwrap();
    assert_eq!((report.retried, report.exhausted), (4, 1), "{report:?}");
    let ms = Duration::from_millis;
    assert_eq!(
        recording.nacks(),
        [
            (1, Retry::After(ms(5))),
            (2, Retry::After(ms(15))),
            (3, Retry::After(ms(30))),
            (4, Retry::After(ms(30))),
            (5, Retry::After(ms(30))),
        ]
    );
    // The last nack made the adapter dead-letter it.
    let mut dlq = inner
        .subscribe(Subscription::new(topic.dead_letter().unwrap()).start(Start::Earliest))
        .await
        .unwrap();
    let letter = tokio::time::timeout(DEADLINE, dlq.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reason = letter.headers().get(header::DLQ_REASON).unwrap();
    assert!(reason.starts_with("max attempts reached"), "{reason}");
}

/// A call longer than the ack timeout keeps its message: the automatic
/// `in_progress` stops the other member from taking it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_holds_long_work() {
    let transport = switchyard::connect("memory://?redelivery_tick_ms=10")
        .await
        .unwrap();
    let bus = Bus::new(transport);
    let topic = Topic::new("handlers.long").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let member = |name: &'static str| {
        let calls = calls.clone();
        bus.handle(
            Subscription::new(topic.clone())
                .group_member("long", name)
                .ack_timeout(Duration::from_millis(200)),
            move |_job: Incoming<Job>| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Work three ack timeouts long.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok(())
                }
            },
        )
        .spawn()
    };
    let a = member("a").await.unwrap();
    let b = member("b").await.unwrap();
    bus.publish(&topic, &Job { n: 1 }).await.unwrap();
    wait_for("the job handled", || {
        a.report().handled + b.report().handled >= 1
    })
    .await;
    let (a, b) = (a.shutdown().await.unwrap(), b.shutdown().await.unwrap());
    assert_eq!(a.handled + b.handled, 1, "{a:?} {b:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nobody took it over");
}

/// Fan-out: the handler runs on every message; settling is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_subscriptions_work_too() {
    let bus = Bus::new(switchyard::connect("memory://").await.unwrap());
    let topic = Topic::new("handlers.fanout").unwrap();
    let handle = bus
        .handle(
            Subscription::new(topic.clone()),
            |job: Incoming<Job>| async move {
                if job.value.n == 3 {
                    return Err("fails".into());
                }
                Ok(())
            },
        )
        .concurrency(2)
        .spawn()
        .await
        .unwrap();
    publish_jobs(&bus, &topic, 0..5).await;
    wait_report(&handle, "5 calls", |r| r.deliveries() >= 5).await;
    let report = handle.shutdown().await.unwrap();
    assert_eq!((report.handled, report.retried), (4, 1), "{report:?}");
}

/// Every setting is checked, with what to change in the error.
#[tokio::test]
async fn settings_are_validated() {
    let bus = Bus::new(switchyard::connect("memory://").await.unwrap());
    let topic = Topic::new("handlers.settings").unwrap();
    let build = || {
        bus.handle(
            Subscription::new(topic.clone()).group("g"),
            |_: Incoming<Job>| async { Ok(()) },
        )
    };
    assert_eq!(Handler::<(), ()>::MAX_CONCURRENCY, 10_000);
    for (handler, expected) in [
        (build().concurrency(0), "concurrency must be 1 to 10000"),
        (
            build().concurrency(10_001),
            "concurrency must be 1 to 10000",
        ),
        (
            build().shutdown_deadline(Duration::from_secs(3601)),
            "shutdown_deadline must be 0 to 1h",
        ),
        (
            build().keep_alive(Some(Duration::ZERO)),
            "keep_alive must be 1ms to 24h",
        ),
        (
            build().retry(RetryPolicy::Fixed(Duration::from_secs(25 * 3600))),
            "RetryPolicy::Fixed",
        ),
    ] {
        let e = handler.spawn().await.unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
        assert!(e.to_string().contains(expected), "{e}");
    }
    build()
        .concurrency(10_000)
        .spawn()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[cfg(feature = "redis-streams")]
mod redis_streams {
    use super::*;

    async fn transport(server: &switchyard_testkit::RedisServer, ns: &str) -> Arc<dyn Transport> {
        let url = format!(
            "redis+streams://{}?namespace={ns}&block=100ms",
            server.addr()
        );
        switchyard::connect(&url).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_retries_and_dead_letters() {
        let server =
            switchyard_testkit::RedisServer::start().expect("redis-server must be installed");
        let t = transport(&server, "handlers").await;
        concurrency_and_retries(t.clone()).await;
        permanent_and_malformed(t.clone()).await;
        t.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_drains_and_abandoned_come_back() {
        let server =
            switchyard_testkit::RedisServer::start().expect("redis-server must be installed");
        let t = transport(&server, "handlers-shutdown").await;
        shutdown_drains(t.clone()).await;
        // Abandoned entries stay pending until the ack timeout, then the
        // next member claims them.
        deadline_abandons(t.clone(), Duration::from_millis(500)).await;
        t.close().await.unwrap();
    }
}
