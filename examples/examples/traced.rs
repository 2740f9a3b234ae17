//! See [`switchyard_examples::traced`]. Prints the finished OpenTelemetry
//! spans (stdout exporter), then the summary.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let summary = switchyard_examples::traced::run(&url, &provider).await?;
    provider.shutdown()?;
    println!("{summary}");
    Ok(())
}
