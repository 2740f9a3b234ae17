//! The subcommands. Each lives in its own module with its `Args` struct and
//! an async `run`.

use clap::Subcommand;

use crate::GlobalOpts;

pub(crate) mod bench;
pub(crate) mod demo;

/// What `switchyard` can do.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run a small typed order pipeline: fan-out audit, a consumer group of
    /// three workers, a retried order and a dead-lettered one
    Demo(demo::DemoArgs),
    /// Measure publish and delivery throughput or latency on any transport,
    /// counting every message
    Bench(bench::BenchArgs),
}

/// Runs one subcommand.
pub(crate) async fn run(command: Command, global: &GlobalOpts) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(args, global).await,
        Command::Bench(args) => bench::run(args, global).await,
    }
}
