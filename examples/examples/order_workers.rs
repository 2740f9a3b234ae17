//! See [`switchyard_examples::order_workers`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let summary = switchyard_examples::order_workers::run(&url).await?;
    println!("{summary}");
    Ok(())
}
