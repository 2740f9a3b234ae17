//! See [`switchyard_examples::events_library`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let summary = switchyard_examples::events_library::run(&url).await?;
    println!("{summary}");
    Ok(())
}
