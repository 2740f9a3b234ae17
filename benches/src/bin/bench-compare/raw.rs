//! The raw limits: `redis-benchmark -P 64`, hand-written redis-rs loops and
//! tokio channels.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use switchyard::Bytes;

use crate::harness::{Kind, Row, payload, share, spawn_pacer};

/// `redis-benchmark -P 64` running `command` (`XADD key * d PAYLOAD` or
/// `PUBLISH channel PAYLOAD`) `n` times with 50 clients; msg/s from its
/// CSV output.
pub(crate) fn redis_benchmark(
    section: &'static str,
    port: u16,
    command: &str,
    size: usize,
    n: u64,
) -> Result<Row> {
    let body = "x".repeat(size);
    let args: Vec<String> = match command {
        "XADD" => vec![
            "XADD".into(),
            "rb:stream".into(),
            "*".into(),
            "d".into(),
            body,
        ],
        "PUBLISH" => vec!["PUBLISH".into(), "rb:channel".into(), body],
        // The entry switchyard writes: v (wire version), d (32-hex dedup
        // id), p (payload); see docs/wire-format.md.
        "XADD-vdp" => ["XADD", "rb:stream:vdp", "*", "v", "1", "d"]
            .into_iter()
            .map(String::from)
            .chain(["0123456789abcdef0123456789abcdef".into(), "p".into(), body])
            .collect(),
        other => bail!("no redis-benchmark command {other}"),
    };
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-P", "64", "-c", "50", "-n", &n.to_string(), "--csv"])
        .args(&args)
        .output()
        .context("could not run redis-benchmark (install redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "test","rps","avg_latency_ms",…  then one line per test.
    let line = stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .context("redis-benchmark printed nothing")?;
    let rps: f64 = line
        .split("\",\"")
        .nth(1)
        .and_then(|f| f.trim_matches('"').parse().ok())
        .with_context(|| format!("no rps in redis-benchmark's line {line:?}"))?;
    Ok(Row {
        section,
        name: match command {
            "XADD-vdp" => {
                "redis-benchmark -P 64 -c 50 XADD with switchyard's fields v, d, p".into()
            }
            _ => format!("redis-benchmark -P 64 -c 50 {command}"),
        },
        kind: Kind::Raw,
        messages: n,
        size,
        secs: n as f64 / rps,
        runs: Vec::new(),
        latency: None,
        note: match command {
            "XADD" => "one field per entry; no client-side work beyond RESP".into(),
            "XADD-vdp" => "the same entry shape as switchyard's (3 fields)".into(),
            _ => "no subscriber".into(),
        },
    })
}

/// One task on one multiplexed redis-rs connection sending pipelines of
/// `pipeline` XADDs (one field), `tasks` such tasks at once.
pub(crate) async fn redis_rs_pipelined_xadd(
    url: &str,
    size: usize,
    n: u64,
    pipeline: usize,
    tasks: u64,
) -> Result<Row> {
    let client = redis::Client::open(url).context("redis-rs client")?;
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .context("redis-rs connection")?;
    let key = format!("raw:xadd:{}", rand_suffix());
    let body = payload(size);
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..tasks {
        let mut conn = conn.clone();
        let (key, body) = (key.clone(), body.clone());
        let mine = share(n, tasks, i);
        joins.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < mine {
                let k = (mine - sent).min(pipeline as u64);
                let mut pipe = redis::pipe();
                for _ in 0..k {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("*")
                        .arg("d")
                        .arg(body.as_ref())
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
                sent += k;
            }
            Ok::<_, redis::RedisError>(())
        }));
    }
    for j in joins {
        j.await.context("a redis-rs task panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut conn = conn;
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(Row {
        section: "streams-publish",
        name: format!("redis-rs pipelined XADD ({pipeline} per pipeline, {tasks} task(s))"),
        kind: Kind::Raw,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: "hand-written loop, one multiplexed connection".into(),
    })
}

/// `n` entries pre-filled, then `XREADGROUP COUNT 500` and one `XACK` of
/// the whole batch per read, on one connection.
pub(crate) async fn redis_rs_xreadgroup_ack(url: &str, size: usize, n: u64) -> Result<Row> {
    let client = redis::Client::open(url).context("redis-rs client")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("redis-rs connection")?;
    let key = format!("raw:group:{}", rand_suffix());
    let body = payload(size);
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        let mut pipe = redis::pipe();
        for _ in 0..k {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("d")
                .arg(body.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        left -= k;
    }
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("g")
        .arg("0")
        .query_async::<()>(&mut conn)
        .await?;
    let started = Instant::now();
    let mut got = 0_u64;
    while got < n {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(500)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids.into_iter().map(|e| e.id))
            .collect();
        if ids.is_empty() {
            bail!("XREADGROUP returned nothing at {got} of {n}");
        }
        got += ids.len() as u64;
        redis::cmd("XACK")
            .arg(&key)
            .arg("g")
            .arg(&ids)
            .query_async::<()>(&mut conn)
            .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(Row {
        section: "streams-consume",
        name: "redis-rs XREADGROUP COUNT 500 + one XACK per batch (1 consumer)".into(),
        kind: Kind::Raw,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: "hand-written loop, backlog pre-filled".into(),
    })
}

/// `tokio::sync::broadcast` to `receivers` receivers that each read every
/// message, lossless (the sender waits while the ring is nearly full,
/// like the memory adapter's `Block` policy). Counts deliveries.
pub(crate) async fn tokio_broadcast(receivers: usize, size: usize, n: u64) -> Result<Row> {
    const CAPACITY: usize = 4096;
    let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(CAPACITY);
    let body = payload(size);
    let readers: Vec<_> = (0..receivers)
        .map(|_| {
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let mut got = 0;
                while got < n {
                    match rx.recv().await {
                        Ok(_) => got += 1,
                        Err(e) => return Err(anyhow::anyhow!("broadcast receiver: {e}")),
                    }
                }
                Ok(got)
            })
        })
        .collect();
    let started = Instant::now();
    for _ in 0..n {
        while tx.len() >= CAPACITY - 64 {
            tokio::task::yield_now().await;
        }
        tx.send(body.clone())
            .map_err(|_| anyhow::anyhow!("no receivers"))?;
    }
    let mut deliveries = 0;
    for r in readers {
        deliveries += r.await.context("a broadcast reader panicked")??;
    }
    Ok(Row {
        section: "memory-fanout",
        name: format!("tokio::sync::broadcast, {receivers} receiver(s)"),
        kind: Kind::Raw,
        messages: deliveries,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: "deliveries/s; lossless (sender waits for room)".into(),
    })
}

/// A bounded `tokio::sync::mpsc` channel from `senders` tasks to one reader.
pub(crate) async fn tokio_mpsc(senders: u64, size: usize, n: u64) -> Result<Row> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4096);
    let body = payload(size);
    let reader = tokio::spawn(async move {
        let mut got = 0_u64;
        while rx.recv().await.is_some() {
            got += 1;
        }
        got
    });
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..senders {
        let (tx, body) = (tx.clone(), body.clone());
        let mine = share(n, senders, i);
        joins.push(tokio::spawn(async move {
            for _ in 0..mine {
                if tx.send(body.clone()).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    for j in joins {
        j.await.context("an mpsc sender panicked")?;
    }
    let got = reader.await.context("the mpsc reader panicked")?;
    if got != n {
        bail!("mpsc delivered {got} of {n}");
    }
    Ok(Row {
        section: "memory-publish",
        name: format!("tokio::sync::mpsc (4096), {senders} sender(s)"),
        kind: Kind::Raw,
        messages: n,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: "send and receive".into(),
    })
}

/// A short random suffix for keys.
pub(crate) fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    format!("{:x}{nanos:08x}", std::process::id())
}

/// The latency reference for the backplane: `n` messages offered at `rate`
/// msg/s by a pacing thread, as `ours::latency_row` does, sent by a task
/// that pipelines whatever is waiting as redis-rs `PUBLISH`es on one
/// multiplexed connection, and received by a redis-rs `SUBSCRIBE` on
/// another connection. Latency is arrival minus the intended send time.
pub(crate) async fn redis_rs_pubsub_latency(
    url: &str,
    size: usize,
    rate: u64,
    n: u64,
) -> Result<Row> {
    use futures::StreamExt as _;

    let client = redis::Client::open(url).context("redis-rs client")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("redis-rs connection")?;
    let mut sub = client.get_async_pubsub().await.context("redis-rs pubsub")?;
    let channel = format!("raw:latency:{}", rand_suffix());
    sub.subscribe(&channel).await?;
    let size = size.max(8);
    let epoch = Instant::now();
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Vec<u8>>(usize::try_from(n).unwrap_or(1).max(1));
    let pacer = spawn_pacer(n, rate, size, epoch, move |body| {
        tx.blocking_send(body)
            .map_err(|_| anyhow::anyhow!("the publishing task stopped"))
    });
    let ch = channel.clone();
    let sender = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut pipe = redis::pipe();
            pipe.cmd("PUBLISH").arg(&ch).arg(first).ignore();
            for _ in 1..1024 {
                match rx.try_recv() {
                    Ok(body) => {
                        pipe.cmd("PUBLISH").arg(&ch).arg(body).ignore();
                    }
                    Err(_) => break,
                }
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        anyhow::Ok(())
    });
    let mut h = crate::harness::histogram()?;
    let mut messages = sub.on_message();
    let mut got = 0;
    while got < n {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await
        else {
            bail!("raw latency run stalled at {got} of {n}");
        };
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = m
            .get_payload_bytes()
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .context("a foreign payload")?;
        h.saturating_record(now.saturating_sub(due).max(1));
        got += 1;
    }
    drop(messages);
    pacer.await.context("the pacing thread panicked")??;
    sender.await.context("the publishing task panicked")??;
    Ok(Row {
        section: "latency",
        name: format!("redis-rs PUBLISH / SUBSCRIBE, latency at {rate} msg/s"),
        kind: Kind::Raw,
        messages: n,
        size,
        secs: n as f64 / rate as f64,
        runs: Vec::new(),
        latency: Some(crate::harness::Latency::from_histogram(&h)),
        note: "hand-written loop: pacing thread, pipelined PUBLISH, one SUBSCRIBE connection"
            .into(),
    })
}
