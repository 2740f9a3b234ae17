//! Throughput of the in-memory adapter: publish (one message, a batch of
//! 100) and fan-out to 1 and 10 subscribers, 256-byte payloads.
//!
//! `cargo bench -p switchyard-benches --bench memory` for a full run,
//! `cargo bench -p switchyard-benches -- --test` to run each bench once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard::{Bytes, Message, Subscriber, Subscription, Topic, Transport};

const PAYLOAD: usize = 256;
const BATCH: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn message(topic: &Topic) -> Message {
    Message::new(topic.clone(), Bytes::from(vec![0x5a_u8; PAYLOAD]))
}

async fn memory() -> Arc<dyn Transport> {
    switchyard::connect("memory://").await.expect("memory://")
}

fn publish(c: &mut Criterion) {
    let rt = runtime();
    let transport = rt.block_on(memory());
    let topic = Topic::new("bench.publish").unwrap();
    let msg = message(&topic);
    let batch: Vec<Message> = (0..BATCH).map(|_| msg.clone()).collect();

    let mut group = c.benchmark_group("memory/publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(transport.publish(msg.clone()).await.unwrap()) });
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_100", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(transport.publish_batch(batch.clone()).await.unwrap()) });
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory/fanout");
    for subscribers in [1_usize, 10] {
        let transport = rt.block_on(memory());
        let topic = Topic::new(format!("bench.fanout.{subscribers}")).unwrap();
        let batch: Vec<Message> = (0..BATCH).map(|_| message(&topic)).collect();
        let subs: Vec<Box<dyn Subscriber>> = rt.block_on(async {
            let mut subs = Vec::new();
            for _ in 0..subscribers {
                let sub = Subscription::new(topic.clone()).buffer(4 * BATCH);
                subs.push(transport.subscribe(sub).await.unwrap());
            }
            subs
        });
        // Shared with each iteration's future (uncontended lock).
        let subs = Arc::new(tokio::sync::Mutex::new(subs));
        // Deliveries counted: every subscriber receives every message.
        group.throughput(Throughput::Elements((BATCH * subscribers) as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.to_async(&rt).iter(|| {
                let batch = batch.clone();
                let transport = &transport;
                let subs = subs.clone();
                async move {
                    transport.publish_batch(batch).await.unwrap();
                    for sub in subs.lock().await.iter_mut() {
                        let mut got = 0;
                        while got < BATCH {
                            let items = sub.recv_batch(BATCH - got, Duration::from_secs(5)).await;
                            assert!(!items.is_empty(), "fan-out delivery stalled");
                            got += items.len();
                            black_box(items);
                        }
                    }
                }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = publish, fanout
}
criterion_main!(benches);
