//! See [`switchyard_examples::presence_rooms`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // SWITCHYARD_URL, else REDIS_URL (+ PRESENCE_PREFIX) on the Pub/Sub
    // backplane, else memory://.
    let url = switchyard_examples::presence_rooms::url_from_env()?;
    let summary = switchyard_examples::presence_rooms::run(&url).await?;
    println!("{summary}");
    Ok(())
}
