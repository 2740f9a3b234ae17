//! Workloads shared by switchyard's criterion benches (`benches/benches/`)
//! and the comparison binaries (`src/bin/`). See `benches/README.md` for how
//! to run them and `docs/benchmarks.md` for the figures.
//!
//! Every adapter runs the same [`suite`]: publish (single, batch of 100,
//! 1/8/64 concurrent publishers), fan-out to 1/10/100 subscribers, a consumer
//! group of 1/4 members (consume + ack) and end-to-end latency at a fixed
//! rate, each for payloads of 16 B, 256 B, 4 KiB and 64 KiB. Redis benches run
//! against a `redis-server` the bench starts itself (switchyard-testkit),
//! never a shared one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchyard::{Bytes, Message, Subscriber, Subscription, Topic, Transport};
use switchyard_testkit::RedisServer;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// Payload sizes every workload runs with.
pub const SIZES: [usize; 4] = [16, 256, 4096, 65536];

/// Retained messages per topic in the benches (memory `retention`, Redis
/// `MAXLEN ~`), so a long run of 64 KiB payloads stays within memory.
pub const RETAINED: u64 = 5_000;

/// Bytes delivered per fan-out or group iteration, at most (so a 64 KiB x
/// 100 subscriber iteration stays short); at least one message.
const BYTES_PER_ITER: usize = 4 << 20;

/// Offered rate of the latency workload, messages per second.
pub const LATENCY_RATE: u64 = 10_000;

/// The adapters the suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// `memory://`
    Memory,
    /// `redis+streams://` on a testkit server.
    RedisStreams,
    /// `redis+pubsub://` on a testkit server.
    RedisPubsub,
}

impl Adapter {
    /// The name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Memory => "memory",
            Adapter::RedisStreams => "redis_streams",
            Adapter::RedisPubsub => "redis_pubsub",
        }
    }
}

/// A multi-threaded tokio runtime with two workers (the machine's cores).
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens a transport of `adapter`; Redis adapters use `server`.
pub async fn open(adapter: Adapter, server: Option<&RedisServer>) -> Arc<dyn Transport> {
    match adapter {
        Adapter::Memory => switchyard::connect(&format!("memory://?retention={RETAINED}"))
            .await
            .expect("memory://"),
        Adapter::RedisStreams => {
            let server = server.expect("a redis server");
            let url = format!(
                "redis+streams://127.0.0.1:{}?maxlen={RETAINED}",
                server.port()
            );
            switchyard::connect(&url).await.expect("redis+streams://")
        }
        Adapter::RedisPubsub => {
            let server = server.expect("a redis server");
            let url = format!("redis+pubsub://127.0.0.1:{}", server.port());
            switchyard::connect(&url).await.expect("redis+pubsub://")
        }
    }
}

/// A fresh topic name.
pub fn topic(what: &str) -> Topic {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Topic::new(format!(
        "bench-{:06x}.{what}.{n}",
        std::process::id() & 0xff_ffff
    ))
    .expect("topic")
}

/// A payload of `size` bytes.
pub fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0x5a_u8; size])
}

/// Messages per iteration of a delivery workload.
pub fn messages_per_iter(size: usize, copies: usize) -> usize {
    (BYTES_PER_ITER / (size * copies).max(1)).clamp(1, 100)
}

/// Background readers of one workload: they count (and ack) every
/// delivery; the bench waits until the count reaches a target.
pub struct Sink {
    count: Arc<AtomicU64>,
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sink {
    /// Starts one reader task per subscriber.
    pub fn start(subs: Vec<Box<dyn Subscriber>>) -> Sink {
        let count = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = subs
            .into_iter()
            .map(|mut sub| {
                let (count, notify, stop) = (count.clone(), notify.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let items = sub.recv_batch(1024, Duration::from_millis(50)).await;
                        let n = items.len() as u64;
                        for item in items {
                            let d = item.expect("delivery");
                            if d.needs_ack() {
                                d.ack().await.expect("ack");
                            }
                        }
                        if n > 0 {
                            count.fetch_add(n, Ordering::Relaxed);
                            notify.notify_waiters();
                        }
                    }
                    let _ = sub.close().await;
                })
            })
            .collect();
        Sink {
            count,
            notify,
            stop,
            tasks,
        }
    }

    /// Deliveries so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `target` deliveries arrived (panics after 60 s).
    pub async fn wait_for(&self, target: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            let notified = self.notify.notified();
            if self.count() >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
            assert!(
                Instant::now() < deadline,
                "delivery stalled at {} of {target}",
                self.count()
            );
        }
    }

    /// Stops the readers.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Publishes `n` messages from `publishers` concurrent tasks; returns the
/// elapsed time.
pub async fn publish_concurrent(
    transport: &Arc<dyn Transport>,
    message: &Message,
    publishers: usize,
    n: u64,
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            let (transport, message, next) = (transport.clone(), message.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    transport.publish(message.clone()).await.expect("publish");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher task");
    }
    started.elapsed()
}

/// Sends `n` messages at `rate` msg/s from a pacing thread, each carrying
/// its intended send time (nanoseconds since `epoch`) in its first 8 bytes;
/// one reader measures arrival minus intended time. Returns the sum of the
/// latencies (so criterion's time per iteration is the mean latency).
pub async fn paced_latency(
    publisher: &Arc<dyn Transport>,
    sub: &mut Box<dyn Subscriber>,
    topic: &Topic,
    size: usize,
    rate: u64,
    n: u64,
) -> Duration {
    let epoch = Instant::now();
    let interval = 1e9 / rate as f64;
    let handle = tokio::runtime::Handle::current();
    let (publisher, topic) = (publisher.clone(), topic.clone());
    let pacer = tokio::task::spawn_blocking(move || {
        for i in 0..n {
            let due = Duration::from_nanos(1_000_000 + (i as f64 * interval) as u64);
            if let Some(wait) = due.checked_sub(epoch.elapsed()) {
                std::thread::sleep(wait);
            }
            let mut body = vec![0_u8; size.max(8)];
            body[..8].copy_from_slice(&(due.as_nanos() as u64).to_le_bytes());
            let (publisher, message) = (publisher.clone(), Message::new(topic.clone(), body));
            handle.spawn(async move { publisher.publish(message).await.expect("publish") });
        }
    });
    let mut total = Duration::ZERO;
    let mut got = 0;
    while got < n {
        let items = sub.recv_batch(1024, Duration::from_secs(30)).await;
        assert!(
            !items.is_empty(),
            "latency delivery stalled at {got} of {n}"
        );
        let now = epoch.elapsed();
        for item in items {
            let d = item.expect("delivery");
            let due = u64::from_le_bytes(d.payload()[..8].try_into().expect("8 bytes"));
            total += now.saturating_sub(Duration::from_nanos(due));
            got += 1;
        }
    }
    pacer.await.expect("pacer");
    total
}

/// Subscribes `n` fan-out subscribers (or members of `group`) to `topic`.
pub async fn subscribe(
    transport: &Arc<dyn Transport>,
    topic: &Topic,
    n: usize,
    group: Option<&str>,
) -> Vec<Box<dyn Subscriber>> {
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = Subscription::new(topic.clone()).buffer(4096);
        if let Some(g) = group {
            s = s.group_member(g, format!("c{i}"));
        }
        subs.push(transport.subscribe(s).await.expect("subscribe"));
    }
    subs
}

/// The whole suite for one adapter: every workload for every size in
/// [`SIZES`]. In criterion's smoke mode (`-- --test`) each bench runs once,
/// which takes seconds for the whole matrix.
pub fn suite(c: &mut Criterion, adapter: Adapter) {
    let rt = runtime();
    let server = match adapter {
        Adapter::Memory => None,
        _ => Some(RedisServer::start().expect("redis-server (install redis-server)")),
    };
    let (publisher, subscriber_side) = rt.block_on(async {
        let p = open(adapter, server.as_ref()).await;
        // Cross-process adapters: subscribers on a second transport (a
        // second replica); memory is one hub.
        let s = if p.capabilities().cross_process {
            open(adapter, server.as_ref()).await
        } else {
            p.clone()
        };
        (p, s)
    });
    let name = adapter.name();

    // Publish: one message, a batch of 100, concurrent publishers.
    let mut group = c.benchmark_group(format!("{name}/publish"));
    for size in SIZES {
        let message = Message::new(topic("publish"), payload(size));
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("single", size), &message, |b, m| {
            b.to_async(&rt)
                .iter(|| async { publisher.publish(m.clone()).await.expect("publish") });
        });
        let batch: Vec<Message> = (0..100).map(|_| message.clone()).collect();
        group.throughput(Throughput::Elements(100));
        group.bench_with_input(BenchmarkId::new("batch_100", size), &batch, |b, batch| {
            b.to_async(&rt).iter(|| async {
                publisher
                    .publish_batch(batch.clone())
                    .await
                    .expect("publish_batch")
            });
        });
        for publishers in [1_usize, 8, 64] {
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(
                BenchmarkId::new(format!("concurrent_{publishers}"), size),
                &message,
                |b, m| {
                    b.to_async(&rt).iter_custom(|iters| {
                        let publisher = publisher.clone();
                        let m = m.clone();
                        async move { publish_concurrent(&publisher, &m, publishers, iters).await }
                    });
                },
            );
        }
    }
    group.finish();

    // Fan-out: a batch published, received by every subscriber.
    let mut group = c.benchmark_group(format!("{name}/fanout"));
    for subscribers in [1_usize, 10, 100] {
        for size in SIZES {
            let t = topic("fanout");
            let per_iter = messages_per_iter(size, subscribers);
            let batch: Vec<Message> = (0..per_iter)
                .map(|_| Message::new(t.clone(), payload(size)))
                .collect();
            let sink = rt.block_on(async {
                Sink::start(subscribe(&subscriber_side, &t, subscribers, None).await)
            });
            group.throughput(Throughput::Elements((per_iter * subscribers) as u64));
            group.bench_function(BenchmarkId::new(subscribers.to_string(), size), |b| {
                b.to_async(&rt).iter(|| async {
                    let target = sink.count() + (per_iter * subscribers) as u64;
                    publisher
                        .publish_batch(batch.clone())
                        .await
                        .expect("publish_batch");
                    sink.wait_for(target).await;
                });
            });
            rt.block_on(sink.stop());
        }
    }
    group.finish();

    // Consumer group: consume + ack by 1 or 4 members.
    if publisher.capabilities().consumer_groups {
        let mut group = c.benchmark_group(format!("{name}/group"));
        for members in [1_usize, 4] {
            for size in SIZES {
                let t = topic("group");
                let per_iter = messages_per_iter(size, 1);
                let batch: Vec<Message> = (0..per_iter)
                    .map(|_| Message::new(t.clone(), payload(size)))
                    .collect();
                let g = format!("{t}-g");
                let sink = rt.block_on(async {
                    Sink::start(subscribe(&subscriber_side, &t, members, Some(&g)).await)
                });
                group.throughput(Throughput::Elements(per_iter as u64));
                group.bench_function(BenchmarkId::new(members.to_string(), size), |b| {
                    b.to_async(&rt).iter(|| async {
                        let target = sink.count() + per_iter as u64;
                        publisher
                            .publish_batch(batch.clone())
                            .await
                            .expect("publish_batch");
                        sink.wait_for(target).await;
                    });
                });
                rt.block_on(sink.stop());
            }
        }
        group.finish();
    }

    // Latency at a fixed offered rate: time per iteration = mean latency
    // of one message, measured from its intended send time.
    let mut group = c.benchmark_group(format!("{name}/latency_{LATENCY_RATE}"));
    for size in SIZES {
        let t = topic("latency");
        let mut subs = rt.block_on(subscribe(&subscriber_side, &t, 1, None));
        let sub = tokio::sync::Mutex::new(subs.pop().expect("one subscriber"));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (publisher, t, sub) = (&publisher, &t, &sub);
                async move {
                    let mut sub = sub.lock().await;
                    paced_latency(publisher, &mut sub, t, size, LATENCY_RATE, iters).await
                }
            });
        });
        let sub = sub.into_inner();
        rt.block_on(async move {
            let _ = sub.close().await;
        });
    }
    group.finish();

    rt.block_on(async {
        let _ = publisher.close().await;
        let _ = subscriber_side.close().await;
    });
    drop(server);
}

/// criterion's settings for the adapter suites: short warm-up and
/// measurement, 10 samples, so a full `cargo bench` takes minutes per
/// adapter rather than hours.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
}
