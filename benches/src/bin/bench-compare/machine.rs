//! What the figures were measured on: cores, CPU model, Redis and NATS
//! versions, kernel, date and load.

use std::process::Command;

use serde_json::{Value, json};
use switchyard_testkit::RedisServer;

/// The machine as JSON (also printed at the start of a run).
pub(crate) fn describe(server: &RedisServer) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024 / 1024);
    json!({
        "cores": cores,
        "cpu_model": model,
        "memory_gib": mem_total,
        "kernel": command("uname", &["-r"]),
        "redis_version": server.redis_version().ok(),
        "redis_benchmark": command("redis-benchmark", &["--version"]),
        "nats_server": command("nats-server", &["--version"]),
        "rustc": command("rustc", &["--version"]),
        "date_utc": command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "load_average_before": load_average(),
        "note": "shared 2-core VM: other engineers' builds may have been running",
    })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
pub(crate) fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn command(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}
