//! The Redis Pub/Sub backplane adapter of switchyard: a message published on
//! one replica of a service reaches the subscribers on every replica.
//!
//! Built for WebSocket, chat and notification servers that run many
//! replicas. URL schemes `redis+pubsub://` and `rediss+pubsub://` (TLS, with
//! the `tls` feature), `redis+pubsub+sentinel://` (Sentinel) and
//! `redis+pubsub+cluster://h1:7000,h2:7001` (Redis Cluster); in the
//! `switchyard` facade behind its `redis-pubsub` feature. The full guide is
//! `docs/redis-pubsub.md` in the repository.
//!
//! On a **Redis Cluster** the backplane uses Redis 7 sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`): topics are hashed onto `partitions` channels
//! (1 to 1024, default 16) whose hash tags spread them over the slot space
//! and so over the masters; one publishing and (for subscribed partitions)
//! one subscribing connection per master; `MOVED` and the server's own
//! `sunsubscribe` after a resharding or failover are followed by a fresh
//! slot map. Everything below holds there too, per partition.
//!
//! # How it works
//!
//! - **Local first.** `publish` hands the message to this transport's own
//!   subscribers at once through an in-process hub (the `switchyard-memory`
//!   hub), whether Redis is up or not, then enqueues it in a bounded
//!   **outbox** and returns. It does *not* wait for Redis. A sender task
//!   pipelines `PUBLISH`es from the outbox, retries while a message is
//!   younger than `outbox_ttl`, and drops and counts it after that. When the
//!   outbox is full, `publish` waits up to `outbox_wait` for room while
//!   Redis is reachable (not at all while it is away), then drops the
//!   message for Redis (it was still delivered locally) and counts it.
//! - **One subscribing connection per transport** carries every channel
//!   (`{namespace}:{topic}`) and pattern (`PSUBSCRIBE`), reference-counted
//!   across local subscribers. `subscribe` returns `Ok` only once Redis
//!   confirmed the subscription; it fails with `Error::Backend` when Redis
//!   refuses it (`NOPERM`) and with `Error::Timeout` when Redis does not
//!   confirm within `connect_timeout + response_timeout` (Redis away).
//!   Existing subscriptions are subscribed again after a reconnect.
//! - **Strict start-up, probing health.** `connect` fails (naming the
//!   address and the cause) unless both connections answer a `PING`, after
//!   `AUTH`/`SELECT`, within `connect_timeout`: nothing listening, a port
//!   that never answers, a frozen Redis, a peer that closes, a server that
//!   is not Redis, `NOAUTH`, `WRONGPASS`, `NOPERM`. `health()` sends a
//!   `PING` on the subscribing connection and waits at most
//!   `probe_timeout` for it.
//! - **A versioned envelope** carries origin instance id, boot epoch,
//!   per-origin and per-(origin, topic) sequence numbers, topic, headers,
//!   dedup id and payload. The receiving loop drops its own messages
//!   (self-echoes), counts and (rate-limited) logs malformed frames and
//!   unknown versions and never stops on them.
//! - **Gaps are reported, not hidden.** A jump in an origin's sequence on a
//!   topic becomes one `Err(Error::Lost { origin, from, to })` item in the
//!   stream of every local subscriber whose filter matches that topic;
//!   `origin` is `"{instance id}/{topic}"` (see [`split_lost_origin`]) and
//!   `from..=to` are that origin's sequence numbers on that topic, which are
//!   also the message ids (`0-N`). Messages dropped from a publisher's
//!   outbox during an outage show up this way on the other replicas. Frames
//!   are not trusted: an older boot epoch is dropped as stale, and a jump of
//!   more than 2^32 restarts the count instead of reporting a gap.
//! - **Reconnects** use full-jitter backoff and re-subscribe everything; a
//!   `PING` probe every `probe_interval` on the subscribing connection
//!   notices a half-open connection within `probe_interval +
//!   probe_timeout`. The loops are supervised (a panic restarts them and is
//!   counted) and stop when the transport is dropped or closed.
//! - **Slow subscribers** never stall a publisher: every message, published
//!   on this replica or arriving from another one, goes into each
//!   subscriber's own bounded buffer. `DropOldest` drops the oldest;
//!   `DropNewest` and `Block` drop the new message and count it in
//!   `stats().dropped`; under `Block` the drop also reaches the subscriber
//!   as an `Error::Lost` gap signal in the message's place (counted in
//!   `dropped` only, not again in `lost`). So on the backplane **`Block`
//!   never makes a publisher wait** ([`capabilities`]`().lossy_block`): a
//!   WebSocket that stops reading cannot stall its room on this replica
//!   or, through the outbox, on the others. `Block` stays the default
//!   because it is the policy that *reports* every drop in the stream.
//!   For messages of other replicas the receiving loop first waits for a
//!   full `Block` subscriber to read half its buffer, as long as it reads
//!   something every [`PubSubConfig::remote_wait`] (default 250 ms), so
//!   that a burst does not outrun a subscriber reading as fast as it can;
//!   meanwhile the other subscribers of the replica wait too, never a
//!   publisher.
//!
//! Delivery is **at-most-once** with gap signals: no message is delivered
//! twice, a lost one is reported. Per-topic order holds per origin.
//!
//! # Example
//!
//! ```no_run
//! use switchyard_core::{Message, Subscription, Transport};
//! use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
//!
//! # async fn demo() -> switchyard_core::Result<()> {
//! let replica = RedisPubSubTransport::connect(PubSubConfig::from_url(
//!     "redis+pubsub://127.0.0.1:6379?namespace=chat&outbox=10000&probe_interval=1s",
//! )?)
//! .await?;
//! let mut room = replica.subscribe(Subscription::to("rooms.42")?).await?;
//! replica.publish(Message::to("rooms.42", "hello")?).await?;
//! while let Some(item) = room.recv().await {
//!     match item {
//!         Ok(delivery) => tracing::info!(payload = ?delivery.payload(), "message"),
//!         Err(switchyard_core::Error::Lost { origin, from, to }) => {
//!             tracing::warn!(%origin, from, to, "messages lost: resync the room");
//!         }
//!         Err(other) => tracing::warn!(error = %other, "bad message"),
//!     }
//! }
//! # Ok(()) }
//! ```

mod cluster;
mod config;
mod deliver;
mod denied;
mod envelope;
#[doc(hidden)]
pub mod fuzzing;
mod gaps;
mod glob;
mod outbox;
mod partition;
mod presence;
mod publisher;
mod receiver;
mod registry;
mod shared;
mod stats;
mod subconn;
mod subscriber;
mod transport;

pub use config::{PubSubConfig, URL_PARAMS};
pub use envelope::{LIMITS, MAX_FRAME, MAX_PAYLOAD};
pub use glob::pattern_channel;
pub use stats::PubSubStats;
/// The connection settings both Redis adapters share, re-exported so a
/// typed config can be built through this crate (and the facade's module).
pub use switchyard_redis::{RedisConfig, Secret};
pub use transport::{RedisPubSubTransport, capabilities, connect};

/// The URL schemes this adapter serves.
pub const SCHEMES: &[&str] = &[
    "redis+pubsub",
    "rediss+pubsub",
    "redis+pubsub+sentinel",
    "rediss+pubsub+sentinel",
    "redis+pubsub+cluster",
    "rediss+pubsub+cluster",
];

/// Splits the `origin` of an `Error::Lost` from this adapter into the
/// publishing transport's instance id and the topic the lost messages were
/// published on.
///
/// ```
/// use switchyard_redis_pubsub::split_lost_origin;
/// assert_eq!(
///     split_lost_origin("00000000000000ff/rooms.42"),
///     Some((0xff, "rooms.42"))
/// );
/// assert_eq!(split_lost_origin("nonsense"), None);
/// ```
pub fn split_lost_origin(origin: &str) -> Option<(u64, &str)> {
    let (id, topic) = origin.split_once('/')?;
    if id.len() != 16 || topic.is_empty() {
        return None;
    }
    Some((u64::from_str_radix(id, 16).ok()?, topic))
}

// The guide `docs/redis-pubsub.md` is compiled as doctests by the facade
// (`switchyard`, feature `redis-pubsub`), through whose paths it is written.
