//! The in-process switchyard adapter: the embedded default, and the
//! reference semantics the conformance suite checks every adapter against.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> switchyard_core::Result<()> {
//! use switchyard_core::{Message, Subscription, Transport};
//! use switchyard_memory::MemoryTransport;
//!
//! let bus = MemoryTransport::new();
//! let mut workers = bus.subscribe(Subscription::to("orders.*")?.group("billing")).await?;
//! bus.publish(Message::to("orders.created", "order 1")?).await?;
//! let delivery = workers.recv().await.expect("open")?;
//! assert_eq!(&delivery.payload()[..], b"order 1");
//! delivery.ack().await?;
//! # Ok(()) }
//! ```
//!
//! # Hubs and transports
//!
//! A [`MemoryHub`] holds the topics; a [`MemoryTransport`] is one client of
//! a hub with its own closed state. [`MemoryTransport::new`] makes a private
//! hub; [`MemoryTransport::named`] (or the URL `memory://NAME`) shares a
//! process-wide hub among everyone using that name while any of them is
//! alive; [`MemoryTransport::connect_to`] adds another transport to a hub
//! (what the conformance harness uses as "another process"). Closing or
//! dropping a transport never closes the hub for the others.
//!
//! # Semantics
//!
//! - **Topics** keep a bounded retained log ([`MemoryConfig::retention`]
//!   messages, `:dlq` topics [`MemoryConfig::dead_letter_retention`], or
//!   what the most specific [`MemoryConfig::topic_retention`] rule says:
//!   an exact count and an optional age); ids
//!   are `0-N`, `N` counting from 1 per topic (`Start::After` with an id
//!   whose first part is not 0 is refused as invalid configuration). A
//!   topic exists from its first publish or subscription for as long as its
//!   hub. Nothing survives the process.
//! - **Fan-out** subscribers get every message of their topics in publish
//!   order per topic, from their [`Start`](switchyard_core::Start):
//!   `Latest` = published after `subscribe` returned, `Earliest` = all that
//!   is retained, `After(id)` = ids greater than `id` on each topic.
//!   Each has a bounded buffer of `buffer_size` messages. With
//!   [`Overflow::Block`](switchyard_core::Overflow) (the default) nothing is
//!   lost: **a full subscriber makes every publisher of its topics wait**
//!   (back-pressure; one slow `Block` subscriber slows the topic for all).
//!   `DropOldest` / `DropNewest` never wait and count drops in
//!   `stats().dropped`.
//! - **Patterns** also cover topics created after the subscription started;
//!   wildcards never match `:dlq` topics.
//! - **Groups** (`Mode::Group`): the group is created per topic on its first
//!   member's subscription, starting where that subscription's `Start`
//!   says; later members join it. Each message goes to one member at a time:
//!   members pull from the retained log when the application calls `recv`,
//!   so nothing waits in a member's buffer (the subscription's buffer size
//!   does not apply), the ack deadline (`ack_timeout`) runs from hand-over,
//!   and a group that falls more than `retention` messages behind loses the
//!   oldest (counted in `stats().lost_to_retention`). Members that wait are
//!   woken round robin, and `recv` takes part in tokio's cooperative
//!   budget, so no member is starved. `ack` settles; `nack(Now)`
//!   redelivers to any member with `attempt + 1`; `nack(After(d))` not
//!   before `d` (and at most one [`MemoryConfig::redelivery_tick`] later);
//!   `in_progress` restarts the deadline; an expired deadline or a dropped
//!   delivery redelivers like `nack(Now)`. `nack(DeadLetter(reason))`, and
//!   a nack or timeout of delivery number `max_attempts`, move the message
//!   to `{topic}:dlq` with the original payload, headers and dedup id plus
//!   the `sy-dlq-*` headers (reason, topic, id, attempts); it is not
//!   redelivered. A group member with a pattern filter is a member of the
//!   group on every matching topic, including later ones. When a member
//!   closes (or its transport closes or is dropped) everything it holds goes
//!   back to the group at once; a late `ack` of such a delivery is still
//!   honoured. Delivery is at-least-once.
//! - **Limits**: `publish` refuses a message over
//!   [`Limits::DEFAULT`](switchyard_core::Limits) (16 MiB payload, 64
//!   headers, 64 KiB of header keys and values, keys of 1 to 256 bytes)
//!   with `Error::InvalidMessage`; `publish_batch` checks every message
//!   first and appends nothing when one is over. Dead letters add their
//!   `sy-dlq-*` headers on top.
//! - **Closing**: after [`close`](switchyard_core::Transport::close),
//!   `publish` fails with `Error::Closed`, `health()` is `Down("closed")`
//!   and the transport's subscribers return `None` (buffered fan-out
//!   messages are discarded).
//! - **Timers**: ack deadlines and delayed retries are processed by one
//!   background task per hub (started with the first group subscription,
//!   ticking every [`MemoryConfig::redelivery_tick`], ending with the hub),
//!   so group subscriptions need a tokio runtime with its timer enabled.
//!
//! # Reusing the hub for local fan-out (backplane adapters)
//!
//! An adapter that mirrors messages to another system (the Redis Pub/Sub
//! backplane) serves its local subscribers from a hub: create one with
//! [`MemoryHub::new`], publish local messages and messages arriving from
//! outside through a [`MemoryTransport`] on it
//! ([`MemoryHub::transport`]), and hand out that transport's subscribers.
//! Such an adapter checks messages against its own limits and publishes
//! with [`MemoryTransport::publish_prechecked`], so the reserved headers it
//! adds are not counted again.
//! Publishing is ordered per topic (each publish appends under the topic's
//! lock before fan-out), so fan-out subscribers see the messages of a topic
//! in the order the receive loop published them. A slow `Block` subscriber
//! made with [`Transport::subscribe`](switchyard_core::Transport::subscribe)
//! stalls publishers of its topics; one made with
//! [`MemoryTransport::subscribe_never_blocking`] (what the backplane uses)
//! never does: it misses what finds it full and gets an `Error::Lost` gap
//! signal in its place.
//!
//! # Design
//!
//! Each topic is one `parking_lot` mutex around its log, its live fan-out
//! subscribers and its groups; the topic map is sharded behind read-write
//! locks, so the publish path takes a shard read lock and then the topic
//! lock, never a hub-wide lock. Messages are appended once as an
//! `Arc<Entry>` and shared by the log, every subscriber queue and the group
//! pending sets (payloads are `Bytes`, never copied). Fan-out queues are
//! bounded `VecDeque`s with the consumer's waker; groups keep a cursor, a
//! pending map, a retry queue and a delay heap. Wakers are collected under
//! locks and woken after, and no lock is held across an `.await`.

mod config;
mod fanout;
mod group;
mod hub;
mod member;
mod publish;
mod topic_log;
mod transport;
mod url;
mod wake;

use std::sync::Arc;

pub use config::MemoryConfig;
pub use transport::{MemoryHub, MemoryTransport};

/// The URL schemes this adapter serves.
pub const SCHEMES: &[&str] = &["memory"];

/// Opens a memory transport from a URL (see [`MemoryTransport::from_url`]);
/// used by the facade's scheme registry.
pub async fn connect(url: &str) -> switchyard_core::Result<Arc<dyn switchyard_core::Transport>> {
    Ok(Arc::new(MemoryTransport::from_url(url)?))
}
