//! switchyard: one message-transport contract for Rust services, over Redis
//! Streams, a Redis Pub/Sub backplane or in-process memory, picked by a Cargo
//! feature and a URL.
//!
//! This is the crate applications depend on. It re-exports the whole
//! contract of `switchyard-core` ([`Transport`], [`Subscriber`],
//! [`Subscription`], [`Delivery`], the typed [`Bus`], ...), opens adapters by
//! URL with [`connect`], and offers a [`prelude`].
//!
//! # Quick start
//!
//! ```
//! use switchyard::prelude::*;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug)]
//! struct OrderCreated {
//!     id: u64,
//!     item: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> switchyard::Result<()> {
//!     // `memory://` needs no server; `redis+streams://127.0.0.1:6379` would
//!     // give the same API over Redis Streams.
//!     let bus = Bus::new(switchyard::connect("memory://").await?);
//!     let topic = Topic::new("orders.created")?;
//!
//!     // A consumer group: each order goes to one member, which acks it.
//!     let mut workers = bus
//!         .subscribe::<OrderCreated>(Subscription::new(topic.clone()).group("fulfilment"))
//!         .await?;
//!
//!     bus.publish(&topic, &OrderCreated { id: 1, item: "widget".into() }).await?;
//!
//!     let order = workers.recv().await.expect("subscriber open")?;
//!     assert_eq!(order.value.id, 1);
//!     order.ack().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | the in-process adapter, `memory://` (module [`memory`]) |
//! | `redis-streams` | no | the Redis Streams adapter, `redis+streams://`, `rediss+streams://` (module [`redis_streams`]) |
//! | `redis-pubsub` | no | the Redis Pub/Sub backplane, `redis+pubsub://`, `rediss+pubsub://` (module [`redis_pubsub`]) |
//! | `tls` | no | TLS for the Redis adapters compiled in (`rediss+…://`, rustls): the platform's roots or `tls_ca=`, client certificates with `tls_cert=`/`tls_key=`; a refused certificate is [`Error::Tls`] |
//! | `bincode` | no | `Codec::Bincode` (bincode 2.0.1 with a decode size limit); other formats: [`CustomCodec`] |
//! | `otel` | no | W3C trace context through OpenTelemetry (module `otel`): `traceparent`/`tracestate` written on publish, read on delivery |
//! | `metrics` | no | counters, gauges and a publish latency histogram through the `metrics` facade crate (module `metrics`) |
//!
//! A URL whose adapter is not compiled in fails with
//! [`Error::FeatureNotEnabled`] naming the feature to turn on; an unknown
//! scheme fails with [`Error::UnknownScheme`] listing the schemes this build
//! supports. See [`compiled_schemes`], and [`register_scheme`] for adapters
//! of other crates.
//!
//! # Extension points
//!
//! ## Your own adapter behind `connect(url)`
//!
//! [`register_scheme`] makes [`connect`] (and [`connect_from_env`]) open
//! `myqueue://…` URLs with your constructor; [`schemes`] lists what
//! `connect` can open. An adapter implements [`Transport`] and
//! [`Subscriber`] and describes itself with [`Capabilities::new`] and its
//! `with_*` builders; the `switchyard-conformance` suite checks it keeps
//! the contract.
//!
//! ## Custom codecs
//!
//! The typed [`Bus`] encodes with a [`Codec`]: `Codec::Json` (default),
//! `Codec::Bincode` (feature `bincode`), or any serde format through
//! [`CustomCodec`] and [`Codec::custom`]. Each codec writes its content type
//! into the `content-type` header, and a [`TypedSubscriber`] refuses a
//! message labelled with another type (an [`Error::Codec`] naming both)
//! instead of misreading it. MessagePack with `rmp-serde`:
//!
//! ```
//! use serde::de::DeserializeSeed;
//! use switchyard::prelude::*;
//! use switchyard::{CodecError, CustomCodec};
//!
//! struct MsgPack;
//!
//! impl CustomCodec for MsgPack {
//!     fn name(&self) -> &'static str {
//!         "msgpack"
//!     }
//!     fn content_type(&self) -> &'static str {
//!         "application/msgpack"
//!     }
//!     fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
//!         Ok(rmp_serde::to_vec_named(value)?)
//!     }
//!     fn decode_seed<'de, S: DeserializeSeed<'de>>(
//!         &self,
//!         bytes: &'de [u8],
//!         seed: S,
//!     ) -> Result<S::Value, CodecError> {
//!         let mut rest = bytes;
//!         let mut de = rmp_serde::Deserializer::new(&mut rest);
//!         let value = seed.deserialize(&mut de)?;
//!         if !de.get_ref().is_empty() {
//!             return Err("trailing bytes after the value".into());
//!         }
//!         Ok(value)
//!     }
//! }
//!
//! const MSGPACK: Codec = Codec::custom(&MsgPack);
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Reading {
//!     sensor: String,
//!     celsius: f32,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchyard::Result<()> {
//! let bus = Bus::new(switchyard::connect("memory://").await?).with_codec(MSGPACK);
//! let topic = Topic::new("sensors.temperature")?;
//! let mut readings = bus.subscribe::<Reading>(Subscription::new(topic.clone())).await?;
//! bus.publish(&topic, &Reading { sensor: "t1".into(), celsius: 21.5 }).await?;
//!
//! // A TypedSubscriber is also a futures::Stream.
//! use futures::StreamExt;
//! let reading = readings.next().await.expect("open")?;
//! assert_eq!(reading.value.celsius, 21.5);
//! assert_eq!(reading.delivery.headers().get(header::CONTENT_TYPE), Some("application/msgpack"));
//! # Ok(()) }
//! ```
//!
//! # Further reading
//!
//! In the repository's `docs/` folder:
//! - `docs/architecture.md`: the crates, the core contract, the scheme
//!   registry and the design decisions;
//! - `docs/semantics.md`: delivery guarantees per adapter, ordering,
//!   ack/nack, dead letters, overflow, start positions, topic rules;
//! - `docs/layers.md`: middleware around a transport ([`layer`]): publish
//!   retry, delivery timeout, dedup, tracing;
//! - `docs/cli.md`: the `switchyard` command-line tool;
//! - `docs/observability.md`: the tracing spans ([`trace`]) and W3C trace
//!   context across the bus.
//! - `docs/metrics.md`: the adapter counters of `stats()` and the metrics
//!   of the `metrics` feature.

pub use switchyard_core::*;

mod registered;
mod registry;

pub use registered::{
    MAX_REGISTERED_SCHEMES, MAX_SCHEME_LEN, SchemeConstructor, register_scheme,
    register_scheme_boxed, schemes, unregister_scheme,
};
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;

pub use registry::{
    DEFAULT_URL, URL_ENV, compiled_schemes, connect, connect_from_env, url_from_env,
};

/// The in-process adapter (`memory://`): re-export of `switchyard-memory`.
#[cfg(feature = "memory")]
pub mod memory {
    pub use switchyard_memory::*;
}

/// The Redis Streams adapter (`redis+streams://`, `rediss+streams://`):
/// re-export of `switchyard-redis-streams`.
///
/// A typed config, built through the facade alone:
///
/// ```
/// use std::time::Duration;
/// use switchyard::redis_streams::{RedisConfig, StreamsConfig};
///
/// let cfg = StreamsConfig::new(RedisConfig::new("127.0.0.1", 6379).with_namespace("app"))
///     .with_maxlen(Some(100_000))
///     .with_block(Duration::from_millis(500));
/// cfg.validate()?;
/// // let transport = switchyard::redis_streams::RedisStreamsTransport::connect(cfg).await?;
/// # Ok::<(), switchyard::Error>(())
/// ```
#[cfg(feature = "redis-streams")]
pub mod redis_streams {
    pub use switchyard_redis_streams::*;
}

/// The Redis Pub/Sub backplane (`redis+pubsub://`, `rediss+pubsub://`):
/// re-export of `switchyard-redis-pubsub`.
///
/// A typed config, built through the facade alone:
///
/// ```
/// use switchyard::redis_pubsub::{PubSubConfig, RedisConfig};
///
/// let cfg = PubSubConfig::new(RedisConfig::new("127.0.0.1", 6379).with_namespace("chat"))
///     .with_outbox(50_000);
/// cfg.validate()?;
/// # Ok::<(), switchyard::Error>(())
/// ```
#[cfg(feature = "redis-pubsub")]
pub mod redis_pubsub {
    pub use switchyard_redis_pubsub::*;
}

/// The names most applications need: `use switchyard::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Bus, Codec, Delivery, Error, HandlerError, HandlerHandle, HandlerReport, Headers, Incoming,
        Message, MessageId, Mode, Overflow, PublishAck, Result, Retry, RetryPolicy, Start,
        Subscriber, Subscription, Topic, TopicFilter, Transport, Typed, TypedSubscriber, connect,
        connect_from_env, header, shutdown_signal,
    };
}

/// The examples of docs/handlers.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/handlers.md")]
#[cfg(doctest)]
pub struct HandlersDoctests;

/// The examples of docs/layers.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/layers.md")]
#[cfg(doctest)]
pub struct LayersDoctests;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The examples of `docs/semantics.md`, compiled as doctests against the
/// facade.
#[doc = include_str!("../../../docs/semantics.md")]
#[cfg(doctest)]
pub struct SemanticsGuideDoctests;

/// The examples of `docs/observability.md`, compiled as doctests against
/// the facade with its `otel` feature.
#[doc = include_str!("../../../docs/observability.md")]
#[cfg(all(doctest, feature = "otel"))]
pub struct ObservabilityGuideDoctests;

/// The examples of `docs/redis-streams.md`, compiled as doctests against
/// the facade.
#[doc = include_str!("../../../docs/redis-streams.md")]
#[cfg(all(doctest, feature = "redis-streams"))]
pub struct RedisStreamsGuideDoctests;

/// The examples of `docs/redis-pubsub.md`, compiled as doctests against
/// the facade.
#[doc = include_str!("../../../docs/redis-pubsub.md")]
#[cfg(all(doctest, feature = "redis-pubsub"))]
pub struct RedisPubSubGuideDoctests;

/// The examples of `docs/metrics.md`, compiled and run as doctests against
/// the facade.
#[doc = include_str!("../../../docs/metrics.md")]
#[cfg(all(doctest, feature = "metrics"))]
pub struct MetricsGuideDoctests;
