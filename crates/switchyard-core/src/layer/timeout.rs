//! [`DeliveryTimeoutLayer`]: a group delivery not settled in time is nacked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::AbortHandle;

use super::{Layer, SubscriberLayer, on_subscribe};
use crate::delivery::{Acknowledger, Delivery, Retry};
use crate::error::{Error, Result};
use crate::transport::{Subscriber, SubscriberStats, Transport};

/// Nacks a group delivery the application has not settled (`ack`, `nack`)
/// within `timeout` of receiving it, with [`Retry::Now`] unless
/// [`with_retry`](DeliveryTimeoutLayer::with_retry) says otherwise: the
/// message comes back (attempt + 1) or, after the subscription's
/// `max_attempts`, goes to the dead-letter topic, without waiting for the
/// backend's ack timeout. `in_progress` restarts the time.
///
/// The handler is not stopped: it is abandoned. Its own late `ack` or
/// `nack` then fails with [`Error::Timeout`] and changes nothing (the
/// message was already nacked), so a handler's side effects must be
/// idempotent, as for any redelivery. Fan-out deliveries (which have no
/// settlement) pass through unchanged.
///
/// `timeout` ranges from 1 ms to [`MAX_TIMEOUT`](DeliveryTimeoutLayer::MAX_TIMEOUT)
/// (24 h). Each group delivery costs one timer task, started when the
/// subscriber hands it out (which must happen inside a Tokio runtime;
/// outside one the delivery passes through with a warning).
#[derive(Clone, Debug)]
pub struct DeliveryTimeoutLayer {
    timeout: Duration,
    retry: Retry,
    expired: Arc<AtomicU64>,
}

impl DeliveryTimeoutLayer {
    /// The longest timeout allowed: 24 hours.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// Nacks (`Retry::Now`) deliveries not settled within `timeout`
    /// (1 ms to 24 h).
    pub fn new(timeout: Duration) -> Result<Self> {
        if timeout < Duration::from_millis(1) || timeout > Self::MAX_TIMEOUT {
            return Err(Error::InvalidConfig(format!(
                "DeliveryTimeoutLayer timeout must be 1ms to {:?}, got {timeout:?}",
                Self::MAX_TIMEOUT
            )));
        }
        Ok(DeliveryTimeoutLayer {
            timeout,
            retry: Retry::Now,
            expired: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How an expired delivery is nacked (`Retry::After` up to
    /// [`Retry::MAX_DELAY`], or `Retry::DeadLetter`).
    pub fn with_retry(mut self, retry: Retry) -> Result<Self> {
        retry.validate()?;
        self.retry = retry;
        Ok(self)
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Deliveries nacked by the timeout so far, by every subscriber of this
    /// layer (and its clones).
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
}

impl Layer for DeliveryTimeoutLayer {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        on_subscribe(inner, Arc::new(self.clone()))
    }
}

impl SubscriberLayer for DeliveryTimeoutLayer {
    fn layer_subscriber(&self, inner: Box<dyn Subscriber>) -> Box<dyn Subscriber> {
        Box::new(TimeoutSubscriber {
            inner,
            layer: self.clone(),
        })
    }
}

/// The subscriber a [`DeliveryTimeoutLayer`] makes.
struct TimeoutSubscriber {
    inner: Box<dyn Subscriber>,
    layer: DeliveryTimeoutLayer,
}

impl TimeoutSubscriber {
    fn watch(&self, delivery: Delivery) -> Delivery {
        if !delivery.needs_ack() {
            return delivery;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "DeliveryTimeoutLayer: delivery received outside a Tokio runtime; no timeout applies"
            );
            return delivery;
        };
        // What the timer settles with: the same message, id and attempt,
        // with no acknowledger of its own (dropping it does nothing).
        let shadow = Delivery::new(
            delivery.message().clone(),
            delivery.id(),
            delivery.attempt(),
            None,
        );
        let layer = self.layer.clone();
        delivery.map_acknowledger(move |inner| {
            let acker = Arc::new_cyclic(|me| TimeoutAcker {
                inner,
                shadow,
                layer,
                runtime,
                me: me.clone(),
                state: Mutex::new(State::Pending(None)),
            });
            acker.arm();
            acker
        })
    }
}

#[async_trait::async_trait]
impl Subscriber for TimeoutSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let item = std::task::ready!(self.inner.poll_recv(cx));
        Poll::Ready(item.map(|r| r.map(|d| self.watch(d))))
    }

    fn stats(&self) -> SubscriberStats {
        self.inner.stats()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

enum State {
    /// Not settled yet; the running timer.
    Pending(Option<AbortHandle>),
    /// Settled (or abandoned) by the application.
    Settled,
    /// Nacked by the timer.
    Expired,
}

/// One delivery's acknowledger: passes settlements on unless the timer
/// nacked the delivery first.
struct TimeoutAcker {
    inner: Arc<dyn Acknowledger>,
    shadow: Delivery,
    layer: DeliveryTimeoutLayer,
    runtime: tokio::runtime::Handle,
    me: Weak<TimeoutAcker>,
    state: Mutex<State>,
}

impl TimeoutAcker {
    /// Starts (or restarts) the timer, if the delivery is still pending.
    fn arm(&self) {
        let mut state = self.state.lock();
        let State::Pending(timer) = &mut *state else {
            return;
        };
        if let Some(old) = timer.take() {
            old.abort();
        }
        let me = self.me.clone();
        let timeout = self.layer.timeout;
        let task = self.runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(acker) = me.upgrade() {
                acker.expire().await;
            }
        });
        *timer = Some(task.abort_handle());
    }

    async fn expire(&self) {
        {
            let mut state = self.state.lock();
            if !matches!(*state, State::Pending(_)) {
                return;
            }
            *state = State::Expired;
        }
        self.layer.expired.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            id = %self.shadow.id(),
            topic = %self.shadow.topic(),
            attempt = self.shadow.attempt(),
            timeout = ?self.layer.timeout,
            "delivery not settled in time; nacking it"
        );
        if let Err(e) = self
            .inner
            .nack(&self.shadow, self.layer.retry.clone())
            .await
        {
            tracing::warn!(
                id = %self.shadow.id(),
                error = %e,
                "DeliveryTimeoutLayer could not nack an expired delivery; the backend's ack timeout brings it back"
            );
        }
    }

    /// Marks the delivery settled by the application; an error when the
    /// timer was first.
    fn settle(&self, delivery: &Delivery) -> Result<()> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Pending(timer) => {
                if let Some(timer) = timer {
                    timer.abort();
                }
                Ok(())
            }
            State::Settled => Ok(()),
            State::Expired => {
                *state = State::Expired;
                Err(Error::Timeout {
                    operation: format!(
                        "settling delivery {} of {} (DeliveryTimeoutLayer had nacked it already; it comes back)",
                        delivery.id(),
                        delivery.topic()
                    ),
                    after: self.layer.timeout,
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl Acknowledger for TimeoutAcker {
    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.settle(delivery)?;
        self.inner.ack(delivery).await
    }

    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()> {
        self.settle(delivery)?;
        self.inner.nack(delivery, retry).await
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<()> {
        if matches!(*self.state.lock(), State::Expired) {
            return Err(Error::Timeout {
                operation: format!(
                    "in_progress of delivery {} of {} (DeliveryTimeoutLayer had nacked it already)",
                    delivery.id(),
                    delivery.topic()
                ),
                after: self.layer.timeout,
            });
        }
        self.arm();
        self.inner.in_progress(delivery).await
    }

    fn abandon(&self, delivery: &Delivery) {
        if self.settle(delivery).is_ok() {
            self.inner.abandon(delivery);
        }
    }
}
