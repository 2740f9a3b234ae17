//! See [`switchyard_examples::order_workers`]. Ctrl-C (SIGINT) or SIGTERM
//! stops it early: the workers finish the orders in hand, then it exits.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let stop = async {
        switchyard::shutdown_signal().await;
    };
    let summary = switchyard_examples::order_workers::run_until(&url, stop).await?;
    println!("{summary}");
    Ok(())
}
