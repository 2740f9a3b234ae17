//! The publishers: flat out (throughput modes) and paced at a fixed
//! offered rate (latency mode).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use switchyard::{Message, Topic, Transport};
use tokio::task::JoinSet;

use super::check::encode;
use super::runner::Shared;
use super::{BenchArgs, Limit};

/// Latency mode fails when this many publishes are in flight at once: the
/// backend cannot keep up with the offered rate.
const MAX_IN_FLIGHT: usize = 100_000;

/// `--publishers` tasks publish as fast as the transport accepts.
pub(super) async fn flat_out_publish(
    args: &BenchArgs,
    limit: Limit,
    topics: &Arc<[Topic]>,
    size: usize,
    transport: &Arc<dyn Transport>,
    shared: &Arc<Shared>,
) -> anyhow::Result<u64> {
    let mut tasks = JoinSet::new();
    for _ in 0..args.publishers {
        let transport = transport.clone();
        let shared = shared.clone();
        let topics = topics.clone();
        let batch = args.batch;
        tasks.spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                let count = match limit {
                    Limit::Until(deadline) if Instant::now() >= deadline => break,
                    Limit::Until(_) => batch,
                    Limit::Count(n) => {
                        let claimed = shared.next_seq.load(Ordering::Relaxed);
                        if claimed >= n {
                            break;
                        }
                        batch.min(n - claimed)
                    }
                };
                let first = shared.next_seq.fetch_add(count, Ordering::Relaxed);
                let count = match limit {
                    Limit::Count(n) if first >= n => break,
                    Limit::Count(n) => count.min(n - first),
                    Limit::Until(_) => count,
                };
                let sent = shared.since_epoch_ns();
                let message = |seq: u64| {
                    let topic = &topics[usize::try_from(seq % topics.len() as u64).unwrap_or(0)];
                    Message::new(topic.clone(), encode(seq, sent, size))
                };
                let result = if count == 1 {
                    transport.publish(message(first)).await.map(|_| ())
                } else {
                    let batch: Vec<Message> = (first..first + count).map(message).collect();
                    transport.publish_batch(batch).await.map(|_| ())
                };
                if let Err(e) = result {
                    shared.fail(format!("publishing message #{first} failed: {e}"));
                    break;
                }
                shared.published.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            shared.fail(format!("a publishing task crashed: {e}"));
        }
    }
    if let Some(failure) = shared.failure() {
        bail!(failure);
    }
    Ok(shared.published.load(Ordering::SeqCst))
}

/// Latency mode: `--publishers` pacing threads share the offered `--rate`.
/// Message `i` is due at `start + i / rate` and carries that due time;
/// each is handed to the runtime as its own publish so a slow publish
/// does not delay the next ones.
pub(super) async fn paced_publish(
    args: &BenchArgs,
    limit: Limit,
    topics: &Arc<[Topic]>,
    size: usize,
    transport: &Arc<dyn Transport>,
    shared: &Arc<Shared>,
) -> anyhow::Result<u64> {
    let total = match limit {
        Limit::Count(n) => n,
        Limit::Until(deadline) => {
            let secs = deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            // Truncation is intended: whole messages.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (secs * args.rate as f64).ceil() as u64;
            n.max(1)
        }
    };
    let interval_ns = 1e9 / args.rate as f64;
    let start_ns = shared.since_epoch_ns() + 1_000_000;
    let handle = tokio::runtime::Handle::current();
    let mut pacers = JoinSet::new();
    for p in 0..args.publishers {
        let shared = shared.clone();
        let topics = topics.clone();
        let transport = transport.clone();
        let handle = handle.clone();
        let step = args.publishers;
        let rate = args.rate;
        pacers.spawn_blocking(move || {
            let mut seq = p;
            while seq < total && !shared.stop.load(Ordering::Relaxed) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = start_ns + (seq as f64 * interval_ns) as u64;
                let now = shared.since_epoch_ns();
                if due > now {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    shared.fail(format!(
                        "the transport cannot keep up with {rate} msg/s: {MAX_IN_FLIGHT} publishes in flight"
                    ));
                    break;
                }
                let topic = topics[usize::try_from(seq % topics.len() as u64).unwrap_or(0)].clone();
                let message = Message::new(topic, encode(seq, due, size));
                let transport = transport.clone();
                let shared = shared.clone();
                handle.spawn(async move {
                    match transport.publish(message).await {
                        Ok(_) => {
                            shared.published.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => shared.fail(format!("publishing message #{seq} failed: {e}")),
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
                seq += step;
            }
        });
    }
    while let Some(joined) = pacers.join_next().await {
        if let Err(e) = joined {
            shared.fail(format!("a pacing thread crashed: {e}"));
        }
    }
    // Wait for the publishes still in flight.
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while shared.in_flight.load(Ordering::SeqCst) > 0 && !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() >= deadline {
            shared.fail(format!(
                "{} publishes still unanswered after {}s",
                shared.in_flight.load(Ordering::SeqCst),
                args.timeout
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(failure) = shared.failure() {
        bail!(failure);
    }
    Ok(shared.published.load(Ordering::SeqCst))
}
