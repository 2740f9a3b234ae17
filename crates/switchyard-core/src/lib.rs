//! The core contract of switchyard: backend-agnostic [`Transport`] and
//! [`Subscriber`] traits and the types around them. No backend, no network.
//!
//! Application code normally depends on the `switchyard` facade crate, which
//! re-exports everything here and picks an adapter by URL. Adapter authors
//! implement [`Transport`] and [`Subscriber`] and run the
//! `switchyard-conformance` suite against their backend.
//!
//! - [`Topic`], [`TopicFilter`], [`Pattern`]: validated names and filters;
//! - [`Message`], [`Headers`], [`MessageId`], [`DedupId`]: what is published;
//! - [`Limits`]: the message sizes every adapter accepts;
//! - [`Retention`], [`RetentionRules`]: per-topic retention, most specific rule first;
//! - [`Delivery`], [`Retry`], [`Acknowledger`]: what is received and how it is settled;
//! - [`Subscription`], [`Mode`], [`Start`], [`Overflow`]: how to subscribe;
//! - [`Capabilities`], [`Health`], [`SubscriberStats`], [`TransportStats`];
//! - [`Codec`], [`CustomCodec`], [`Bus`], [`TypedSubscriber`]: the typed layer;
//! - [`Handler`] ([`Bus::handle`]), [`HandlerError`], [`RetryPolicy`],
//!   [`HandlerReport`], [`shutdown_signal`]: the receive loop, written once
//!   ([`handler`]);
//! - [`layer`]: middleware around a transport ([`Layer`], [`layers`]):
//!   [`TraceLayer`], [`PublishRetryLayer`], [`DeliveryTimeoutLayer`],
//!   [`DedupLayer`];
//! - [`Backoff`], [`CircuitBreaker`]: resilience helpers shared by adapters;
//! - [`Error`]: one error type, with [`Error::is_transient`];
//! - [`trace`]: OpenTelemetry-style messaging spans ([`trace::Traced`]) and the
//!   [`trace::Propagator`] hook for W3C trace context.

mod backoff;
mod breaker;
mod buffer_watch;
mod bus;
mod catalog;
mod codec;
mod delivery;
mod error;
pub mod handler;
pub mod layer;
mod limits;
mod message;
mod publish_ack;
pub mod retention;
mod subscription;
pub mod topic;
pub mod trace;
mod transport;

pub use backoff::Backoff;
pub use breaker::{BreakerState, BreakerStats, CircuitBreaker};
pub use buffer_watch::BufferWatch;
pub use bus::{Bus, Typed, TypedSubscriber};
pub use catalog::{GroupInfo, SubscriberCounts, TopicInfo};
pub use codec::{Codec, CodecError, CustomCodec, CustomRef};
pub use delivery::{Acknowledger, Delivery, DeliveryParts, Retry};
pub use error::{Error, Result, redact_url, scrub_url_secret, url_secret};
pub use handler::{
    Failure, Handler, HandlerError, HandlerHandle, HandlerReport, Incoming, RetryPolicy, Signal,
    shutdown_signal,
};
pub use layer::{
    DedupLayer, DeliveryTimeoutLayer, Layer, PublishRetryLayer, Stack, SubscriberLayer, TraceLayer,
    layers, on_subscribe,
};
pub use limits::Limits;
pub use message::{DedupId, Headers, Message, MessageId, header};
pub use publish_ack::PublishAck;
pub use retention::{Retention, RetentionRule, RetentionRules};
pub use subscription::{Mode, Overflow, Start, Subscription};
pub use topic::{DEAD_LETTER_SUFFIX, Pattern, PatternToken, Topic, TopicFilter};
pub use transport::{
    Capabilities, Fetched, Health, Recv, Subscriber, SubscriberStats, Transport, TransportStats,
};

pub use async_trait::async_trait;
pub use bytes::Bytes;
