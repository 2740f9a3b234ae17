//! `knee`: the publish rate at which the Redis Pub/Sub backplane starts to
//! lose messages. 64 publishers on replica A offer a fixed total rate for
//! a fixed time; 1 and 10 subscribers on replica B (default subscription
//! settings unless `--buffer` says otherwise) read as fast as they can;
//! what did not arrive is counted. Rates are tried in increasing order and
//! each subscriber count stops at its first lossy rate. Writes `knee.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::json;
use switchyard::{Message, Subscription, Transport};
use switchyard_testkit::RedisServer;

use crate::harness::{Readers, payload, round, share};
use crate::ours::topic;

/// The longest one rate point may take, publishing and draining.
const POINT_TIMEOUT: Duration = Duration::from_secs(120);
/// Deliveries stopped for this long: the rest is lost.
const IDLE: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug)]
pub(crate) struct KneeArgs {
    /// Offered total publish rates, msg/s, tried in increasing order
    #[arg(long, value_delimiter = ',', default_values_t = [100_000_u64, 200_000, 400_000, 800_000, 1_600_000])]
    rates: Vec<u64>,
    /// Subscriber counts on replica B
    #[arg(long, value_delimiter = ',', default_values_t = [1_usize, 10])]
    subscribers: Vec<usize>,
    /// Publishing tasks on replica A
    #[arg(long, default_value_t = 64)]
    publishers: u64,
    /// Seconds each rate is offered (1 to 60)
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Payload size in bytes
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Each subscriber's buffer (the default subscription's: 1024)
    #[arg(long, default_value_t = Subscription::DEFAULT_BUFFER)]
    buffer: usize,
    /// Extra URL parameters of both replicas, e.g. `remote_wait=0`
    #[arg(long, default_value = "")]
    params: String,
    /// Where knee.json goes
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// One offered rate at one subscriber count.
struct Point {
    rate: u64,
    subscribers: usize,
    /// Rate the publishers achieved (they may fall short of the offer).
    achieved: f64,
    target: u64,
    got: u64,
    lost_signalled: u64,
    /// Messages replica A's outbox dropped (full or expired): the
    /// publishing side could not keep up with the offer.
    outbox_dropped: u64,
    /// Replica B's subscribing connection reconnected (Redis closed it,
    /// e.g. past its output buffer limit).
    reconnects: u64,
}

/// `n` messages from `publishers` tasks, paced to `rate` msg/s in total
/// (each task's k-th message is due at `k * publishers / rate` s); returns
/// the seconds publishing took.
async fn paced(
    t: &Arc<dyn Transport>,
    topic: &switchyard::Topic,
    size: usize,
    n: u64,
    rate: u64,
    publishers: u64,
) -> Result<f64> {
    let body = payload(size);
    let started = tokio::time::Instant::now();
    let mut joins = Vec::new();
    for i in 0..publishers {
        let (t, body, topic) = (t.clone(), body.clone(), topic.clone());
        let mine = share(n, publishers, i);
        let gap = Duration::from_secs_f64(publishers as f64 / rate.max(1) as f64);
        joins.push(tokio::spawn(async move {
            for k in 0..mine {
                let due = started + gap.mul_f64(k as f64);
                if due > tokio::time::Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
                t.publish(Message::new(topic.clone(), body.clone())).await?;
            }
            Ok::<_, switchyard::Error>(())
        }));
    }
    for j in joins {
        j.await.context("a publisher panicked")??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn point(
    args: &KneeArgs,
    a: &Arc<dyn Transport>,
    b: &Arc<dyn Transport>,
    rate: u64,
    subscribers: usize,
) -> Result<Point> {
    let topic = topic("knee")?;
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        subs.push(
            b.subscribe(Subscription::new(topic.clone()).buffer(args.buffer))
                .await?,
        );
    }
    let n = ((rate as f64) * args.seconds).round().max(1.0) as u64;
    let (dropped_before, reconnects_before) = (a.stats().dropped, b.stats().reconnects);
    let readers = Readers::start(subs, Instant::now());
    let secs = paced(a, &topic, args.size, n, rate, args.publishers).await?;
    let target = n * subscribers as u64;
    // Pub/Sub is at-most-once: wait until deliveries stop, count them.
    let _ = readers.wait_for(target, IDLE).await;
    let lost_signalled = readers.lost();
    let got = readers.stop().await?;
    let outbox_dropped = a.stats().dropped.saturating_sub(dropped_before);
    let reconnects = b.stats().reconnects.saturating_sub(reconnects_before);
    Ok(Point {
        outbox_dropped,
        reconnects,
        rate,
        subscribers,
        achieved: n as f64 / secs,
        target,
        got,
        lost_signalled,
    })
}

pub(crate) async fn run(args: KneeArgs) -> Result<()> {
    anyhow::ensure!(
        (1.0..=60.0).contains(&args.seconds),
        "--seconds must be 1 to 60, got {}",
        args.seconds
    );
    anyhow::ensure!(args.publishers >= 1, "--publishers must be at least 1");
    let server = RedisServer::start().context("could not start redis-server")?;
    let machine = crate::machine::describe(&server);
    let mut url = format!("redis+pubsub://127.0.0.1:{}", server.port());
    if !args.params.is_empty() {
        url.push('?');
        url.push_str(&args.params);
    }
    let mut rates = args.rates.clone();
    rates.sort_unstable();
    let mut points = Vec::new();
    let mut knees = Vec::new();
    println!(
        "| subscribers | offered msg/s | achieved msg/s | delivered | lost | of which announced | dropped by A's outbox | B reconnects |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &subscribers in &args.subscribers {
        let a = crate::open(&url).await?;
        let b = crate::open(&url).await?;
        let mut knee = None;
        let mut first_lossy = None;
        for &rate in &rates {
            let p = tokio::time::timeout(POINT_TIMEOUT, point(&args, &a, &b, rate, subscribers))
                .await
                .with_context(|| {
                    format!(
                        "{rate} msg/s to {subscribers} subscriber(s) took over {POINT_TIMEOUT:?}"
                    )
                })??;
            let lost = p.target.saturating_sub(p.got);
            println!(
                "| {} | {} | {:.0} | {} | {lost} | {} | {} | {} |",
                p.subscribers,
                p.rate,
                p.achieved,
                p.got,
                p.lost_signalled,
                p.outbox_dropped,
                p.reconnects
            );
            points.push(p);
            if lost > 0 {
                first_lossy = Some(rate);
                break;
            }
            knee = Some(rate);
        }
        knees.push(json!({
            "subscribers": subscribers,
            "highest_lossless_rate": knee,
            "first_lossy_rate": first_lossy,
        }));
        println!(
            "knee, {subscribers} subscriber(s): lossless up to {}; first loss at {}",
            knee.map_or("none of the rates".into(), |r| format!("{r} msg/s offered")),
            first_lossy.map_or("none of the rates".into(), |r| format!("{r} msg/s offered")),
        );
        let _ = (a.close().await, b.close().await);
    }
    let doc = json!({
        "command": "scripts/bench-compare knee",
        "machine": machine,
        "load_average_after": crate::machine::load_average(),
        "publishers": args.publishers,
        "seconds": args.seconds,
        "size": args.size,
        "buffer": args.buffer,
        "params": args.params,
        "knees": knees,
        "points": points.iter().map(|p| json!({
            "subscribers": p.subscribers,
            "offered": p.rate,
            "achieved": round(p.achieved, 0),
            "target": p.target,
            "delivered": p.got,
            "lost": p.target.saturating_sub(p.got),
            "lost_announced": p.lost_signalled,
            "outbox_dropped": p.outbox_dropped,
            "reconnects": p.reconnects,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))?;
    let path = args.out.join("knee.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("could not write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
