//! See [`switchyard_examples::robot_telemetry`].
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let summary = switchyard_examples::robot_telemetry::run(&url).await?;
    println!("{summary}");
    Ok(())
}
