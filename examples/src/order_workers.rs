//! Order workers: a consumer group with retries, back-off, dead letters and
//! an operator replaying the dead letters after a fix, so that in the end
//! every order is processed exactly once.
//!
//! - The order service publishes [`ORDERS`] [`OrderCreated`] events on
//!   `orders.created`. The service, the workers and the operator each use a
//!   transport of their own, as separate processes would.
//! - A group of [`WORKERS`] workers (`fulfilment`) shares them. Each worker
//!   is a handler ([`Bus::handle`]): the function `handle` gets one
//!   decoded order and returns `Ok` (acked) or a [`HandlerError`]; the
//!   handler API does the receiving, settling and stopping:
//!   - orders whose payment gateway answers "busy" ([`is_transient`]) fail
//!     twice with a retryable error: the handler nacks them with
//!     `Retry::After(backoff)` by its [`retry_policy`], 50 ms then 100 ms;
//!     the third attempt works;
//!   - poison orders (unknown SKU, [`is_poison`]) fail with
//!     [`HandlerError::permanent`]: dead-lettered at once with the reason;
//!   - an order whose warehouse is down ([`is_stuck`]) fails on every
//!     attempt until the subscription's `max_attempts` ([`MAX_ATTEMPTS`]) is
//!     reached, and the adapter dead-letters it.
//! - Dead letters land on `orders.created:dlq`, with the reason and the
//!   attempt count in headers (`header::DLQ_*`).
//! - An operator reads them, "deploys a fix", republishes each original
//!   payload (and its application headers) to `orders.created` with the
//!   header [`FIXED_HEADER`], then acks the dead letter. The workers process
//!   the replays.
//! - Workers deduplicate by order id: at-least-once delivery may hand an
//!   order over twice, it is processed once.
//!
//! Needs consumer groups: the Redis Pub/Sub backplane is refused with a
//! clear error. [`run_until`] stops early when its future resolves (the
//! example binary passes [`shutdown_signal`]): the workers stop taking
//! orders and finish the ones in hand within [`SHUTDOWN_DEADLINE`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use switchyard::prelude::*;

use crate::{PHASE_TIMEOUT, close_all, connect_as, lock, shared_url, wait_until};

/// The topic the order service publishes on.
pub const TOPIC: &str = "orders.created";
/// Orders the service publishes.
pub const ORDERS: u64 = 20;
/// Workers in the group.
pub const WORKERS: usize = 3;
/// Deliveries of one message before the adapter dead-letters it.
pub const MAX_ATTEMPTS: u32 = 3;
/// Failures of a transient order before it goes through.
pub const TRANSIENT_FAILURES: u32 = 2;
/// First retry delay; doubled with every further attempt.
pub const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the workers get to finish the orders in hand when stopped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// Header the operator sets on a replayed order.
pub const FIXED_HEADER: &str = "x-fixed-by";

/// An order, as the order service publishes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OrderCreated {
    /// Unique order id.
    pub id: u64,
    /// What was ordered.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Every fifth order meets a busy payment gateway: it fails
/// [`TRANSIENT_FAILURES`] times, then succeeds.
pub const fn is_transient(id: u64) -> bool {
    id.is_multiple_of(5)
}

/// Orders 7 and 14 carry an unknown SKU: processing them can never work
/// until the catalogue is fixed.
pub const fn is_poison(id: u64) -> bool {
    id == 7 || id == 14
}

/// Order 13's warehouse is down until the fix: it fails on every attempt.
pub const fn is_stuck(id: u64) -> bool {
    id == 13
}

/// The workers' retry policy: exponential back-off from the attempt
/// number, 50 ms, 100 ms, 200 ms, ... up to [`MAX_BACKOFF`].
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::exponential(BASE_BACKOFF, MAX_BACKOFF)
}

/// The delay [`retry_policy`] nacks attempt `attempt` with.
pub fn backoff(attempt: u32) -> Duration {
    match retry_policy().retry(attempt) {
        Retry::After(delay) => delay,
        _ => Duration::ZERO,
    }
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// Orders published.
    pub orders: u64,
    /// Orders processed (each exactly once).
    pub processed: u64,
    /// Of those, processed on their first delivery.
    pub first_try: u64,
    /// Of those, processed after one or more retries.
    pub after_retries: u64,
    /// Of those, processed after the operator replayed them.
    pub after_replay: u64,
    /// Retries requested with `nack(Retry::After(backoff))` that led to
    /// another delivery (the handlers' [`HandlerReport::retried`]).
    pub retried: u64,
    /// Orders dead-lettered (by the workers or by `max_attempts`).
    pub dead_lettered: u64,
    /// Of those, dead-lettered by the adapter after `max_attempts`.
    pub dead_lettered_by_max_attempts: u64,
    /// Dead letters the operator replayed.
    pub replayed: u64,
    /// Deliveries of an already processed order, acked and skipped.
    pub duplicates: u64,
    /// Orders processed per worker.
    pub per_worker: Vec<(String, u64)>,
    /// One line per replayed dead letter: order, attempts and reason.
    pub replay_log: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "order_workers on {}:", self.adapter)?;
        writeln!(f, "  orders:        {}", self.orders)?;
        writeln!(
            f,
            "  processed:     {} (each order exactly once: {} first try, {} after retries, {} after replay)",
            self.processed, self.first_try, self.after_retries, self.after_replay
        )?;
        writeln!(f, "  retried:       {} (nack After(backoff))", self.retried)?;
        writeln!(
            f,
            "  dead-lettered: {} ({} after max_attempts={MAX_ATTEMPTS})",
            self.dead_lettered, self.dead_lettered_by_max_attempts
        )?;
        writeln!(f, "  replayed:      {}", self.replayed)?;
        writeln!(f, "  duplicates:    {}", self.duplicates)?;
        let per: Vec<String> = self
            .per_worker
            .iter()
            .map(|(w, n)| format!("{w}={n}"))
            .collect();
        write!(f, "  per worker:    {}", per.join(", "))?;
        for line in &self.replay_log {
            write!(f, "\n  operator: {line}")?;
        }
        Ok(())
    }
}

/// How an order got processed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    FirstTry,
    AfterRetries,
    AfterReplay,
}

/// What the workers share.
#[derive(Default)]
struct Books {
    /// Order id -> how it was processed.
    processed: HashMap<u64, How>,
    per_worker: Vec<u64>,
    /// Orders the workers dead-lettered themselves.
    poisoned: HashSet<u64>,
    duplicates: u64,
}

/// Runs the example against `url` (a `memory://` URL becomes a named hub
/// and a Redis URL gets a fresh namespace, see [`shared_url`]). Fails with a
/// clear error on an adapter without consumer groups or dead letters. Every
/// wait is bounded by [`PHASE_TIMEOUT`].
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    run_until(url, std::future::pending()).await
}

/// Like [`run`], but stops early when `stop` resolves (for example on
/// SIGINT or SIGTERM, [`shutdown_signal`]): the workers stop taking orders,
/// finish the ones in hand within [`SHUTDOWN_DEADLINE`] (what is left comes
/// back to the group), and the run fails with an error that says so.
pub async fn run_until(url: &str, stop: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    let url = shared_url(url, "orders");
    let service = connect_as(&url, "order service").await?;
    let caps = service.capabilities();
    if !caps.consumer_groups || !caps.dead_letters {
        bail!(
            "order_workers needs consumer groups and dead letters, which the {} adapter does not have \
             (capabilities: consumer_groups={}, dead_letters={}); use memory:// or redis+streams://",
            service.name(),
            caps.consumer_groups,
            caps.dead_letters
        );
    }
    let workers_transport = connect_as(&url, "workers").await?;
    let operator = connect_as(&url, "operator").await?;
    let service_bus = Bus::new(service.clone());
    let topic = Topic::new(TOPIC)?;
    let dlq = topic.dead_letter()?;

    let books = Arc::new(Mutex::new(Books {
        per_worker: vec![0; WORKERS],
        ..Books::default()
    }));
    // Dropping a handle (on an early return too) stops its worker.
    let mut workers: Vec<HandlerHandle> = Vec::new();
    let workers_bus = Bus::new(workers_transport.clone());
    for index in 0..WORKERS {
        let books = books.clone();
        let worker = workers_bus
            .handle(
                Subscription::new(topic.clone())
                    .group_member("fulfilment", format!("worker-{}", index + 1))
                    .max_attempts(MAX_ATTEMPTS)
                    .ack_timeout(Duration::from_secs(10)),
                move |order: Incoming<OrderCreated>| {
                    let outcome = handle(index, &order, &books);
                    async move { outcome }
                },
            )
            .retry(retry_policy())
            .shutdown_deadline(SHUTDOWN_DEADLINE)
            .spawn()
            .await?;
        workers.push(worker);
    }
    // The operator's view of the dead letters: a group, so that each dead
    // letter is acked once it was dealt with.
    let mut dead_letters = operator
        .subscribe(
            Subscription::new(dlq.clone())
                .group_member("operators", "operator-1")
                .start(Start::Earliest),
        )
        .await?;

    let outcome = {
        let script = script(
            &topic,
            &service,
            &service_bus,
            &operator,
            &mut dead_letters,
            &books,
            &workers,
        );
        tokio::select! {
            outcome = script => outcome,
            () = stop => Err(anyhow!(
                "stopped before the end: the workers stop taking orders and finish the ones in hand within {SHUTDOWN_DEADLINE:?}"
            )),
        }
    };

    // Stop the workers: no new orders, the ones in hand finished.
    let mut retried = 0;
    let mut stopped = Ok(());
    for (index, worker) in workers.into_iter().enumerate() {
        match worker.shutdown().await {
            Ok(report) => retried += report.retried,
            Err(e) => {
                stopped =
                    Err(anyhow::Error::from(e).context(format!("stopping worker-{}", index + 1)))
            }
        }
    }
    let closed = dead_letters.close().await;
    let closed_all = close_all(&[&service, &workers_transport, &operator]).await;
    let (by_max_attempts, replayed, replay_log) = outcome?;
    stopped?;
    closed?;
    closed_all?;

    let b = lock(&books);
    let count = |how: How| b.processed.values().filter(|h| **h == how).count() as u64;
    Ok(Summary {
        adapter: service.name(),
        orders: ORDERS,
        processed: b.processed.len() as u64,
        first_try: count(How::FirstTry),
        after_retries: count(How::AfterRetries),
        after_replay: count(How::AfterReplay),
        retried,
        dead_lettered: EXPECTED_DEAD_LETTERS,
        dead_lettered_by_max_attempts: by_max_attempts,
        replayed,
        duplicates: b.duplicates,
        per_worker: (1..=WORKERS)
            .map(|i| format!("worker-{i}"))
            .zip(b.per_worker.iter().copied())
            .collect(),
        replay_log,
    })
}

/// Anything the handlers could not do (settle, decode, receive) or a
/// handler panic: the example expects none.
fn trouble(workers: &[HandlerHandle]) -> anyhow::Result<()> {
    for (index, worker) in workers.iter().enumerate() {
        let r = worker.report();
        if r.settle_errors + r.decode_failures + r.receive_errors + r.panicked + r.unsettled > 0 {
            bail!("worker-{} failed: {r:?}", index + 1);
        }
    }
    Ok(())
}

/// The service publishes, the workers work, the operator replays the dead
/// letters; returns (dead-lettered by max_attempts, replayed, replay log).
async fn script(
    topic: &Topic,
    service: &Arc<dyn Transport>,
    service_bus: &Bus,
    operator: &Arc<dyn Transport>,
    dead_letters: &mut Box<dyn Subscriber>,
    books: &Mutex<Books>,
    workers: &[HandlerHandle],
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    // The order service.
    for id in 1..=ORDERS {
        let order = OrderCreated {
            id,
            sku: if is_poison(id) {
                format!("SKU-UNKNOWN-{id}")
            } else {
                format!("SKU-{}", 100 + id % 4)
            },
            quantity: 1 + u32::try_from(id % 3).unwrap_or(0),
        };
        let message = service_bus
            .message(topic, &order)?
            .with_header("tenant", "acme");
        service.publish(message).await?;
    }

    // Phase 1: every order is either processed or dead-lettered.
    let mut letters: Vec<Delivery> = Vec::new();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    loop {
        trouble(workers)?;
        if lock(books).processed.len() as u64 + letters.len() as u64 >= ORDERS {
            break;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {PHASE_TIMEOUT:?}: {} orders processed and {} dead-lettered of {ORDERS}",
                lock(books).processed.len(),
                letters.len()
            );
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        for item in dead_letters.recv_batch(16, wait).await {
            letters.push(item.context("reading the dead letters")?);
        }
    }
    if letters.len() as u64 != EXPECTED_DEAD_LETTERS {
        bail!(
            "expected {EXPECTED_DEAD_LETTERS} dead letters, got {}",
            letters.len()
        );
    }

    // Phase 2: the operator deploys the fix and replays every dead letter.
    let mut by_max_attempts = 0;
    let mut replayed = 0;
    let mut replay_log = Vec::new();
    for letter in letters {
        let reason = letter.headers().get(header::DLQ_REASON).unwrap_or("?");
        let attempts = letter.headers().get(header::DLQ_ATTEMPTS).unwrap_or("?");
        let order: OrderCreated = service_bus
            .codec()
            .decode(letter.payload())
            .context("a dead letter that is not an order")?;
        if !lock(books).poisoned.contains(&order.id) {
            by_max_attempts += 1;
        }
        replay_log.push(format!(
            "order {} dead-lettered after {attempts} attempt(s) ({reason}): replayed",
            order.id
        ));
        // The original payload and application headers (not the reserved
        // `sy-` ones the dead-lettering added), back on the original topic.
        let mut headers = Headers::new();
        for (key, value) in letter.headers().iter() {
            if !key.starts_with(header::RESERVED_PREFIX) {
                headers.insert(key, value);
            }
        }
        let replay = Message::new(topic.clone(), letter.payload().clone())
            .with_headers(headers)
            .with_header(FIXED_HEADER, "operator");
        operator.publish(replay).await?;
        // Only now: a crash before this line leaves the dead letter pending.
        letter.ack().await?;
        replayed += 1;
    }

    // Phase 3: every order processed.
    wait_until(
        PHASE_TIMEOUT,
        || trouble(workers).is_err() || lock(books).processed.len() as u64 >= ORDERS,
        || {
            format!(
                "{} of {ORDERS} orders processed after the replay",
                lock(books).processed.len()
            )
        },
    )
    .await?;
    trouble(workers)?;
    Ok((by_max_attempts, replayed, replay_log))
}

/// Dead letters expected: the poison orders and the stuck one.
pub const EXPECTED_DEAD_LETTERS: u64 = {
    let mut n = 0;
    let mut id = 1;
    while id <= ORDERS {
        if is_poison(id) || is_stuck(id) {
            n += 1;
        }
        id += 1;
    }
    n
};

/// Processes one order (one handler call of worker `index`): skip a
/// duplicate, dead-letter poison, fail (to be retried with back-off) on a
/// transient problem, else record it. `Ok` acks.
fn handle(
    index: usize,
    order: &Incoming<OrderCreated>,
    books: &Mutex<Books>,
) -> Result<(), HandlerError> {
    let id = order.value.id;
    let fixed = order.headers().get(FIXED_HEADER).is_some();
    let attempt = order.attempt();

    let mut b = lock(books);
    if b.processed.contains_key(&id) {
        // Already done (at-least-once redelivery): skip, but settle it.
        b.duplicates += 1;
        return Ok(());
    }
    if is_poison(id) && !fixed {
        b.poisoned.insert(id);
        return Err(HandlerError::permanent(format!(
            "unknown SKU {}",
            order.value.sku
        )));
    }
    if is_transient(id) && attempt <= TRANSIENT_FAILURES {
        return Err(format!("order {id}: payment gateway busy").into());
    }
    if is_stuck(id) && !fixed {
        return Err(format!("order {id}: warehouse down").into());
    }
    // Process: record it once; the handler acks.
    let how = if fixed {
        How::AfterReplay
    } else if attempt > 1 {
        How::AfterRetries
    } else {
        How::FirstTry
    };
    if b.processed.insert(id, how).is_some() {
        b.duplicates += 1;
    } else if let Some(n) = b.per_worker.get_mut(index) {
        *n += 1;
    }
    Ok(())
}
