//! `bench-compare`: switchyard's adapters beside their raw limits and their
//! peers, on the same machine in the same run (what `scripts/bench-compare`
//! runs; see `docs/benchmarks.md`).
//!
//! - `compare`: one table per payload size — `redis-benchmark -P 64` XADD
//!   and PUBLISH, hand-written redis-rs loops, tokio broadcast/mpsc,
//!   omniqueue (Redis Streams) and async-nats JetStream (with the `peers`
//!   feature), and switchyard's memory, Redis Streams and Redis Pub/Sub
//!   adapters through one harness. Writes `compare-SIZE.json` and
//!   `compare-SIZE.md`.
//! - `scaling`: throughput as publishers, subscribers and topics grow, and
//!   peak memory of a backlog and of a slow subscriber; writes
//!   `scaling.json` and SVG charts.
//! - `wire`: the Redis Streams writer's protocol layer, hand-written RESP
//!   against a redis-rs pipeline on one connection, over TCP and TLS (the
//!   TLS rows need the `tls` feature); writes `wire-SIZE.json`, `wire.md`.
//! - `cluster`: the Redis Streams adapter on a Redis Cluster of 1 and of 3
//!   masters in the same run: publish and group consume + ack over 30
//!   topics beside `redis-benchmark --cluster`, client CPU per message, and
//!   the cost of pattern discovery as streams grow (1 → 10,000); writes
//!   `cluster.json`, `cluster.md`.
//! - `knee`: the Redis Pub/Sub backplane at fixed offered publish rates
//!   (64 publishers on one replica, 1 and 10 subscribers on another): the
//!   highest rate with nothing lost; writes `knee.json`.
//! - `rss`: one memory scenario in this process (run by `scaling` as a
//!   child process, so each peak RSS is measured alone).
//!
//! Redis runs in a `redis-server` this program starts on a free loopback
//! port (switchyard-testkit), NATS in a `nats-server -js` it starts the
//! same way; never a shared server.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod compare;
mod harness;
mod knee;
mod machine;
mod ours;
#[cfg(feature = "peers")]
mod peers;
mod raw;
mod scaling;
mod svg;
mod targets;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use switchyard::Transport;
use switchyard_testkit::RedisServer;

use harness::{Kind, Row};

#[derive(Parser, Debug)]
#[command(about = "switchyard beside its raw limits and peers, in one run")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The comparison table for each payload size
    Compare(CompareArgs),
    /// Scaling curves and peak memory, with SVG charts
    Scaling(scaling::ScalingArgs),
    /// One peak-RSS scenario (run by `scaling` in a child process)
    Rss(scaling::RssArgs),
    /// Draw the SVG charts again from the JSON already in a directory
    Render {
        /// The directory of the JSON files
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
    },
    /// One of our rows alone, on its own redis-server (for profiling:
    /// `perf record -a -- bench-compare one --workload publish …`)
    One(OneArgs),
    /// The Streams writer's protocol layer: hand-written RESP against
    /// redis-rs on one connection, over TCP and TLS, alternating rounds
    Wire(wire::WireArgs),
    /// The Redis Streams adapter on a Redis Cluster of 1 and of 3 masters:
    /// throughput, client CPU per message, pattern discovery cost
    Cluster(cluster::ClusterArgs),
    /// One pattern discovery point (run by `cluster` in a child process,
    /// so each RSS is measured alone)
    ClusterDiscovery(cluster::DiscoveryArgs),
    /// The Redis Pub/Sub backplane's knee: the highest offered publish
    /// rate (64 publishers on one replica) that 1 and 10 subscribers on
    /// another replica receive without loss
    Knee(knee::KneeArgs),
}

#[derive(clap::Args, Debug)]
struct OneArgs {
    /// publish, queued (one task, publish_queued), group, fanout or latency
    #[arg(long)]
    workload: String,
    /// memory, redis-streams or redis-pubsub
    #[arg(long)]
    adapter: String,
    #[arg(long, default_value_t = 16)]
    size: usize,
    #[arg(long, default_value_t = 500_000)]
    messages: u64,
    /// Publishers (publish, fanout) or group members (group)
    #[arg(long, default_value_t = 64)]
    tasks: u64,
    /// Use this Redis (`HOST:PORT`, e.g. a server started for inspection)
    /// instead of starting one
    #[arg(long)]
    redis: Option<String>,
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// Payload sizes in bytes
    #[arg(long, value_delimiter = ',', default_values_t = [16_usize, 256])]
    sizes: Vec<usize>,
    /// Messages per measured run
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Runs of each measurement; the median is reported
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Only these sections (comma separated), e.g. streams-publish
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON and markdown go
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::Rss(args) = &cli.command {
        // No runtime of our own around the measured one.
        return scaling::rss(args);
    }
    if let Cmd::ClusterDiscovery(args) = &cli.command {
        // Its own runtime, as `rss`.
        return cluster::discovery(args);
    }
    if let Cmd::Render { out } = &cli.command {
        return scaling::render(out);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match cli.command {
        Cmd::Compare(args) => rt.block_on(compare(args)),
        Cmd::Scaling(args) => rt.block_on(scaling::run(args)),
        Cmd::One(args) => rt.block_on(one(args)),
        Cmd::Wire(args) => rt.block_on(wire::run(args)),
        Cmd::Cluster(args) => rt.block_on(cluster::run(args)),
        Cmd::Knee(args) => rt.block_on(knee::run(args)),
        Cmd::Rss(_) | Cmd::Render { .. } | Cmd::ClusterDiscovery(_) => Ok(()),
    }
}

async fn one(args: OneArgs) -> Result<()> {
    // Keeps the started server (if any) alive until the end.
    let (_server, addr) = match &args.redis {
        Some(addr) => (None, addr.clone()),
        None => {
            let s = RedisServer::start().context("could not start redis-server")?;
            let addr = format!("127.0.0.1:{}", s.port());
            (Some(s), addr)
        }
    };
    let url = match args.adapter.as_str() {
        "memory" => format!("memory://?retention={}", args.messages + 1),
        "redis-streams" => format!("redis+streams://{addr}"),
        _ => format!("redis+pubsub://{addr}"),
    };
    let p = open(&url).await?;
    let c = if p.capabilities().cross_process {
        open(&url).await?
    } else {
        p.clone()
    };
    let (size, n, k, a) = (args.size, args.messages, args.tasks, args.adapter.as_str());
    let row = match args.workload.as_str() {
        "publish" => ours::publish_row("one", a, &p, size, n, k).await?,
        "queued" => ours::queued_row("one", a, &p, size, n).await?,
        "group" => {
            let members = usize::try_from(k).unwrap_or(1);
            ours::group_row("one", a, &p, &c, size, n, members).await?
        }
        "fanout" => {
            let shape = ours::Fanout {
                subscribers: 1,
                publishers: k,
                topics: 1,
            };
            ours::fanout_row("one", a, &p, &c, size, n, shape).await?
        }
        _ => ours::latency_row("one", a, &p, &c, size, 10_000, n).await?,
    };
    println!("{}", row.to_json(None));
    Ok(())
}

/// The raw limit each section's ratios are taken against (the name of
/// that row starts with it).
fn limit_of(section: &str) -> Option<&'static str> {
    Some(match section {
        "streams-publish" | "streams-consume" => "redis-benchmark -P 64 -c 50 XADD",
        "pubsub-publish" => "redis-benchmark -P 64 -c 50 PUBLISH",
        "memory-fanout-1" => "tokio::sync::broadcast, 1 receiver",
        "memory-fanout-10" => "tokio::sync::broadcast, 10 receiver",
        "memory-publish" | "memory-group" => "tokio::sync::mpsc (4096), 1 sender",
        _ => return None,
    })
}

async fn compare(args: CompareArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))?;
    let server = RedisServer::start().context("could not start redis-server")?;
    let machine = machine::describe(&server);
    eprintln!("bench-compare: {machine}");
    let mut all = Vec::new();
    for &size in &args.sizes {
        let (rows, failures) = compare::compare_size(&args, &server, size).await?;
        let machine_after = machine::load_average();
        let rows_json: Vec<_> = rows.iter().map(|r| r.to_json(ratio(&rows, r))).collect();
        let doc = json!({
            "command": format!(
                "scripts/bench-compare (bench-compare compare --sizes {size} --messages {} --repeats {})",
                args.messages, args.repeats
            ),
            "machine": machine,
            "load_average_after": machine_after,
            "size": size,
            "messages": args.messages,
            "repeats": args.repeats,
            "rows": rows_json,
            "failures": failures,
        });
        let json_path = args.out.join(format!("compare-{size}.json"));
        write(&json_path, &serde_json::to_string_pretty(&doc)?)?;
        if let Some(svg) = scaling::compare_chart(&doc) {
            write(&args.out.join(format!("compare-{size}.svg")), &svg)?;
        }
        let mut table = markdown(&rows);
        for f in &failures {
            table.push_str(&format!("\nFailed in this run: {f}\n"));
        }
        write(&args.out.join(format!("compare-{size}.md")), &table)?;
        println!("\n## {size}-byte payloads\n\n{table}");
        all.push((size, rows));
    }
    if args.only.is_empty() {
        let sizes: Vec<_> = all
            .iter()
            .map(|(size, rows)| targets::SizeRows { size: *size, rows })
            .collect();
        let table = targets::markdown(&sizes);
        write(&args.out.join("targets.md"), &table)?;
        println!("\n## Targets\n\n{table}");
    }
    Ok(())
}

/// A row's throughput over its section's raw limit.
fn ratio(rows: &[Row], row: &Row) -> Option<f64> {
    let prefix = limit_of(row.section)?;
    let limit = rows
        .iter()
        .find(|r| r.kind == Kind::Raw && r.name.starts_with(prefix))?;
    (row.latency.is_none() && limit.msgs_per_sec() > 0.0)
        .then(|| row.msgs_per_sec() / limit.msgs_per_sec())
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| section | what | msg/s | MB/s | × raw limit | latency p50 / p99 / p99.9 µs | note |\n|---|---|--:|--:|--:|--:|---|\n",
    );
    for r in rows {
        let ratio = ratio(rows, r).map_or_else(|| "—".into(), |x| format!("{x:.2}"));
        let latency = r.latency.map_or_else(
            || "—".into(),
            |l| format!("{:.0} / {:.0} / {:.0}", l.p50, l.p99, l.p999),
        );
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {} | {} | {} |\n",
            r.section,
            r.name,
            r.msgs_per_sec(),
            r.mb_per_sec(),
            ratio,
            latency,
            r.note
        ));
    }
    s
}

/// Keeps a measured row, or records why it failed (the run goes on).
/// Keeps a measured row (and prints it as progress) or records why it
/// failed.
fn keep(rows: &mut Vec<Row>, failures: &mut Vec<String>, what: &str, result: Result<Row>) {
    match result {
        Ok(row) => {
            eprintln!(
                "  {:>6} B  {:<18} {:<70} {:>12.0} msg/s",
                row.size,
                row.section,
                row.name,
                row.msgs_per_sec()
            );
            rows.push(row);
        }
        Err(e) => {
            eprintln!("  FAILED {what}: {e:#}");
            failures.push(format!("{what}: {e:#}"));
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("could not write {}", path.display()))
}

fn wanted(args: &CompareArgs, section: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| section.starts_with(o.as_str()))
}

async fn open(url: &str) -> Result<Arc<dyn Transport>> {
    switchyard::connect(url)
        .await
        .with_context(|| format!("could not open {url}"))
}
