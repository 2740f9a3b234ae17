//! Handlers: the receive loop every consumer writes, written once.
//!
//! [`Bus::handle`] takes a [`Subscription`] and an async function from an
//! [`Incoming<T>`] to `Result<(), HandlerError>` and returns a [`Handler`]
//! builder. Started with [`Handler::spawn`] (or [`Handler::run_until`]), it
//!
//! - subscribes and decodes every payload as `T`; a payload that does not
//!   decode is dead-lettered with `decode error: ...` as reason (by
//!   [`TypedSubscriber`](crate::TypedSubscriber)) and counted, never lost and
//!   never a panic;
//! - runs up to [`concurrency`](Handler::concurrency) handler calls at once,
//!   each in a task of its own; it takes the next delivery from the
//!   subscription only when a slot is free, so at most `concurrency`
//!   deliveries are in the handler's hands (the subscription's
//!   [`buffer`](Subscription::buffer) and
//!   [`max_in_flight`](Subscription::max_in_flight) bound what is read ahead);
//! - settles each delivery by what the handler returned: `Ok` acks, a
//!   retryable [`HandlerError`] nacks as the [`RetryPolicy`] says (`Retry::Now`
//!   or `Retry::After(delay)`; on the subscription's last attempt the adapter
//!   dead-letters it), a [`HandlerError::permanent`] one is dead-lettered at
//!   once with the error's text as reason, and a panic is caught and treated
//!   as a retryable failure;
//! - keeps long work alive: in group mode it calls
//!   [`Delivery::in_progress`](crate::Delivery::in_progress) every half
//!   [`ack_timeout`](Subscription::ack_timeout) while the handler runs (see
//!   [`Handler::keep_alive`]), so no other member takes the message over; the
//!   handler may also call [`Incoming::in_progress`] itself;
//! - on shutdown stops taking deliveries, waits for the handler calls in
//!   flight up to the [`shutdown_deadline`](Handler::shutdown_deadline),
//!   abandons what is still running (dropped deliveries come back to the
//!   group, never lost), closes the subscription (read-ahead deliveries go
//!   back to the group too) and returns a [`HandlerReport`] with exact counts.
//!
//! On a fan-out subscription (no group) settling is a no-op: nothing is
//! redelivered or dead-lettered, and the report counts what the handler
//! returned.
//!
//! [`shutdown_signal`] resolves on SIGINT (Ctrl-C) or SIGTERM, for services
//! that stop on a signal: `handler.run_until(shutdown_signal())`.
//!
//! ```
//! # async fn demo(transport: std::sync::Arc<dyn switchyard_core::Transport>) -> switchyard_core::Result<()> {
//! use std::time::Duration;
//! use switchyard_core::{Bus, HandlerError, Incoming, RetryPolicy, Subscription, Topic};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct OrderCreated { id: u64, sku: String }
//!
//! let bus = Bus::new(transport);
//! let topic = Topic::new("orders.created")?;
//! let handler = bus
//!     .handle(
//!         Subscription::new(topic.clone()).group("fulfilment").max_attempts(5),
//!         |order: Incoming<OrderCreated>| async move {
//!             if order.value.sku.is_empty() {
//!                 // Never going to work: dead-letter it now.
//!                 return Err(HandlerError::permanent(format!("order {} has no SKU", order.value.id)));
//!             }
//!             // Any other error is retried, after 100 ms, 200 ms, 400 ms, ...
//!             Ok(())
//!         },
//!     )
//!     .concurrency(16)
//!     .retry(RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(5)))
//!     .shutdown_deadline(Duration::from_secs(10))
//!     .spawn()
//!     .await?;
//! bus.publish(&topic, &OrderCreated { id: 1, sku: "SKU-1".into() }).await?;
//! // ... later, or on SIGTERM:
//! let report = handler.shutdown().await?;
//! assert!(report.handled <= 1);
//! # Ok(()) }
//! ```

mod policy;
mod run;
mod signal;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::bus::Bus;
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::message::Headers;
use crate::subscription::Subscription;
use crate::topic::Topic;

pub use policy::{Failure, HandlerError, RetryPolicy};
pub use run::{HandlerHandle, HandlerReport};
pub use signal::{Signal, shutdown_signal};

/// One decoded delivery, handed to a handler.
///
/// The handler reads the value (and the headers, attempt number, topic) and
/// returns; the runner settles the delivery by the result. Keep it no longer
/// than the handler call: a delivery still shared when the handler returned
/// cannot be settled, is counted in [`HandlerReport::unsettled`] and comes
/// back to the group once dropped.
#[derive(Debug)]
#[non_exhaustive]
pub struct Incoming<T> {
    /// The decoded payload.
    pub value: T,
    delivery: Arc<Delivery>,
}

impl<T> Incoming<T> {
    /// The delivery it came in (headers, id, attempt; settling is the
    /// runner's job).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// 1 on the first delivery, then 2, 3, ... on redeliveries.
    pub fn attempt(&self) -> u32 {
        self.delivery.attempt()
    }

    /// The message's headers.
    pub fn headers(&self) -> &Headers {
        self.delivery.headers()
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &Topic {
        self.delivery.topic()
    }

    /// Restarts the ack timeout now (see [`Handler::keep_alive`] for the
    /// automatic one). A no-op on fan-out subscriptions.
    pub async fn in_progress(&self) -> Result<()> {
        self.delivery.in_progress().await
    }

    /// The decoded payload, dropping the rest.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// A handler being configured: built by [`Bus::handle`], started by
/// [`spawn`](Handler::spawn) or [`run_until`](Handler::run_until).
#[must_use = "a handler does nothing until spawn() or run_until() is awaited"]
pub struct Handler<T, F> {
    bus: Bus,
    subscription: Subscription,
    handler: F,
    concurrency: usize,
    retry: RetryPolicy,
    shutdown_deadline: Duration,
    keep_alive: KeepAlive,
    _marker: PhantomData<fn() -> T>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeepAlive {
    /// Half the subscription's ack timeout, in group mode.
    Auto,
    Every(Duration),
    Off,
}

impl<T, F> std::fmt::Debug for Handler<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("subscription", &self.subscription)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("shutdown_deadline", &self.shutdown_deadline)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// The documented ranges (usable as `Handler::<(), ()>::MAX_CONCURRENCY`).
impl<T, F> Handler<T, F> {
    /// Default [`concurrency`](Handler::concurrency): 1.
    pub const DEFAULT_CONCURRENCY: usize = 1;
    /// Largest accepted [`concurrency`](Handler::concurrency): 10 000.
    pub const MAX_CONCURRENCY: usize = 10_000;
    /// Default [`shutdown_deadline`](Handler::shutdown_deadline): 30 s.
    pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
    /// Longest accepted [`shutdown_deadline`](Handler::shutdown_deadline): 1 h.
    pub const MAX_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60 * 60);
    /// Shortest accepted [`keep_alive`](Handler::keep_alive) interval: 1 ms.
    pub const MIN_KEEP_ALIVE: Duration = Duration::from_millis(1);
    /// Longest accepted [`keep_alive`](Handler::keep_alive) interval: 24 h.
    pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(24 * 60 * 60);
}

impl<T, F, Fut> Handler<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Incoming<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
{
    pub(crate) fn new(bus: Bus, subscription: Subscription, handler: F) -> Self {
        Handler {
            bus,
            subscription,
            handler,
            concurrency: Self::DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            shutdown_deadline: Self::DEFAULT_SHUTDOWN_DEADLINE,
            keep_alive: KeepAlive::Auto,
            _marker: PhantomData,
        }
    }

    /// Handler calls that may run at once: 1 to
    /// [`MAX_CONCURRENCY`](Self::MAX_CONCURRENCY) (10 000); default 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How retryable failures are nacked; default
    /// [`RetryPolicy::default`] (100 ms doubling up to 30 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long a shutdown waits for the handler calls in flight: 0 to
    /// [`MAX_SHUTDOWN_DEADLINE`](Self::MAX_SHUTDOWN_DEADLINE) (1 h); default
    /// 30 s. Calls still running then are abandoned: their deliveries come
    /// back to the group.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Calls `in_progress` on a delivery every `every` while its handler
    /// runs (`Some`: [`MIN_KEEP_ALIVE`](Self::MIN_KEEP_ALIVE) to
    /// [`MAX_KEEP_ALIVE`](Self::MAX_KEEP_ALIVE), 1 ms to 24 h), or never
    /// (`None`). Default: half the subscription's ack timeout in group mode,
    /// never in fan-out mode. Each call is a round trip to the backend on
    /// Redis, so short handlers never make one.
    pub fn keep_alive(mut self, every: Option<Duration>) -> Self {
        self.keep_alive = match every {
            Some(d) => KeepAlive::Every(d),
            None => KeepAlive::Off,
        };
        self
    }

    /// Checks every setting (and the subscription) against its documented
    /// range; [`spawn`](Self::spawn) and [`run_until`](Self::run_until) call it first.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::InvalidConfig(format!(
                "handler concurrency must be 1 to {}, got {} (set with Handler::concurrency)",
                Self::MAX_CONCURRENCY,
                self.concurrency
            )));
        }
        if self.shutdown_deadline > Self::MAX_SHUTDOWN_DEADLINE {
            return Err(Error::InvalidConfig(format!(
                "handler shutdown_deadline must be 0 to 1h, got {:?} (set with Handler::shutdown_deadline)",
                self.shutdown_deadline
            )));
        }
        if let KeepAlive::Every(d) = self.keep_alive
            && !(Self::MIN_KEEP_ALIVE..=Self::MAX_KEEP_ALIVE).contains(&d)
        {
            return Err(Error::InvalidConfig(format!(
                "handler keep_alive must be 1ms to 24h or None, got {d:?} (set with Handler::keep_alive)"
            )));
        }
        self.retry.validate()?;
        self.subscription.validate()
    }

    fn keep_alive_every(&self) -> Option<Duration> {
        match self.keep_alive {
            KeepAlive::Off => None,
            KeepAlive::Every(d) => Some(d),
            KeepAlive::Auto => self
                .subscription
                .group_names()
                .map(|_| (self.subscription.ack_timeout_value() / 2).max(Self::MIN_KEEP_ALIVE)),
        }
    }

    /// Validates, subscribes and starts the handler on the current tokio
    /// runtime. Fails if a setting is out of range or subscribing fails.
    /// Stop it with [`HandlerHandle::shutdown`]; dropping the handle shuts
    /// it down in the background.
    pub async fn spawn(self) -> Result<HandlerHandle> {
        let runner = self.start().await?;
        Ok(HandlerHandle::spawn(runner))
    }

    /// Validates, subscribes and handles deliveries until `shutdown`
    /// resolves (for example [`shutdown_signal`]) or the subscription ends
    /// (the transport was closed), then drains within the shutdown deadline
    /// and reports.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<HandlerReport> {
        let runner = self.start().await?;
        Ok(runner.run(shutdown).await)
    }

    async fn start(self) -> Result<run::Runner<T, F>> {
        self.validate()?;
        let keep_alive = self.keep_alive_every();
        let max_attempts = self.subscription.max_attempts_value();
        let subscriber = self.bus.subscribe::<T>(self.subscription).await?;
        Ok(run::Runner {
            subscriber,
            handler: Arc::new(self.handler),
            concurrency: self.concurrency,
            retry: self.retry,
            shutdown_deadline: self.shutdown_deadline,
            keep_alive,
            max_attempts,
            counters: Arc::default(),
        })
    }
}

impl Bus {
    /// A [`Handler`] running `handler` on every delivery of `subscription`,
    /// decoded as `T` (see the [module docs](crate::handler)).
    pub fn handle<T, F, Fut>(&self, subscription: Subscription, handler: F) -> Handler<T, F>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Incoming<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        Handler::new(self.clone(), subscription, handler)
    }
}
