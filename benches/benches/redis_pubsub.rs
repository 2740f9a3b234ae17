//! The redis pubsub adapter through the shared suite (see
//! `switchyard_benches::suite`), against a `redis-server` the bench starts
//! on a free loopback port (never a shared server).
//!
//! `cargo bench -p switchyard-benches --bench redis_pubsub` for a full run,
//! `cargo bench -p switchyard-benches -- --test` to run each bench once.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_benches::{Adapter, config, suite};

fn redis_pubsub(c: &mut Criterion) {
    suite(c, Adapter::RedisPubsub);
}

criterion_group! {
    name = benches;
    config = config();
    targets = redis_pubsub
}
criterion_main!(benches);
