//! What a run shows: the progress bar on a terminal, and the text or JSON
//! report of a run that passed its checks.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::runner::{Figures, Shared};
use super::{BenchArgs, BenchMode, Stats};
use crate::commands::stats::{transport_json, transport_line};

/// A progress bar on stderr, only when stderr is a terminal.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(shared: Arc<Shared>, expected: u64, copies: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let counts_arrivals = copies > 0;
        let len = expected.saturating_mul(copies.max(1));
        let bar = indicatif::ProgressBar::with_draw_target(
            (len > 0).then_some(len),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(if counts_arrivals {
            "delivered"
        } else {
            "published"
        });
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let n = if counts_arrivals {
                    shared.arrivals.load(Ordering::Relaxed)
                } else {
                    shared.published.load(Ordering::Relaxed)
                };
                ticking.set_position(n);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Messages per second, 0 when nothing was timed.
fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Percentiles in microseconds.
fn percentiles_us(h: &Histogram<u64>) -> [(&'static str, f64); 5] {
    let us = |ns: u64| ns as f64 / 1000.0;
    [
        ("p50", us(h.value_at_quantile(0.50))),
        ("p90", us(h.value_at_quantile(0.90))),
        ("p99", us(h.value_at_quantile(0.99))),
        ("p999", us(h.value_at_quantile(0.999))),
        ("max", us(h.max())),
    ]
}

/// The throughput figure in MB/s (10^6 bytes): publishes in publish mode,
/// end-to-end deliveries otherwise.
fn mb_per_sec(args: &BenchArgs, f: &Figures) -> f64 {
    let (n, secs) = if args.mode == BenchMode::Publish {
        (f.published, f.publish_secs)
    } else {
        (f.deliveries, f.deliver_secs)
    };
    rate(n, secs) * args.size as f64 / 1e6
}

pub(super) fn json_report(
    args: &BenchArgs,
    url: &str,
    run_id: &str,
    adapter: &str,
    f: &Figures,
    stats: &Stats,
) -> String {
    let delivering = args.mode != BenchMode::Publish;
    let latency = f.latency_ns.as_ref().map(|h| {
        let mut m = serde_json::Map::new();
        for (k, v) in percentiles_us(h) {
            m.insert(k.to_owned(), serde_json::json!(round2(v)));
        }
        serde_json::Value::Object(m)
    });
    let value = serde_json::json!({
        "mode": args.mode.as_str(),
        "url": url,
        "adapter": adapter,
        "run_id": run_id,
        "messages": f.published,
        "size": args.size,
        "publishers": args.publishers,
        "subscribers": if delivering { args.subscribers } else { 0 },
        "topics": args.topics,
        "batch": args.batch,
        "rate": (args.mode == BenchMode::Latency).then_some(args.rate),
        "publish_secs": round6(f.publish_secs),
        "publish_msgs_per_sec": round2(rate(f.published, f.publish_secs)),
        "deliveries": delivering.then_some(f.deliveries),
        "deliver_secs": delivering.then(|| round6(f.deliver_secs)),
        "deliver_msgs_per_sec": delivering.then(|| round2(rate(f.deliveries, f.deliver_secs))),
        "mb_per_sec": round2(mb_per_sec(args, f)),
        "latency_us": latency,
        "missing": 0,
        "duplicates": 0,
        "redelivered": f.redelivered,
        "stats": {
            "transport": transport_json(&stats.publisher),
            "subscriber_transport": stats.subscriber.as_ref().map(transport_json),
            "subscribers": delivering.then(|| f.subscribers.json()),
        },
    });
    format!("{value}\n")
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

pub(super) fn text_report(
    args: &BenchArgs,
    url: &str,
    run_id: &str,
    adapter: &str,
    f: &Figures,
    stats: &Stats,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "switchyard bench --mode {} on {url} ({adapter} adapter), run {run_id}",
        args.mode.as_str()
    );
    let _ = writeln!(
        s,
        "{:<10}{} x {} B on {} topic(s), {} publisher(s){}",
        "messages",
        f.published,
        args.size,
        args.topics,
        args.publishers,
        match args.mode {
            BenchMode::Publish => String::new(),
            BenchMode::Group => format!(", a group of {}", args.subscribers),
            _ => format!(", {} fan-out subscriber(s)", args.subscribers),
        }
    );
    let publish_rate = rate(f.published, f.publish_secs);
    let _ = writeln!(
        s,
        "{:<10}{:>12.0} msg/s {:>9.2} MB/s  ({} in {:.3} s)",
        "publish",
        publish_rate,
        publish_rate * args.size as f64 / 1e6,
        f.published,
        f.publish_secs
    );
    if args.mode != BenchMode::Publish {
        let deliver_rate = rate(f.deliveries, f.deliver_secs);
        let _ = writeln!(
            s,
            "{:<10}{:>12.0} msg/s {:>9.2} MB/s  ({} deliveries in {:.3} s, end to end)",
            "deliver",
            deliver_rate,
            deliver_rate * args.size as f64 / 1e6,
            f.deliveries,
            f.deliver_secs
        );
    }
    if let Some(h) = &f.latency_ns {
        let parts: Vec<String> = percentiles_us(h)
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect();
        let _ = writeln!(
            s,
            "{:<10}{} (µs, from the intended send time at {} msg/s)",
            "latency",
            parts.join("  "),
            args.rate
        );
    }
    let _ = writeln!(
        s,
        "{:<10}every message counted: 0 missing, 0 duplicated{}",
        "checked",
        if f.redelivered > 0 {
            format!(" ({} redelivered, allowed in a group)", f.redelivered)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "{:<10}transport {}",
        "stats",
        transport_line(&stats.publisher)
    );
    if let Some(sub_side) = &stats.subscriber {
        let _ = writeln!(
            s,
            "{:<10}subscriber transport {}",
            "",
            transport_line(sub_side)
        );
    }
    if args.mode != BenchMode::Publish {
        let _ = writeln!(s, "{:<10}subscribers {}", "", f.subscribers.line());
    }
    s
}
