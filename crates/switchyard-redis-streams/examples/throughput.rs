//! A quick publish throughput check (not a benchmark with statistics; see
//! the criterion benches for that): 64 concurrent publishers send 200,000
//! messages of 16 bytes to a fresh testkit `redis-server`, next to
//! `redis-benchmark -P 64 -n 200000 XADD` on the same server.
//!
//! ```text
//! cargo run --release -p switchyard-redis-streams --example throughput [-- MESSAGES PUBLISHERS PAYLOAD_BYTES]
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use switchyard_core::{Message, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::RedisServer;

/// User + system CPU time of a process, in clock ticks (Linux only).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn redis_benchmark(server: &RedisServer, n: usize, payload: &str) -> Option<f64> {
    let bin = RedisServer::benchmark_path()?;
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-P", "64", "-n", &n.to_string(), "-q"])
        .args(["XADD", "bench:s", "*", "p", payload])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD bench:s * p xxx: 812345.67 requests per second, p50=..."
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("requests per second"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(200_000);
    let publishers = args.get(1).copied().unwrap_or(64);
    let size = args.get(2).copied().unwrap_or(16);
    let payload = "x".repeat(size);

    let server = RedisServer::start().expect("redis-server");
    let baseline = if std::env::var_os("SY_NO_BASELINE").is_some() {
        None
    } else {
        redis_benchmark(&server, total, &payload)
    };
    server.cmd(&["DEL", "bench:s"]).expect("DEL");

    let extra = std::env::var("SY_PARAMS").unwrap_or_default();
    let url = format!(
        "redis+streams://127.0.0.1:{}/0?namespace=bench{extra}",
        server.port()
    );
    let t = Arc::new(
        RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
            .await
            .unwrap(),
    );
    let topic = Topic::new("bench.s").unwrap();
    // Warm-up.
    for _ in 0..1000 {
        t.publish(Message::new(topic.clone(), payload.clone()))
            .await
            .unwrap();
    }
    let per = total / publishers;
    let server_pid = server.pid().map(|p| p.to_string()).unwrap_or_default();
    let cpu_before = (cpu_ticks("self"), cpu_ticks(&server_pid));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let t = t.clone();
        let topic = topic.clone();
        let payload = bytes::Bytes::from(payload.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                t.publish(Message::new(topic.clone(), payload.clone()))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let cpu_after = (cpu_ticks("self"), cpu_ticks(&server_pid));
    if let ((Some(c0), Some(s0)), (Some(c1), Some(s1))) = (cpu_before, cpu_after) {
        let secs = elapsed.as_secs_f64();
        println!(
            "cpu: client {:.0}%, redis-server {:.0}% (of one core)",
            (c1 - c0) as f64 / 100.0 / secs * 100.0,
            (s1 - s0) as f64 / 100.0 / secs * 100.0
        );
    }
    let sent = per * publishers;
    let rate = sent as f64 / elapsed.as_secs_f64();
    println!(
        "switchyard redis-streams: {publishers} publishers, {sent} x {size} B in {elapsed:.2?}: {rate:.0} msg/s"
    );
    match baseline {
        Some(b) => println!(
            "redis-benchmark -P 64 -n {total} XADD ({size} B): {b:.0} msg/s; ratio {:.2}",
            rate / b
        ),
        None => println!("redis-benchmark not found or its output not understood"),
    }
    t.close().await.unwrap();
}
