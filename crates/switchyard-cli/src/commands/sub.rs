//! `switchyard sub`: prints deliveries, one line each, flushed line by line.
//!
//! Each delivery is printed first and acked after (unless `--no-ack`), so
//! an interruption never acks a delivery that was not printed; unacked group
//! deliveries come back to the group. Ctrl-C and SIGTERM both stop it
//! cleanly: acks are flushed, fetched entries handed back, exit 0.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use clap::Args;
use switchyard::{Delivery, Start, SubscriberStats, Subscription, TopicFilter, TransportStats};

use super::support::{self, Bar};
use crate::GlobalOpts;
use crate::output::out;

/// Most entries a `--group --count N` member fetches ahead of printing.
const GROUP_PREFETCH: u64 = 32;

/// Options of `switchyard sub`.
#[derive(Args, Debug)]
pub(crate) struct SubArgs {
    /// What to subscribe to: a topic, a list `a,b`, or a pattern (`orders.*`,
    /// `robots.>`)
    #[arg(long, short = 't', value_name = "FILTER", value_parser = support::parse_filter)]
    topic: TopicFilter,

    /// Join this consumer group: each message goes to one member
    #[arg(long, short = 'g', value_name = "G")]
    group: Option<String>,

    /// The consumer name within the group (default: generated, unique)
    #[arg(long, short = 'c', value_name = "C", requires = "group")]
    consumer: Option<String>,

    /// Where to start: earliest, latest or after a message id (for a group:
    /// where the group starts when it is created)
    #[arg(long, value_name = "earliest|latest|ID", default_value = "latest",
          value_parser = support::parse_start)]
    from: Start,

    /// Exit 0 after this many deliveries
    #[arg(long, short = 'n', value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: Option<u64>,

    /// Give up after this many seconds: exit 1 when `--count` deliveries have
    /// not arrived by then; without `--count`, stop listening (exit 0)
    #[arg(long, value_name = "SECS", value_parser = support::parse_secs)]
    timeout: Option<Duration>,

    /// Do not ack: group deliveries come back to the group after its ack
    /// timeout
    #[arg(long)]
    no_ack: bool,

    /// One JSON object per line: topic, id, attempt, headers, payload (or
    /// payload_b64 when it is not UTF-8)
    #[arg(long)]
    json: bool,

    /// At exit, print the subscriber's and the transport's counters to
    /// stderr (every adapter counter, e.g. `pubsub.gaps`): two
    /// `stats: ...` lines, or one JSON object with `--json`
    #[arg(long)]
    stats: bool,
}

/// Why the receive loop ended.
enum End {
    Count,
    Timeout,
    Interrupted,
    Closed,
}

pub(crate) async fn run(args: SubArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let transport = support::connect(global).await?;
    let mut sub_stats = None;
    let result = receive(&transport, &args, &mut sub_stats).await;
    if args.stats {
        print_stats(sub_stats.as_ref(), &transport.stats(), args.json);
    }
    let closed = support::close(&transport).await;
    result?;
    closed
}

async fn receive(
    transport: &std::sync::Arc<dyn switchyard::Transport>,
    args: &SubArgs,
    sub_stats: &mut Option<SubscriberStats>,
) -> anyhow::Result<()> {
    // Before subscribing: a SIGTERM from then on ends the loop below like
    // Ctrl-C (hand back, flush acks, exit 0) instead of killing the process
    // with fetched entries left pending until the ack timeout.
    let stop = super::signal::stop();
    tokio::pin!(stop);
    let mut subscription = Subscription::new(args.topic.clone()).start(args.from);
    if let Some(group) = &args.group {
        subscription = match &args.consumer {
            Some(c) => subscription.group_member(group, c),
            None => subscription.group(group),
        };
        // A group member fetches as many entries as its buffer has room
        // for; with --count keep that small, so few entries are left
        // pending here (they return to the group after its ack timeout).
        if let Some(count) = args.count {
            let room = usize::try_from(count.min(GROUP_PREFETCH)).unwrap_or(1);
            subscription = subscription.buffer(room);
        }
    }
    let started = Instant::now();
    let deadline = args
        .timeout
        .map(|t| tokio::time::Instant::from(started + t));
    let subscribing = transport.subscribe(subscription);
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut sub = tokio::select! {
        biased;
        signal = &mut stop => {
            tracing::debug!(signal, "stopped before the subscription started");
            return Ok(());
        }
        r = tokio::time::timeout_at(deadline.unwrap_or(far), subscribing) => r
            .map_err(|_| anyhow!("could not subscribe to {} within --timeout", args.topic))?,
    }
    .map_err(|e| anyhow!(e))
    .with_context(|| format!("could not subscribe to {}", args.topic))?;
    tracing::debug!(filter = %args.topic, "subscribed");

    let bar = Bar::new(args.count, "received");
    let mut seen: u64 = 0;
    let timer = tokio::time::sleep_until(deadline.unwrap_or(far));
    tokio::pin!(timer);
    let mut failure = None;
    let end = loop {
        if args.count.is_some_and(|c| seen >= c) {
            break End::Count;
        }
        let item = tokio::select! {
            biased;
            signal = &mut stop => {
                tracing::debug!(signal, "stopping: handing back what was fetched");
                break End::Interrupted;
            }
            _ = &mut timer => break End::Timeout,
            item = sub.recv() => item,
        };
        let delivery = match item {
            None => break End::Closed,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                // One bad delivery (malformed payload, a gap): report, go on.
                bar.suspend(|| crate::output::error_line(&format!("skipped a delivery: {e}")));
                continue;
            }
        };
        let line = render(&delivery, args.json);
        bar.suspend(|| out(&line))
            .context("could not write to stdout")?;
        seen += 1;
        bar.inc(1);
        if !args.no_ack && delivery.needs_ack() {
            let id = delivery.id();
            if let Err(e) = delivery.ack().await {
                failure = Some(anyhow!(e).context(format!("could not ack {id}")));
                break End::Closed;
            }
        }
        // With --no-ack the delivery is dropped here: in a group it comes
        // back after the ack timeout.
    };
    bar.finish();
    *sub_stats = Some(sub.stats());
    let closed = tokio::time::timeout(Duration::from_secs(5), sub.close()).await;
    if let Some(e) = failure {
        return Err(e);
    }
    match end {
        End::Count | End::Interrupted => {}
        End::Timeout => {
            if let Some(count) = args.count {
                return Err(anyhow!(
                    "timed out after {:.1}s with {seen} of {count} deliveries on {}: publish more, or raise --timeout",
                    started.elapsed().as_secs_f64(),
                    args.topic
                ));
            }
        }
        End::Closed => {
            if let Some(count) = args.count {
                return Err(anyhow!(
                    "the subscription to {} ended after {seen} of {count} deliveries (the transport closed)",
                    args.topic
                ));
            }
        }
    }
    match closed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!(e).context("could not close the subscription")),
        Err(_) => Err(anyhow!("the subscription did not close within 5s")),
    }
}

/// `--stats`: the subscriber's counters (when it was subscribed) and the
/// transport's, on stderr.
fn print_stats(sub: Option<&SubscriberStats>, transport: &TransportStats, json: bool) {
    use std::io::Write as _;
    let sub = sub.map(super::stats::SubscriberTotals::of);
    let text = if json {
        let value = serde_json::json!({
            "stats": {
                "subscriber": sub.as_ref().map(|s| s.json()),
                "transport": super::stats::transport_json(transport),
            }
        });
        format!("{value}\n")
    } else {
        let mut text = String::new();
        if let Some(s) = &sub {
            text.push_str(&format!("stats: subscriber {}\n", s.line()));
        }
        text.push_str(&format!(
            "stats: transport {}\n",
            super::stats::transport_line(transport)
        ));
        text
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// One output line for `delivery`, newline included.
fn render(delivery: &Delivery, json: bool) -> String {
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert("topic".into(), delivery.topic().as_str().into());
        obj.insert("id".into(), delivery.id().to_string().into());
        obj.insert("attempt".into(), delivery.attempt().into());
        let headers: serde_json::Map<String, serde_json::Value> = delivery
            .headers()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        obj.insert("headers".into(), headers.into());
        support::put_payload(&mut obj, delivery.payload());
        format!("{}\n", serde_json::Value::Object(obj))
    } else {
        let mut line = format!("{} {}", delivery.id(), delivery.topic());
        let mut extra: Vec<String> = Vec::new();
        if delivery.attempt() > 1 {
            extra.push(format!("attempt={}", delivery.attempt()));
        }
        for (k, v) in delivery.headers().iter() {
            extra.push(format!("{k}={}", v.escape_debug()));
        }
        if !extra.is_empty() {
            line.push_str(&format!(" [{}]", extra.join(" ")));
        }
        line.push(' ');
        line.push_str(&support::payload_for_line(delivery.payload()));
        line.push('\n');
        line
    }
}
