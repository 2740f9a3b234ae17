//! The subcommands. Each lives in its own module with its `Args` struct and
//! an async `run`.

use clap::Subcommand;

use crate::GlobalOpts;

pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod doctor;
pub(crate) mod pub_cmd;
#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
pub(crate) mod redis_info;
pub(crate) mod signal;
pub(crate) mod stats;
pub(crate) mod sub;
pub(crate) mod support;
pub(crate) mod topics;

/// What `switchyard` can do.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run a small typed order pipeline: fan-out audit, a consumer group of
    /// three workers, a retried order and a dead-lettered one
    Demo(demo::DemoArgs),
    /// Measure publish and delivery throughput or latency on any transport,
    /// counting every message
    Bench(bench::BenchArgs),
    /// Publish messages on a topic: one, `--count N`, or one per stdin line
    /// (`--data -`)
    Pub(pub_cmd::PubArgs),
    /// Print deliveries of a topic or pattern, one line each, in fan-out or
    /// a consumer group
    Sub(sub::SubArgs),
    /// List the topics of a persistent backend with length, groups, pending
    /// entries and consumer lag
    Topics(topics::TopicsArgs),
    /// List, replay or purge dead letters of a topic
    Dlq(dlq::DlqArgs),
    /// Check the backend at --url: reachability, version, persistence,
    /// eviction policy, cluster mode, ACL permissions, TLS
    Doctor(doctor::DoctorArgs),
}

/// Runs one subcommand.
pub(crate) async fn run(command: Command, global: &GlobalOpts) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(args, global).await,
        Command::Bench(args) => bench::run(args, global).await,
        Command::Pub(args) => pub_cmd::run(args, global).await,
        Command::Sub(args) => sub::run(args, global).await,
        Command::Topics(args) => topics::run(args, global).await,
        Command::Dlq(args) => dlq::run(args, global).await,
        Command::Doctor(args) => doctor::run(args, global).await,
    }
}
