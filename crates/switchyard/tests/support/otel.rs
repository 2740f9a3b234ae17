//! The tracing test binaries' OpenTelemetry set-up: a tracing subscriber
//! exporting to an in-memory exporter, and the process-wide W3C propagator.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

/// The exporter of this process's spans, set up on first use (once per
/// test binary: the tracing subscriber is global).
pub(crate) fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only global subscriber of this binary");
            assert!(switchyard::otel::install_w3c());
            (exporter, provider)
        })
        .0
}
