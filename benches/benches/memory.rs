//! The in-memory adapter (`memory://`) through the shared suite (see
//! `switchyard_benches::suite`), next to its raw baseline: a
//! `tokio::sync::broadcast` fan-out and a `tokio::sync::mpsc` channel carrying
//! the same payloads.
//!
//! `cargo bench -p switchyard-benches --bench memory` for a full run,
//! `cargo bench -p switchyard-benches -- --test` to run each bench once.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard::Bytes;
use switchyard_benches::{Adapter, SIZES, config, messages_per_iter, payload, runtime, suite};

fn memory(c: &mut Criterion) {
    suite(c, Adapter::Memory);
}

/// `tokio::sync::broadcast` fan-out to 1/10/100 receivers and an `mpsc`
/// channel: the raw limit of an in-process hub on this machine.
fn tokio_baseline(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tokio/broadcast");
    for receivers in [1_usize, 10, 100] {
        for size in SIZES {
            let per_iter = messages_per_iter(size, receivers);
            let body = payload(size);
            group.throughput(Throughput::Elements((per_iter * receivers) as u64));
            group.bench_function(BenchmarkId::new(receivers.to_string(), size), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let body = body.clone();
                    async move { broadcast(receivers, per_iter, iters, body).await }
                });
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("tokio/mpsc");
    for size in SIZES {
        let body = payload(size);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let body = body.clone();
                async move {
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4096);
                    let reader = tokio::spawn(async move {
                        let mut n = 0_u64;
                        while rx.recv().await.is_some() {
                            n += 1;
                        }
                        n
                    });
                    let started = std::time::Instant::now();
                    for _ in 0..iters {
                        tx.send(body.clone()).await.unwrap();
                    }
                    drop(tx);
                    assert_eq!(reader.await.unwrap(), iters);
                    started.elapsed()
                }
            });
        });
    }
    group.finish();
}

/// `iters` rounds of `per_iter` messages sent to `receivers` receivers
/// that each read every one.
async fn broadcast(
    receivers: usize,
    per_iter: usize,
    iters: u64,
    body: Bytes,
) -> std::time::Duration {
    let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(4096);
    let total = iters * per_iter as u64;
    let readers: Vec<_> = (0..receivers)
        .map(|_| {
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let mut n = 0;
                while n < total {
                    match rx.recv().await {
                        Ok(_) => n += 1,
                        Err(e) => panic!("broadcast receiver: {e}"),
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < total {
        // Lossless like the adapter's Block policy: wait for room.
        while tx.len() >= 4000 {
            tokio::task::yield_now().await;
        }
        tx.send(body.clone()).unwrap();
        sent += 1;
    }
    for r in readers {
        r.await.unwrap();
    }
    started.elapsed()
}

criterion_group! {
    name = benches;
    config = config();
    targets = memory, tokio_baseline
}
criterion_main!(benches);
