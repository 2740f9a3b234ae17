//! See [`switchyard_examples::event_bus`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let summary = switchyard_examples::event_bus::run(&url).await?;
    println!("{summary}");
    Ok(())
}
