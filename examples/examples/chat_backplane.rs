//! See [`switchyard_examples::chat_backplane`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    // No restart hook: this process has no way to restart the Redis server
    // (the summary says so); the test injects one.
    let summary = switchyard_examples::chat_backplane::run(&url, None).await?;
    println!("{summary}");
    Ok(())
}
