//! See [`switchyard_examples::metrics_endpoint`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let summary = switchyard_examples::metrics_endpoint::run(&url).await?;
    println!("{summary}");
    Ok(())
}
