//! Scaling curves (throughput as publishers, subscribers and topics grow)
//! and peak memory (a 1,000,000-message backlog in the memory adapter, a
//! slow subscriber on each adapter), written to `scaling.json` and drawn
//! as SVG charts.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use switchyard::{Bytes, Message, Subscription, Transport};
use switchyard_testkit::RedisServer;

use crate::harness::{Row, median, payload};
use crate::ours::{self, Fanout};
use crate::svg::{Chart, Series};

#[derive(clap::Args, Debug)]
pub(crate) struct ScalingArgs {
    /// Payload size in bytes
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Messages per point (fan-out points publish fewer: about this many
    /// deliveries)
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Runs of each point (1 to 20); the median is reported, every run's
    /// figure is in the JSON
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
    repeats: u8,
    /// Where scaling.json and the charts go
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RssArgs {
    /// `backlog` (memory adapter: 1,000,000 messages retained, no reader)
    /// or `slow` (a subscriber that reads one message per millisecond
    /// while a publisher sends flat out)
    #[arg(long)]
    scenario: String,
    /// Adapter URL
    #[arg(long)]
    url: String,
    /// Messages to publish
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Payload size in bytes
    #[arg(long, default_value_t = 256)]
    size: usize,
}

const ADAPTERS: [&str; 3] = ["memory", "redis-streams", "redis-pubsub"];

fn url(adapter: &str, port: u16) -> String {
    match adapter {
        "memory" => "memory://?retention=10000".into(),
        "redis-streams" => format!("redis+streams://127.0.0.1:{port}?maxlen=100000"),
        _ => format!("redis+pubsub://127.0.0.1:{port}"),
    }
}

async fn open(url: &str) -> Result<Arc<dyn Transport>> {
    switchyard::connect(url)
        .await
        .with_context(|| format!("could not open {url}"))
}

/// Two transports (publisher, subscriber side): one for memory, two
/// replicas for the Redis adapters.
async fn pair(url: &str) -> Result<(Arc<dyn Transport>, Arc<dyn Transport>)> {
    let p = open(url).await?;
    let s = if p.capabilities().cross_process {
        open(url).await?
    } else {
        p.clone()
    };
    Ok((p, s))
}

async fn close(p: Arc<dyn Transport>, s: Arc<dyn Transport>) {
    let _ = p.close().await;
    let _ = s.close().await;
}

fn point(x: u64, row: &Row) -> Value {
    json!({
        "x": x,
        "msgs_per_sec": row.msgs_per_sec().round(),
        "runs_msgs_per_sec": row.runs.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "note": row.note,
    })
}

pub(crate) async fn run(args: ScalingArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let server = RedisServer::start().context("could not start redis-server")?;
    let machine = crate::machine::describe(&server);
    let (size, n, reps) = (args.size, args.messages, usize::from(args.repeats));
    let flush = || {
        let _ = server.cmd(&["FLUSHALL"]);
    };
    let mut doc = json!({
        "command": format!("scripts/bench-compare scaling (bench-compare scaling --size {size} --messages {n} --repeats {reps})"),
        "repeats": reps,
        "machine": machine,
        "size": size,
        "messages": n,
    });

    // Publishers 1 → 64 (publish throughput, one topic).
    let mut publishers = serde_json::Map::new();
    for adapter in ADAPTERS {
        let (p, s) = pair(&url(adapter, server.port())).await?;
        let mut points = Vec::new();
        for k in [1_u64, 2, 4, 8, 16, 32, 64] {
            let row = median(reps, || {
                flush();
                ours::publish_row("scaling", adapter, &p, size, n, k)
            })
            .await?;
            eprintln!(
                "  publishers {adapter:<14} {k:>3}: {:>10.0} msg/s",
                row.msgs_per_sec()
            );
            points.push(point(k, &row));
            flush();
        }
        close(p, s).await;
        publishers.insert(adapter.into(), points.into());
    }
    doc["publishers"] = publishers.into();

    // Subscribers 1 → 100 (fan-out deliveries/s, end to end).
    let mut subscribers = serde_json::Map::new();
    for adapter in ADAPTERS {
        let (p, s) = pair(&url(adapter, server.port())).await?;
        let mut points = Vec::new();
        for k in [1_usize, 3, 10, 30, 100] {
            let per = (n / k as u64).max(1000);
            let shape = Fanout {
                subscribers: k,
                publishers: 8,
                topics: 1,
            };
            let row = median(reps, || {
                flush();
                ours::fanout_row("scaling", adapter, &p, &s, size, per, shape)
            })
            .await?;
            eprintln!(
                "  subscribers {adapter:<13} {k:>3}: {:>10.0} deliveries/s",
                row.msgs_per_sec()
            );
            points.push(point(k as u64, &row));
            flush();
        }
        close(p, s).await;
        subscribers.insert(adapter.into(), points.into());
    }
    doc["subscribers"] = subscribers.into();

    // Topics 1 → 10,000 (one subscriber on all of them, 8 publishers
    // round robin over the topics; deliveries/s end to end).
    let mut topics = serde_json::Map::new();
    for adapter in ADAPTERS {
        let (p, s) = pair(&url(adapter, server.port())).await?;
        let mut points = Vec::new();
        for k in [1_usize, 10, 100, 1000, 10_000] {
            let shape = Fanout {
                subscribers: 1,
                publishers: 8,
                topics: k,
            };
            let started = Instant::now();
            let row = median(reps, || {
                flush();
                ours::fanout_row("scaling", adapter, &p, &s, size, n.max(k as u64 * 5), shape)
            })
            .await?;
            eprintln!(
                "  topics {adapter:<18} {k:>5}: {:>10.0} deliveries/s ({:.1} s with subscribing)",
                row.msgs_per_sec(),
                started.elapsed().as_secs_f64()
            );
            points.push(point(k as u64, &row));
            flush();
        }
        close(p, s).await;
        topics.insert(adapter.into(), points.into());
    }
    doc["topics"] = topics.into();

    // Peak RSS, each scenario in a child process of its own.
    let exe = std::env::current_exe().context("current_exe")?;
    let mut memory = Vec::new();
    let scenarios: Vec<(&str, String, u64)> = vec![
        ("backlog", "memory://?retention=1000000".into(), 1_000_000),
        ("slow", url("memory", server.port()), 200_000),
        ("slow", url("redis-streams", server.port()), 200_000),
        ("slow", url("redis-pubsub", server.port()), 200_000),
    ];
    for (scenario, url, messages) in scenarios {
        flush();
        let out = Command::new(&exe)
            .args(["rss", "--scenario", scenario, "--url", &url])
            .args([
                "--messages",
                &messages.to_string(),
                "--size",
                &size.to_string(),
            ])
            .output()
            .context("could not run the rss child")?;
        if !out.status.success() {
            bail!(
                "rss {scenario} {url} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut v: Value = serde_json::from_slice(&out.stdout).context("rss child output")?;
        // What the scenario left in Redis (the slow reader's backlog).
        v["redis_used_memory"] = server
            .info("memory")
            .ok()
            .and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("used_memory:").map(|s| s.trim().to_owned()))
            })
            .into();
        eprintln!("  rss {v}");
        memory.push(v);
    }
    doc["memory"] = memory.into();

    let path = args.out.join("scaling.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("could not write {}", path.display()))?;
    charts(&doc, &args.out)?;
    Ok(())
}

/// Draws the charts again from the JSON in `out` (no measuring).
pub(crate) fn render(out: &std::path::Path) -> Result<()> {
    let read = |name: &str| -> Result<Value> {
        let path = out.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    if let Ok(doc) = read("scaling.json") {
        charts(&doc, out)?;
    }
    for entry in std::fs::read_dir(out)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_prefix("compare-")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(svg) = compare_chart(&read(&name)?) {
            let path = out.join(format!("compare-{stem}.svg"));
            std::fs::write(&path, svg)
                .with_context(|| format!("could not write {}", path.display()))?;
        }
    }
    Ok(())
}

/// The scaling charts from `scaling.json`'s document.
fn charts(doc: &Value, out: &std::path::Path) -> Result<()> {
    for (key, title, x_label, y_label) in [
        (
            "publishers",
            "Publish throughput as publishers grow",
            "concurrent publishers",
            "msg/s",
        ),
        (
            "subscribers",
            "Fan-out deliveries as subscribers grow",
            "fan-out subscribers",
            "deliveries/s",
        ),
        (
            "topics",
            "Deliveries as topics grow (1 subscriber on all)",
            "topics",
            "deliveries/s",
        ),
    ] {
        let series = ADAPTERS
            .iter()
            .filter_map(|a| {
                let points = doc[key][a].as_array()?;
                Some(Series {
                    name: (*a).to_owned(),
                    points: points
                        .iter()
                        .filter_map(|p| Some((p["x"].as_f64()?, p["msgs_per_sec"].as_f64()?)))
                        .collect(),
                })
            })
            .collect();
        let chart = Chart {
            title: format!("{title} ({} B payloads)", doc["size"]),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series,
        };
        let path = out.join(format!("scaling-{key}.svg"));
        std::fs::write(&path, chart.render())
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

/// Draws the comparison of one `compare-SIZE.json` as a bar chart.
pub(crate) fn compare_chart(doc: &Value) -> Option<String> {
    let rows = doc["rows"].as_array()?;
    let bars: Vec<(String, f64, String)> = rows
        .iter()
        .filter(|r| r["latency_us"].is_null())
        .filter_map(|r| {
            Some((
                format!("{}: {}", r["section"].as_str()?, r["name"].as_str()?),
                r["msgs_per_sec"].as_f64()?,
                r["kind"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Some(crate::svg::bars(
        &format!("msg/s, {} B payloads (log scale)", doc["size"]),
        &bars,
    ))
}

/// Peak RSS of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One memory scenario; prints one JSON object.
pub(crate) fn rss(args: &RssArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let before = peak_rss_kib();
    let (secs, sent, received) = rt.block_on(async {
        let (p, s) = pair(&args.url).await?;
        let topic = ours::topic("rss")?;
        let body = payload(args.size);
        let started = Instant::now();
        let (sent, received) = match args.scenario.as_str() {
            "backlog" => {
                let mut sent = 0;
                while sent < args.messages {
                    let k = (args.messages - sent).min(1000);
                    p.publish_batch(
                        (0..k)
                            .map(|_| Message::new(topic.clone(), Bytes::copy_from_slice(&body)))
                            .collect(),
                    )
                    .await?;
                    sent += k;
                }
                (sent, 0)
            }
            "slow" => {
                let mut sub = s
                    .subscribe(Subscription::new(topic.clone()).buffer(4096))
                    .await?;
                let reader = tokio::spawn(async move {
                    let mut got = 0_u64;
                    let mut tick = tokio::time::interval(Duration::from_millis(1));
                    // Reads one message per millisecond for at most 5 s,
                    // whatever arrives.
                    let until = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < until {
                        tick.tick().await;
                        if let Ok(Some(Ok(d))) =
                            tokio::time::timeout(Duration::from_millis(1), sub.recv()).await
                        {
                            if d.needs_ack() {
                                let _ = d.ack().await;
                            }
                            got += 1;
                        }
                    }
                    let _ = sub.close().await;
                    got
                });
                // Publishes flat out for at most 5 s (Block overflow may
                // hold the publisher back: that is what bounds memory).
                let until = Instant::now() + Duration::from_secs(5);
                let mut sent = 0;
                while sent < args.messages && Instant::now() < until {
                    // A buffer of its own per message, as real payloads are.
                    let message = Message::new(topic.clone(), Bytes::copy_from_slice(&body));
                    let publish = p.publish(message);
                    if tokio::time::timeout(Duration::from_secs(5), publish)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                }
                (sent, reader.await.context("slow reader panicked")?)
            }
            other => bail!("no rss scenario {other}"),
        };
        let secs = started.elapsed().as_secs_f64();
        close(p, s).await;
        Ok::<_, anyhow::Error>((secs, sent, received))
    })?;
    let after = peak_rss_kib();
    println!(
        "{}",
        json!({
            "scenario": args.scenario,
            "url": args.url,
            "messages": args.messages,
            "published": sent,
            "size": args.size,
            "secs": secs,
            "slow_reader_received": received,
            "peak_rss_kib_before": before,
            "peak_rss_kib": after,
            "payload_bytes": sent * args.size as u64,
        })
    );
    Ok(())
}
