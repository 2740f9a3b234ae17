//! The receive loop, the per-delivery task and the report.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::{HandlerError, Incoming, RetryPolicy};
use crate::bus::{Typed, TypedSubscriber};
use crate::delivery::{Delivery, Retry};
use crate::error::{Error, Result};

/// What a handler did, in exact counts.
///
/// Every delivery taken from the subscription ends in exactly one of
/// `handled`, `retried`, `exhausted`, `dead_lettered`, `abandoned`,
/// `unsettled` or `settle_errors`; undecodable payloads are counted in
/// `decode_failures` instead (they never reach the handler). `panicked`
/// counts the handler panics among `retried` and `exhausted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerReport {
    /// The handler returned `Ok` and the delivery was acked.
    pub handled: u64,
    /// The handler failed (or panicked) with a retryable error and the
    /// delivery was nacked as the [`RetryPolicy`] says, to come back.
    pub retried: u64,
    /// Like `retried`, but on the subscription's last attempt
    /// (`max_attempts`): the adapter dead-letters instead of redelivering.
    pub exhausted: u64,
    /// The handler failed with [`HandlerError::permanent`]: dead-lettered at
    /// once with the error's text as reason.
    pub dead_lettered: u64,
    /// Payloads that did not decode as `T`: dead-lettered with the decode
    /// error as reason, never given to the handler.
    pub decode_failures: u64,
    /// Handler panics (caught; each also counted in `retried` or `exhausted`).
    pub panicked: u64,
    /// Handler calls still running when the shutdown deadline passed: they
    /// were stopped and their deliveries dropped unsettled, so they come back
    /// to the group.
    pub abandoned: u64,
    /// Deliveries the handler kept (its [`Incoming`] outlived the call): not
    /// settled, they come back to the group once dropped.
    pub unsettled: u64,
    /// Acks or nacks the backend refused (logged); the delivery comes back.
    pub settle_errors: u64,
    /// Errors the subscription yielded other than decode failures (a gap,
    /// a backend error; logged).
    pub receive_errors: u64,
}

impl HandlerReport {
    /// Deliveries the handler was called with (or would have been, for
    /// `abandoned` ones): every count but `decode_failures`,
    /// `receive_errors` and `panicked`.
    pub fn deliveries(&self) -> u64 {
        self.handled
            + self.retried
            + self.exhausted
            + self.dead_lettered
            + self.abandoned
            + self.unsettled
            + self.settle_errors
    }
}

#[derive(Default)]
pub(super) struct Counters {
    handled: AtomicU64,
    retried: AtomicU64,
    exhausted: AtomicU64,
    dead_lettered: AtomicU64,
    decode_failures: AtomicU64,
    panicked: AtomicU64,
    abandoned: AtomicU64,
    unsettled: AtomicU64,
    settle_errors: AtomicU64,
    receive_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> HandlerReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandlerReport {
            handled: get(&self.handled),
            retried: get(&self.retried),
            exhausted: get(&self.exhausted),
            dead_lettered: get(&self.dead_lettered),
            decode_failures: get(&self.decode_failures),
            panicked: get(&self.panicked),
            abandoned: get(&self.abandoned),
            unsettled: get(&self.unsettled),
            settle_errors: get(&self.settle_errors),
            receive_errors: get(&self.receive_errors),
        }
    }
}

/// A started handler: stop it with [`shutdown`](HandlerHandle::shutdown).
///
/// Dropping the handle starts the same shutdown in the background (no
/// report then).
#[derive(Debug)]
pub struct HandlerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<HandlerReport>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl HandlerHandle {
    pub(super) fn spawn<T, F, Fut>(runner: Runner<T, F>) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Incoming<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let counters = runner.counters.clone();
        let task = tokio::spawn(runner.run(async move {
            // A send or a dropped handle: both stop.
            let _ = stopped.await;
        }));
        HandlerHandle {
            stop: Some(stop),
            task,
            counters,
        }
    }

    /// The counts so far (the handler goes on).
    pub fn report(&self) -> HandlerReport {
        self.counters.snapshot()
    }

    /// Whether the handler has stopped (after a shutdown, or because the
    /// transport was closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking deliveries now, without waiting: the calls in flight go
    /// on. [`shutdown`](Self::shutdown) then waits for them and reports.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops taking deliveries, waits for the handler calls in flight up to
    /// the shutdown deadline, abandons the rest (they come back to the
    /// group), closes the subscription and returns the final counts.
    pub async fn shutdown(mut self) -> Result<HandlerReport> {
        self.stop();
        (&mut self.task).await.map_err(|e| {
            Error::Backend(format!(
                "the handler's receive loop ended abnormally ({e}); unsettled deliveries come back to the group"
            ))
        })
    }
}

pub(super) struct Runner<T, F> {
    pub(super) subscriber: TypedSubscriber<T>,
    pub(super) handler: Arc<F>,
    pub(super) concurrency: usize,
    pub(super) retry: RetryPolicy,
    pub(super) shutdown_deadline: Duration,
    pub(super) keep_alive: Option<Duration>,
    pub(super) max_attempts: u32,
    pub(super) counters: Arc<Counters>,
}

impl<T, F, Fut> Runner<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Incoming<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
{
    pub(super) async fn run(self, shutdown: impl Future<Output = ()> + Send) -> HandlerReport {
        let Runner {
            mut subscriber,
            handler,
            concurrency,
            retry,
            shutdown_deadline,
            keep_alive,
            max_attempts,
            counters,
        } = self;
        let mut shutdown = pin!(shutdown);
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        loop {
            // A free slot first: a delivery is only taken when a handler
            // call can start on it at once.
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let item = tokio::select! {
                biased;
                () = &mut shutdown => break,
                item = subscriber.recv() => item,
            };
            while let Some(done) = tasks.try_join_next() {
                note_join(done, &counters);
            }
            let typed = match item {
                None => break,
                Some(Ok(typed)) => typed,
                Some(Err(Error::Codec { .. })) => {
                    // Already dead-lettered (group mode) and logged by the
                    // typed subscriber.
                    bump(&counters.decode_failures);
                    continue;
                }
                Some(Err(e)) => {
                    bump(&counters.receive_errors);
                    tracing::warn!(error = %e, "handler: the subscription yielded an error; going on");
                    continue;
                }
            };
            let job = Job {
                handler: handler.clone(),
                retry,
                keep_alive,
                max_attempts,
                counters: counters.clone(),
            };
            tasks.spawn(async move {
                job.process(typed).await;
                drop(permit);
            });
        }

        // Drain: no new deliveries; the calls in flight get until the deadline.
        let deadline = tokio::time::Instant::now() + shutdown_deadline;
        loop {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(done)) => note_join(done, &counters),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        running = tasks.len(),
                        deadline = ?shutdown_deadline,
                        "handler: shutdown deadline passed; abandoning the calls still running (their deliveries come back)"
                    );
                    tasks.abort_all();
                    while let Some(done) = tasks.join_next().await {
                        note_join(done, &counters);
                    }
                    break;
                }
            }
        }
        if let Err(e) = subscriber.close().await {
            tracing::warn!(error = %e, "handler: closing the subscription failed; unsettled deliveries come back after the ack timeout");
        }
        counters.snapshot()
    }
}

fn note_join(done: std::result::Result<(), tokio::task::JoinError>, counters: &Counters) {
    match done {
        Ok(()) => {}
        Err(e) if e.is_cancelled() => bump(&counters.abandoned),
        Err(e) => {
            // Panics are caught inside the task; this is a panic while
            // settling, which leaves the delivery unsettled.
            bump(&counters.settle_errors);
            tracing::error!(error = %e, "handler: a delivery task failed while settling; the delivery comes back");
        }
    }
}

struct Job<F> {
    handler: Arc<F>,
    retry: RetryPolicy,
    keep_alive: Option<Duration>,
    max_attempts: u32,
    counters: Arc<Counters>,
}

impl<F> Job<F> {
    async fn process<T, Fut>(self, typed: Typed<T>)
    where
        F: Fn(Incoming<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        let Typed { value, delivery } = typed;
        let delivery = Arc::new(delivery);
        let incoming = Incoming {
            value,
            delivery: delivery.clone(),
        };
        let handler = self.handler.clone();
        // The call itself inside the future, so that a panic while
        // building the future is caught too.
        let call = AssertUnwindSafe(async move { handler(incoming).await }).catch_unwind();
        let outcome = match self.keep_alive {
            None => call.await,
            Some(every) => {
                let mut call = pin!(call);
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        out = &mut call => break out,
                        _ = ticks.tick() => {
                            if let Err(e) = delivery.in_progress().await {
                                tracing::warn!(error = %e, id = %delivery.id(), "handler: in_progress failed; another member may take the message over");
                            }
                        }
                    }
                }
            }
        };
        let Ok(delivery) = Arc::try_unwrap(delivery) else {
            bump(&self.counters.unsettled);
            tracing::warn!(
                "handler: the handler kept its Incoming past the call; the delivery is not settled and comes back once dropped"
            );
            return;
        };
        self.settle(delivery, outcome).await;
    }

    async fn settle(
        &self,
        delivery: Delivery,
        outcome: std::thread::Result<std::result::Result<(), HandlerError>>,
    ) {
        let attempt = delivery.attempt();
        let id = delivery.id();
        let (settled, counter) = match outcome {
            Ok(Ok(())) => (delivery.ack().await, &self.counters.handled),
            Ok(Err(e)) if e.is_permanent() => {
                tracing::info!(%id, error = %e, "handler: permanent failure; dead-lettering");
                (
                    delivery.nack(Retry::DeadLetter(e.to_string())).await,
                    &self.counters.dead_lettered,
                )
            }
            failed => {
                match &failed {
                    Ok(Err(e)) => {
                        tracing::debug!(%id, attempt, error = %e, "handler: failed; retrying")
                    }
                    _ => {
                        bump(&self.counters.panicked);
                        tracing::error!(%id, attempt, "handler: panicked; retrying like a failure");
                    }
                }
                let counter = if delivery.needs_ack() && attempt >= self.max_attempts {
                    &self.counters.exhausted
                } else {
                    &self.counters.retried
                };
                (delivery.nack(self.retry.retry(attempt)).await, counter)
            }
        };
        match settled {
            Ok(()) => bump(counter),
            Err(e) => {
                bump(&self.counters.settle_errors);
                tracing::warn!(%id, error = %e, "handler: settling failed; the delivery comes back");
            }
        }
    }
}
