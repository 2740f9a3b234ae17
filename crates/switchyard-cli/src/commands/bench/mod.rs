//! `switchyard bench`: throughput and latency of any transport, checked.
//!
//! Modes:
//! - `publish`: `--publishers` tasks publish `--messages` (or for
//!   `--duration`) messages of `--size` bytes over `--topics` topics, one
//!   `publish` each (or `publish_batch` of `--batch`). Reports msg/s and MB/s
//!   of accepted publishes.
//! - `fanout`: the same, with `--subscribers` fan-out subscribers that each
//!   must receive every message. Reports publish and end-to-end delivery
//!   rates (deliveries counted over all subscribers).
//! - `group`: the same, with one consumer group of `--subscribers` members
//!   that together must receive (and ack) every message once.
//! - `latency`: messages are sent at a fixed offered `--rate`; each payload
//!   carries its *intended* send time, so latency is measured from when the
//!   message should have left, not from when a late sender got to it (no
//!   coordinated omission). Percentiles come from an HDR histogram.
//!
//! Every payload starts with a sequence number (8 bytes, little endian) and a
//! send time (8 bytes, nanoseconds since the run started), so every delivery
//! is counted on arrival. A run with a missing, duplicated or foreign message
//! fails (exit 1) and prints no figure. Each run uses fresh topic and group
//! names (`bench-<run id>.<n>`), so reruns against a persistent Redis do not
//! see each other.
//!
//! On adapters that reach across processes (`cross_process`), subscribers
//! use a second transport (a second replica), so the measured path goes
//! through the backend rather than a local shortcut.

//!
//! The code is split by responsibility: [`check`] encodes payloads and
//! decides whether a run counted every message, [`runner`] subscribes,
//! drives a run and collects what arrived, [`publish`] holds the flat-out
//! and paced publishers, [`report`] the progress bar and the text/JSON
//! output.

mod check;
mod publish;
mod report;
mod runner;

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use switchyard::{Error, redact_url};

use crate::GlobalOpts;
use crate::output::out;

use report::{json_report, text_report};
use runner::bench;

/// The default number of messages of the throughput modes.
const DEFAULT_MESSAGES: u64 = 100_000;
/// The default length of a latency run, in seconds (when `--messages` and
/// `--duration` are both absent).
const DEFAULT_LATENCY_SECS: u64 = 5;
/// Bound on closing subscribers and transports at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `switchyard bench` measures.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BenchMode {
    /// Publish throughput only
    Publish,
    /// Publish and end-to-end delivery to every fan-out subscriber
    Fanout,
    /// Publish and end-to-end delivery to one consumer group (consume + ack)
    Group,
    /// End-to-end latency percentiles at a fixed offered rate
    Latency,
}

impl BenchMode {
    fn as_str(self) -> &'static str {
        match self {
            BenchMode::Publish => "publish",
            BenchMode::Fanout => "fanout",
            BenchMode::Group => "group",
            BenchMode::Latency => "latency",
        }
    }
}

/// Options of `switchyard bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// What to measure
    #[arg(long, value_enum, default_value_t = BenchMode::Publish)]
    mode: BenchMode,

    /// Messages to publish [default: 100000; latency mode: rate x 5 s]
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    messages: Option<u64>,

    /// Publish for this many seconds instead of a number of messages
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<f64>,

    /// Payload size in bytes (at least 16: sequence number and send time;
    /// at most 16 MiB, `Limits::MAX_PAYLOAD`)
    #[arg(long, value_name = "BYTES", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..=switchyard::Limits::MAX_PAYLOAD as u64))]
    size: u64,

    /// Concurrent publishing tasks (latency mode: senders sharing the rate)
    #[arg(long, short = 'p', value_name = "P", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    publishers: u64,

    /// Fan-out subscribers (fanout, latency) or group members (group)
    #[arg(long, short = 's', value_name = "S", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    subscribers: u64,

    /// Topics the messages are spread over (round robin); subscribers
    /// subscribe to all of them
    #[arg(long, short = 't', value_name = "T", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    topics: u64,

    /// Offered rate of latency mode, messages per second
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: u64,

    /// Publish in batches of this many messages (`publish_batch`) instead
    /// of one `publish` per message (throughput modes)
    #[arg(long, value_name = "B", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// Fail when no message arrives for this many seconds while some are
    /// still expected
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    /// Print one JSON object instead of the table
    #[arg(long)]
    json: bool,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

/// How long publishers go on.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Count(u64),
    Until(Instant),
}

/// The counters of the transports of a run, read when it ended.
pub(super) struct Stats {
    /// The publishing transport's (the only one unless the adapter reaches
    /// across processes).
    pub(super) publisher: switchyard::TransportStats,
    /// The subscribing transport's, when the subscribers had their own.
    pub(super) subscriber: Option<switchyard::TransportStats>,
}

/// Runs `switchyard bench`: opens the transports, runs, checks and prints.
pub(crate) async fn run(args: BenchArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let shown_url = redact_url(global.url.trim());
    let open = |what: &'static str| {
        let url = global.url.clone();
        let shown = shown_url.clone();
        async move {
            switchyard::connect(&url).await.map_err(|e| match e {
                Error::InvalidUrl { .. } => anyhow!(e),
                e => anyhow!(e).context(format!("could not open {shown} ({what})")),
            })
        }
    };
    let publisher_side = open("publishing transport").await?;
    let caps = publisher_side.capabilities();
    if args.mode == BenchMode::Group && !caps.consumer_groups {
        bail!(
            "group mode needs consumer groups, which the {} adapter does not have: use --mode fanout, or memory:// or redis+streams://HOST:PORT",
            publisher_side.name()
        );
    }
    let needs_subscribers = args.mode != BenchMode::Publish;
    // A second transport (a second replica) for the subscribers when the
    // adapter reaches across processes; memory:// is one process-local hub.
    let subscriber_side = if needs_subscribers && caps.cross_process {
        Some(open("subscribing transport").await?)
    } else {
        None
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let result = bench(
        &args,
        &run_id,
        &publisher_side,
        subscriber_side.as_ref().unwrap_or(&publisher_side),
    )
    .await;
    // Every counter of each transport (adapter-specific ones included),
    // read before closing.
    let transport_stats = Stats {
        publisher: publisher_side.stats(),
        subscriber: subscriber_side.as_ref().map(|t| t.stats()),
    };
    for t in std::iter::once(&publisher_side).chain(subscriber_side.as_ref()) {
        match tokio::time::timeout(CLOSE_TIMEOUT, t.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the transport failed"),
            Err(_) => tracing::debug!("closing the transport timed out"),
        }
    }
    let figures = result?;
    let text = if args.json {
        json_report(
            &args,
            &shown_url,
            &run_id,
            publisher_side.name(),
            &figures,
            &transport_stats,
        )
    } else {
        text_report(
            &args,
            &shown_url,
            &run_id,
            publisher_side.name(),
            &figures,
            &transport_stats,
        )
    };
    out(&text).context("could not write the result to stdout")?;
    Ok(())
}
