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
//! | `bincode` | no | `Codec::Bincode` (bincode 2.0.1 with a decode size limit) |
//! | `metrics` | no | counters, gauges and a publish latency histogram through the `metrics` facade crate (module `metrics`) |
//!
//! A URL whose adapter is not compiled in fails with
//! [`Error::FeatureNotEnabled`] naming the feature to turn on; an unknown
//! scheme fails with [`Error::UnknownScheme`] listing the schemes this build
//! supports. See [`compiled_schemes`].
//!
//! # Further reading
//!
//! In the repository's `docs/` folder:
//! - `docs/architecture.md`: the crates, the core contract, the scheme
//!   registry and the design decisions;
//! - `docs/semantics.md`: delivery guarantees per adapter, ordering,
//!   ack/nack, dead letters, overflow, start positions, topic rules;
//! - `docs/cli.md`: the `switchyard` command-line tool;
//! - `docs/metrics.md`: the adapter counters of `stats()` and the metrics
//!   of the `metrics` feature.

pub use switchyard_core::*;

mod registry;

#[cfg(feature = "metrics")]
pub mod metrics;

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
        Bus, Codec, Delivery, Error, Headers, Message, MessageId, Mode, Overflow, Result, Retry,
        Start, Subscriber, Subscription, Topic, TopicFilter, Transport, Typed, TypedSubscriber,
        connect, connect_from_env, header,
    };
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The examples of `docs/semantics.md`, compiled as doctests against the
/// facade.
#[doc = include_str!("../../../docs/semantics.md")]
#[cfg(doctest)]
pub struct SemanticsGuideDoctests;

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
