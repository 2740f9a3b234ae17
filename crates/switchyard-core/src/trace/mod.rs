//! Tracing spans named and attributed per the OpenTelemetry messaging
//! semantic conventions, and the hook that carries W3C trace context across
//! the bus.
//!
//! [`Traced`] wraps any [`Transport`](crate::Transport) (the facade's
//! `switchyard::connect` wraps every transport it opens) and adds, on the
//! [`tracing`] crate:
//!
//! | span | when | kind | `messaging.operation.type` |
//! |---|---|---|---|
//! | `send {topic}` | around `publish` (and `publish_batch`: one span, `messaging.batch.message_count`) | producer | `send` |
//! | `process {topic}` | one per delivery, from the moment the subscriber hands it out until it is settled or dropped ([`Delivery::span`](crate::Delivery::span)) | consumer | `process` |
//! | `ack {topic}`, `nack {topic}` | around the settlement of a group delivery, children of its `process` span | client | `settle` |
//!
//! The span names above are the OpenTelemetry names (the `otel.name` field,
//! which `tracing-opentelemetry` uses); the `tracing` names are `send`,
//! `process`, `ack` and `nack`, all at level INFO with the target
//! [`TARGET`] (`switchyard::trace`), so `RUST_LOG=switchyard::trace=off`
//! turns them off. Attributes: `messaging.system` ([`messaging_system`]),
//! `messaging.operation.type`, `messaging.operation.name`,
//! `messaging.destination.name`, `messaging.consumer.group.name` (group
//! subscriptions), `messaging.message.id` (the backend id, recorded on
//! `send` once the backend accepted the message), `messaging.message.body.size`,
//! `messaging.batch.message_count`, and switchyard's own
//! `messaging.switchyard.adapter` (`memory`, `redis-streams`,
//! `redis-pubsub`), `messaging.switchyard.attempt` (1 on first delivery)
//! and `messaging.switchyard.retry` (`now`, `after`, `dead_letter` on
//! `nack`). A failed operation records `error.type` (the [`Error`]
//! variant) and `otel.status_code = "error"`.
//!
//! # Cost
//!
//! With no tracing subscriber installed (or one not interested in
//! `switchyard::trace` at INFO) every span is disabled: the wrapper checks
//! that once per operation (the callsite's cached interest), builds no
//! name or attribute string, writes no header and calls no propagator.
//! docs/benchmarks.md has the measured overhead.
//!
//! # Trace context
//!
//! Core knows no OpenTelemetry: a [`Propagator`] writes the context of the
//! `send` span into the message's headers ([`header::TRACEPARENT`],
//! [`header::TRACESTATE`]) and, on delivery, makes the `process` span a
//! child of the context it reads back. No propagator is configured by
//! default, so nothing is written into headers: set one process-wide with
//! [`set_global_propagator`] (the `switchyard-otel` crate, feature `otel`
//! of the facade, has the W3C one) or per transport with
//! [`Traced::with_propagator`]. A malformed `traceparent` is the
//! propagator's to ignore; the span then starts a trace of its own.
//!
//! [`header::TRACEPARENT`]: crate::header::TRACEPARENT
//! [`header::TRACESTATE`]: crate::header::TRACESTATE

use std::sync::{Arc, OnceLock};

use crate::error::Error;
use crate::message::Headers;

mod subscriber;
mod transport;

pub use subscriber::TracedSubscriber;
pub use transport::{Traced, traced};

/// The target of every span of this module: `switchyard::trace`.
pub const TARGET: &str = "switchyard::trace";

/// Carries trace context in message headers: [`inject`](Propagator::inject)
/// on publish, [`extract`](Propagator::extract) on delivery.
///
/// Implementations must not panic on any header value and must ignore what
/// they cannot parse. `switchyard-otel` implements it with OpenTelemetry's
/// propagators (W3C `traceparent`/`tracestate`) and `tracing-opentelemetry`.
pub trait Propagator: Send + Sync + 'static {
    /// Writes the trace context of `span` (the enabled `send` span) into
    /// `headers`.
    fn inject(&self, span: &tracing::Span, headers: &mut Headers);

    /// Makes `span` (the enabled, not yet entered `process` span) a child
    /// of the trace context carried by `headers`, if any valid one is.
    fn extract(&self, headers: &Headers, span: &tracing::Span);
}

static GLOBAL: OnceLock<Arc<dyn Propagator>> = OnceLock::new();

/// Sets the process-wide [`Propagator`] used by every [`Traced`] transport
/// that has none of its own (all transports opened by
/// `switchyard::connect`). It can be set once; returns `false` (and keeps
/// the first one) when one was already set.
pub fn set_global_propagator(propagator: Arc<dyn Propagator>) -> bool {
    GLOBAL.set(propagator).is_ok()
}

/// The process-wide [`Propagator`], if one was set.
pub fn global_propagator() -> Option<&'static Arc<dyn Propagator>> {
    GLOBAL.get()
}

/// The `messaging.system` value for an adapter name
/// ([`Transport::name`](crate::Transport::name)): `redis` for
/// `redis-streams` and `redis-pubsub` (the conventions' well-known value),
/// `switchyard.memory` for the in-process adapter (no backend system: a
/// custom value in switchyard's namespace), and the adapter name itself for
/// any other adapter.
///
/// ```
/// use switchyard_core::trace::messaging_system;
/// assert_eq!(messaging_system("redis-streams"), "redis");
/// assert_eq!(messaging_system("memory"), "switchyard.memory");
/// ```
pub fn messaging_system(adapter: &'static str) -> &'static str {
    match adapter {
        "redis-streams" | "redis-pubsub" => "redis",
        "memory" => "switchyard.memory",
        other => other,
    }
}

/// The `error.type` of a failed operation: the [`Error`] variant's name
/// (`Timeout`, `Closed`, ...), never its message (which may name hosts).
pub(crate) fn error_type(e: &Error) -> String {
    let debug = format!("{e:?}");
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// A count or size as an `i64` field: OpenTelemetry has no unsigned
/// integers and `tracing-opentelemetry` records `u64` fields as strings.
pub(crate) fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Records the outcome of an operation on its (enabled) span.
pub(crate) fn record_error(span: &tracing::Span, e: &Error) {
    span.record("error.type", error_type(e).as_str());
    span.record("otel.status_code", "error");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_type_is_the_variant_name() {
        assert_eq!(error_type(&Error::Closed), "Closed");
        assert_eq!(
            error_type(&Error::InvalidConfig("x y".into())),
            "InvalidConfig"
        );
        assert_eq!(messaging_system("redis-pubsub"), "redis");
        assert_eq!(messaging_system("nats"), "nats");
    }
}
