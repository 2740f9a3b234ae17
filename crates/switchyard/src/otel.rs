//! W3C trace context through OpenTelemetry (feature `otel`).
//!
//! [`OtelPropagator`] implements [`trace::Propagator`](crate::trace::Propagator)
//! with an OpenTelemetry [`TextMapPropagator`] (W3C `traceparent` and
//! `tracestate` by default) and `tracing-opentelemetry`: on publish it
//! writes the context of the `send` span into the message's headers, on
//! delivery it makes the `process` span a child of the context it reads.
//! It needs the `tracing-opentelemetry` layer in the application's tracing
//! subscriber; without it there is no OpenTelemetry context to carry and
//! nothing is written.
//!
//! ```
//! // Once, at start-up, next to the tracing subscriber set-up:
//! switchyard::otel::install_w3c();
//! ```
//!
//! See `docs/observability.md` for the whole set-up.

use std::sync::Arc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Headers;
use crate::trace::{Propagator, set_global_propagator};

/// A [`Propagator`] over an OpenTelemetry [`TextMapPropagator`]
/// ([`TraceContextPropagator`], W3C, by default).
#[derive(Clone, Debug, Default)]
pub struct OtelPropagator<P = TraceContextPropagator> {
    inner: P,
}

impl OtelPropagator {
    /// W3C trace context: `traceparent` and `tracestate`.
    pub fn w3c() -> Self {
        OtelPropagator {
            inner: TraceContextPropagator::new(),
        }
    }
}

impl<P: TextMapPropagator + Send + Sync + 'static> OtelPropagator<P> {
    /// Any OpenTelemetry text-map propagator (B3, Jaeger, a composite...).
    pub fn new(inner: P) -> Self {
        OtelPropagator { inner }
    }
}

/// Sets [`OtelPropagator::w3c`] as the process-wide propagator
/// ([`set_global_propagator`]); `false` when one was already set.
pub fn install_w3c() -> bool {
    set_global_propagator(Arc::new(OtelPropagator::w3c()))
}

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is not worth a header.
        if !value.is_empty() {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}

impl<P: TextMapPropagator + Send + Sync + 'static> Propagator for OtelPropagator<P> {
    fn inject(&self, span: &tracing::Span, headers: &mut Headers) {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            self.inner.inject_context(&cx, &mut HeaderInjector(headers));
        }
    }

    fn extract(&self, headers: &Headers, span: &tracing::Span) {
        let cx = self.inner.extract(&HeaderExtractor(headers));
        if cx.span().span_context().is_valid() {
            // Fails only when the span is disabled or already started;
            // the span then keeps its own parent.
            let _ = span.set_parent(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{TRACEPARENT, TRACESTATE};

    /// Whatever the headers hold, extraction never panics (here without an
    /// OpenTelemetry layer: a disabled span).
    #[test]
    fn malformed_headers_are_ignored() {
        let p = OtelPropagator::w3c();
        let span = tracing::Span::none();
        for bad in [
            "",
            "garbage",
            "00-zz-yy-01",
            "00-00000000000000000000000000000000-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0100",
            "00-4bf92f3577b34da6a3ce929d0e0e4736\u{0}-00f067aa0ba902b7-01",
            "00-é4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let mut h = Headers::new();
            h.insert(TRACEPARENT, bad);
            h.insert(TRACESTATE, "=,=,,\u{7f}");
            p.extract(&h, &span);
        }
        let mut h = Headers::new();
        p.inject(&span, &mut h);
        assert!(h.is_empty(), "no context, no header: {h:?}");
    }
}
