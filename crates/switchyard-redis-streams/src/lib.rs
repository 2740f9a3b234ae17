//! Redis Streams adapter for switchyard: durable topics with fan-out,
//! consumer groups, redelivery and dead letters, opened by
//! `redis+streams://host:port/db` (or `rediss+streams://` for TLS).
//!
//! - one stream per topic, key `"{namespace}:{<topic>}"` (see [`keys`]);
//! - publishing through a writer task that coalesces concurrent `publish`
//!   calls onto pipelines of XADD, with optional `MAXLEN ~` / `MINID ~`
//!   retention and a circuit breaker;
//! - fan-out with XREAD from a cursor, consumer groups with XREADGROUP;
//! - pattern subscriptions discover streams with SCAN.
//!
//! See `docs/redis-streams.md` for configuration and operation, and
//! `docs/wire-format.md` for the entry format.
//!
//! ```no_run
//! use switchyard_core::{Message, Subscription, Transport};
//! # async fn demo() -> switchyard_core::Result<()> {
//! let bus = switchyard_redis_streams::connect("redis+streams://127.0.0.1:6379/0?namespace=app").await?;
//! let mut sub = bus.subscribe(Subscription::to("orders.*")?).await?;
//! bus.publish(Message::to("orders.created", "hello")?).await?;
//! if let Some(Ok(delivery)) = sub.recv().await {
//!     assert_eq!(&delivery.payload()[..], b"hello");
//! }
//! bus.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod buffer;
mod catalog;
mod config;
mod discovery;
mod fanout;
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod inner;
pub mod keys;
mod presence;
mod publish;
mod retention;
mod transport;
pub mod wire;

use std::sync::Arc;

pub use config::{StreamsConfig, URL_PARAMS};
/// The connection settings both Redis adapters share, re-exported so a
/// typed config can be built through this crate (and the facade's module).
pub use switchyard_redis::{RedisConfig, Secret};
pub use transport::{NAME, RedisStreamsTransport, capabilities};

use switchyard_core::{Result, Transport};

/// The URL schemes this adapter serves.
pub const SCHEMES: &[&str] = &[
    "redis+streams",
    "rediss+streams",
    "redis+streams+sentinel",
    "rediss+streams+sentinel",
    "redis+streams+cluster",
    "rediss+streams+cluster",
];

/// Opens a transport for a `redis+streams://` or `rediss+streams://` URL.
///
/// Fails within the connect timeout when Redis is unreachable, naming the
/// address; the password never appears in errors.
pub async fn connect(url: &str) -> Result<Arc<dyn Transport>> {
    let config = StreamsConfig::from_url(url)?;
    Ok(Arc::new(RedisStreamsTransport::connect(config).await?))
}
