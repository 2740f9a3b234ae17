//! `bench-compare wire`: the Redis Streams writer's protocol layer measured
//! both ways on one connection, over plain TCP and over TLS, so the
//! hand-written RESP of `publish` can be judged against redis-rs.
//!
//! - **hand-written**: `switchyard_redis::lean::connect` (the writer's own
//!   connection), pipelines encoded with the writer's XADD encoder
//!   (`fuzzing::put_xadd`) into one buffer and written in one go, replies
//!   parsed by a reader task with the writer's reply parser
//!   (`fuzzing::parse_publish_reply`, an id per XADD);
//! - **redis-rs**: a `MultiplexedConnection` from the redis-rs client
//!   switchyard builds for the same URL (same TLS settings), a
//!   `redis::pipe()` of the same XADDs (`fuzzing::xadd_cmd`) per pipeline,
//!   `query_async::<Vec<String>>` of the ids;
//!
//! both with the same entries (switchyard's `v d p` fields), the same
//! pipeline size (the writer's default `writer_batch`) and the same number
//! of pipelines in flight (the default `writer_in_flight`). For context, the
//! real transport: `publish` from 64 tasks on a `redis+streams://` /
//! `rediss+streams://` transport (queue, coalescing, one caller per id).
//!
//! Every round runs every row once, the hand-written one and the redis-rs
//! one back to back (A B A B …), so a change in the machine's load hits both
//! alike. Besides msg/s each run records this process' CPU time per message
//! (all threads, `/proc/self/task/*/schedstat`, over the measured window)
//! and how busy Redis was (`INFO cpu` over the wall time), and checks with
//! `XLEN` that the stream holds every message. Writes `wire-SIZE.json`
//! (every round's figures) and `wire.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use switchyard::redis_streams::{RedisConfig, StreamsConfig, fuzzing, keys};
use switchyard::{Message, MessageId, Topic, Transport};
use switchyard_redis::lean::write_flush;
use switchyard_testkit::RedisServer;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};

use crate::harness::{payload, round};

/// The longest one measured run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Initial read buffer of the hand-written reader (as the writer's).
const READ_BUF: usize = 64 * 1024;

#[derive(clap::Args, Debug)]
pub(crate) struct WireArgs {
    /// Payload sizes in bytes
    #[arg(long, value_delimiter = ',', default_values_t = [16_usize, 256])]
    sizes: Vec<usize>,
    /// Messages per measured run
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Rounds; each runs every row once, hand-written then redis-rs
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// XADDs per pipeline (default: the writer's `writer_batch`)
    #[arg(long)]
    batch: Option<usize>,
    /// Pipelines in flight (default: the writer's `writer_in_flight`)
    #[arg(long)]
    in_flight: Option<usize>,
    /// `tcp`, `tls` or both (`tls` needs the `tls` feature)
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("tcp"), String::from("tls")])]
    transports: Vec<String>,
    /// Concurrent `publish` tasks of the context row (0: no context row)
    #[arg(long, default_value_t = 64)]
    publishers: u64,
    /// Where the JSON and markdown go
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    HandWritten,
    RedisRs,
    Publish,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Which::HandWritten => "hand-written",
            Which::RedisRs => "redis-rs",
            Which::Publish => "switchyard-publish",
        }
    }

    /// The short label of the markdown table.
    fn label(self, publishers: u64) -> String {
        match self {
            Which::HandWritten => "A hand-written (lean connection)".into(),
            Which::RedisRs => "B redis-rs (pipe, multiplexed)".into(),
            Which::Publish => format!("switchyard `publish`, {publishers} tasks"),
        }
    }

    fn name(self, batch: usize, in_flight: usize, publishers: u64) -> String {
        match self {
            Which::HandWritten => format!(
                "A hand-written RESP: lean connection, writer's XADD encoder and reply parser ({batch} per pipeline, {in_flight} in flight)"
            ),
            Which::RedisRs => format!(
                "B redis-rs: redis::pipe() on a MultiplexedConnection, ids as Vec<String> ({batch} per pipeline, {in_flight} in flight)"
            ),
            Which::Publish => {
                format!("switchyard redis-streams publish from {publishers} tasks (context)")
            }
        }
    }
}

/// One server and what connects to it.
struct Endpoint {
    /// `TCP` or `TLS`.
    name: &'static str,
    config: RedisConfig,
    server: RedisServer,
    transport: Option<Arc<dyn Transport>>,
}

/// Every round's figures of one row, in round order.
struct Series {
    transport: &'static str,
    size: usize,
    which: Which,
    /// msg/s.
    runs: Vec<f64>,
    /// CPU time of this process (all its threads) per message, µs.
    client_us: Vec<f64>,
    /// Redis' CPU time (user + sys) over the wall time of the run.
    redis_busy: Vec<f64>,
}

/// One run's figures.
struct Sample {
    msgs: f64,
    client_us: f64,
    redis_busy: f64,
}

/// The measured window: wall time and this process' CPU time from the
/// start of the first write to the last reply.
pub(crate) struct Window {
    started: Instant,
    cpu0: u64,
}

impl Window {
    pub(crate) fn open() -> Window {
        Window {
            cpu0: cpu_ns(),
            started: Instant::now(),
        }
    }

    /// Seconds and CPU nanoseconds since `open`.
    pub(crate) fn close(&self) -> (f64, u64) {
        let secs = self.started.elapsed().as_secs_f64();
        (secs, cpu_ns().saturating_sub(self.cpu0))
    }
}

/// CPU time of every thread of this process so far, in ns (the first
/// field of `/proc/self/task/*/schedstat`; 0 where unreadable).
pub(crate) fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Redis' `used_cpu_user + used_cpu_sys`, in seconds.
pub(crate) fn redis_cpu(server: &RedisServer) -> Result<f64> {
    let info = server.info("cpu").context("INFO cpu")?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            total += v.trim().parse::<f64>().context("INFO cpu")?;
        }
    }
    Ok(total)
}

pub(crate) async fn run(args: WireArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))?;
    let mut endpoints = Vec::new();
    for t in &args.transports {
        endpoints.push(start(t)?);
    }
    let first = endpoints.first().context("no transport given")?;
    let defaults = StreamsConfig::from_url("redis+streams://127.0.0.1")?;
    let batch = args.batch.unwrap_or(defaults.writer_batch).max(1);
    let in_flight = args.in_flight.unwrap_or(defaults.writer_in_flight).max(1);
    let machine = crate::machine::describe(&first.server);
    eprintln!("bench-compare wire: {machine}");
    eprintln!(
        "bench-compare wire: {} messages per run, {batch} XADDs per pipeline, {in_flight} in flight, {} round(s)",
        args.messages, args.rounds
    );
    for ep in &mut endpoints {
        if args.publishers > 0 {
            let url = url_of(&ep.server, ep.name)?;
            ep.transport = Some(crate::open(&url).await?);
        }
    }
    let mut series: Vec<Series> = Vec::new();
    let mut rows = vec![Which::HandWritten, Which::RedisRs];
    if args.publishers > 0 {
        rows.push(Which::Publish);
    }
    for r in 1..=args.rounds.max(1) {
        for ep in &endpoints {
            for &size in &args.sizes {
                for &which in &rows {
                    let sample = measure(
                        ep,
                        which,
                        size,
                        args.messages,
                        batch,
                        in_flight,
                        args.publishers,
                    )
                    .await
                    .with_context(|| format!("round {r}, {} {size} B, {}", ep.name, which.key()))?;
                    eprintln!(
                        "  round {r}  {}  {size:>4} B  {:<20} {:>12.0} msg/s  client CPU {:.2} µs/msg  Redis busy {:.0} %",
                        ep.name,
                        which.key(),
                        sample.msgs,
                        sample.client_us,
                        sample.redis_busy * 100.0
                    );
                    let i = match series
                        .iter()
                        .position(|s| s.transport == ep.name && s.size == size && s.which == which)
                    {
                        Some(i) => i,
                        None => {
                            series.push(Series {
                                transport: ep.name,
                                size,
                                which,
                                runs: Vec::new(),
                                client_us: Vec::new(),
                                redis_busy: Vec::new(),
                            });
                            series.len() - 1
                        }
                    };
                    let s = &mut series[i];
                    s.runs.push(sample.msgs);
                    s.client_us.push(sample.client_us);
                    s.redis_busy.push(sample.redis_busy);
                }
            }
        }
    }
    for ep in &endpoints {
        if let Some(t) = &ep.transport {
            let _ = t.close().await;
        }
    }
    let load_after = crate::machine::load_average();
    let command = format!(
        "bench-compare wire --sizes {} --messages {} --rounds {} --transports {}{}{}",
        args.sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.messages,
        args.rounds,
        args.transports.join(","),
        args.batch
            .map_or_else(String::new, |b| format!(" --batch {b}")),
        args.in_flight
            .map_or_else(String::new, |k| format!(" --in-flight {k}")),
    );
    let name = |w: Which| w.name(batch, in_flight, args.publishers);
    for &size in &args.sizes {
        let rows_json: Vec<Value> = series
            .iter()
            .filter(|s| s.size == size)
            .map(|s| {
                let med = median(&s.runs);
                json!({
                    "transport": s.transport,
                    "what": s.which.key(),
                    "name": name(s.which),
                    "runs_msgs_per_sec": s.runs.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
                    "median_msgs_per_sec": round(med, 1),
                    "median_mb_per_sec": round(med * size as f64 / 1e6, 2),
                    "runs_client_cpu_us_per_msg": s.client_us.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                    "median_client_cpu_us_per_msg": round(median(&s.client_us), 3),
                    "runs_redis_cpu_busy": s.redis_busy.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                    "median_redis_cpu_busy": round(median(&s.redis_busy), 3),
                })
            })
            .collect();
        let ratios: Vec<Value> = endpoints
            .iter()
            .filter_map(|ep| {
                let per_round = ratios(&series, ep.name, size, |x| &x.runs)?;
                let cpu = ratios(&series, ep.name, size, |x| &x.client_us)?;
                Some(json!({
                    "transport": ep.name,
                    "hand_written_over_redis_rs_per_round": per_round.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                    "median": round(median(&per_round), 3),
                    "client_cpu_hand_written_over_redis_rs_per_round": cpu.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                    "client_cpu_median": round(median(&cpu), 3),
                }))
            })
            .collect();
        let doc = json!({
            "command": command,
            "machine": machine,
            "load_average_after": load_after,
            "size": size,
            "messages": args.messages,
            "rounds": args.rounds,
            "batch": batch,
            "in_flight": in_flight,
            "publishers": args.publishers,
            "order": "each round: for each transport, for each size: hand-written, redis-rs, switchyard publish (A B C A B C …)",
            "rows": rows_json,
            "ratios": ratios,
        });
        let path = args.out.join(format!("wire-{size}.json"));
        crate::write(&path, &serde_json::to_string_pretty(&doc)?)?;
    }
    let label = |w: Which| w.label(args.publishers);
    let table = markdown(&series, &endpoints, &args.sizes, args.rounds, &label);
    crate::write(&args.out.join("wire.md"), &table)?;
    println!("\n{table}");
    eprintln!(
        "bench-compare wire: load average after: {}",
        load_after.unwrap_or_default()
    );
    Ok(())
}

/// Starts the server of `transport` (`tcp` or `tls`).
fn start(transport: &str) -> Result<Endpoint> {
    let (name, server) = match transport {
        "tcp" => (
            "TCP",
            RedisServer::start().context("could not start redis-server")?,
        ),
        "tls" => ("TLS", start_tls()?),
        other => bail!("no transport {other:?} (tcp or tls)"),
    };
    let config = StreamsConfig::from_url(&url_of(&server, name)?)?.redis;
    Ok(Endpoint {
        name,
        config,
        server,
        transport: None,
    })
}

/// A TLS-only server that requires a client certificate.
#[cfg(feature = "tls")]
fn start_tls() -> Result<RedisServer> {
    use switchyard_testkit::{RedisOptions, TlsClientAuth, TlsOptions};
    let opts = RedisOptions::default().tls(
        TlsOptions::default()
            .client_auth(TlsClientAuth::Required)
            .tls_only(true),
    );
    RedisServer::start_with(opts).context("could not start a TLS redis-server")
}

#[cfg(not(feature = "tls"))]
fn start_tls() -> Result<RedisServer> {
    bail!(
        "built without the `tls` feature of switchyard-benches: build with --features tls, or pass --transports tcp"
    )
}

/// `redis+streams://127.0.0.1:PORT`, or for TLS
/// `rediss+streams://127.0.0.1:PORT?tls_ca=…&tls_cert=…&tls_key=…`.
fn url_of(server: &RedisServer, name: &str) -> Result<String> {
    if name == "TCP" {
        return Ok(format!("redis+streams://127.0.0.1:{}", server.port()));
    }
    let (Some(port), Some(ca), Some(client)) = (
        server.tls_port(),
        server.tls_ca_cert_path(),
        server.tls_client_paths(),
    ) else {
        bail!("the server was not started with TLS");
    };
    Ok(format!(
        "rediss+streams://127.0.0.1:{port}?tls_ca={}&tls_cert={}&tls_key={}",
        encode(ca),
        encode(&client.cert),
        encode(&client.key)
    ))
}

/// A path as a URL query value.
fn encode(path: &std::path::Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One run of `which`. The server is flushed afterwards (untimed).
async fn measure(
    ep: &Endpoint,
    which: Which,
    size: usize,
    n: u64,
    batch: usize,
    in_flight: usize,
    publishers: u64,
) -> Result<Sample> {
    let topic = Topic::new(format!(
        "wire-{}.{}",
        crate::raw::rand_suffix(),
        which.key()
    ))?;
    let key = keys::stream_key(&ep.config.namespace, &topic);
    // One pipeline's worth of entries (each with its own dedup id), sent
    // again for every pipeline: both ways encode them anew each time.
    let body = payload(size);
    let messages: Arc<[Message]> = (0..batch)
        .map(|_| Message::new(topic.clone(), body.clone()))
        .collect();
    let measured = async {
        match which {
            Which::HandWritten => hand_written(&ep.config, &key, &messages, n, in_flight).await,
            Which::RedisRs => redis_rs(&ep.config, &key, &messages, n, in_flight).await,
            Which::Publish => {
                let t = ep.transport.as_ref().context("no transport")?;
                let window = Window::open();
                crate::ours::publish(t, std::slice::from_ref(&topic), size, n, publishers).await?;
                Ok(window.close())
            }
        }
    };
    let redis0 = redis_cpu(&ep.server)?;
    let (secs, cpu) = tokio::time::timeout(RUN_TIMEOUT, measured)
        .await
        .map_err(|_| anyhow::anyhow!("no result within {} s", RUN_TIMEOUT.as_secs()))??;
    let redis_secs = redis_cpu(&ep.server)? - redis0;
    let entries = ep.server.cmd(&["XLEN", &key]);
    let _ = ep.server.cmd(&["FLUSHALL"]);
    match entries {
        Ok(switchyard_testkit::RespValue::Integer(len)) if u64::try_from(len).ok() == Some(n) => {}
        other => bail!("XLEN {key} after the run: {other:?}, not {n}"),
    }
    Ok(Sample {
        msgs: n as f64 / secs,
        client_us: cpu as f64 / 1e3 / n as f64,
        redis_busy: redis_secs / secs,
    })
}

/// A: the writer's protocol layer by hand. One task encodes each pipeline
/// into one buffer and writes it in one go (as the writer task does); a
/// reader task parses the replies with the writer's parser, an id per
/// XADD. At most `in_flight` pipelines are unanswered at once.
async fn hand_written(
    cfg: &RedisConfig,
    key: &str,
    messages: &[Message],
    n: u64,
    in_flight: usize,
) -> Result<(f64, u64)> {
    let stream = switchyard_redis::lean::connect(cfg)
        .await
        .context("lean connect")?;
    let (mut rd, mut wr) = stream.into_split();
    let permits = Arc::new(Semaphore::new(in_flight));
    // The number of replies of each pipeline written, in order.
    let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
    let timeout = cfg.response_timeout;
    let reader_permits = permits.clone();
    let window = Window::open();
    let reader = tokio::spawn(async move {
        let result = async {
            let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
            let mut start = 0;
            let mut ids: Vec<MessageId> = Vec::new();
            let mut total = 0_u64;
            while let Some(want) = rx.recv().await {
                ids.clear();
                while ids.len() < want {
                    match fuzzing::parse_publish_reply(&buf[start..]) {
                        Ok(Some((Some(id), used))) => {
                            start += used;
                            ids.push(id);
                            continue;
                        }
                        Ok(Some((None, _))) => bail!("a reply to XADD that is no stream id"),
                        Ok(None) => {}
                        Err(e) => bail!("unreadable reply: {e}"),
                    }
                    if start == buf.len() {
                        buf.clear();
                        start = 0;
                    } else if start > READ_BUF {
                        buf.drain(..start);
                        start = 0;
                    }
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(READ_BUF);
                    }
                    let read = tokio::time::timeout(timeout, rd.read_buf(&mut buf))
                        .await
                        .context("no reply within the response timeout")?
                        .context("reading replies")?;
                    if read == 0 {
                        bail!("redis closed the connection");
                    }
                }
                total += ids.len() as u64;
                reader_permits.add_permits(1);
            }
            Ok(total)
        }
        .await;
        if result.is_err() {
            // The writer must not wait for a permit that never comes.
            reader_permits.close();
        }
        result
    });
    let batch = messages.len() as u64;
    let mut out = Vec::new();
    let written = async {
        let mut sent = 0_u64;
        while sent < n {
            let k = usize::try_from((n - sent).min(batch))?;
            out.clear();
            for m in &messages[..k] {
                fuzzing::put_xadd(&mut out, key, m);
            }
            permits
                .acquire()
                .await
                .context("the reader stopped")?
                .forget();
            tx.send(k).context("the reader stopped")?;
            write_flush(&mut wr, &out).await.context("writing XADDs")?;
            sent += k as u64;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    drop(tx);
    let total = reader.await.context("the reader panicked")?;
    let done = window.close();
    drop(wr);
    written?;
    let total = total?;
    if total != n {
        bail!("{total} ids of {n}");
    }
    Ok(done)
}

/// B: the same XADDs through redis-rs: `in_flight` tasks on one
/// multiplexed connection, each sending one pipeline at a time and
/// awaiting its ids, so `in_flight` pipelines are unanswered at once.
async fn redis_rs(
    cfg: &RedisConfig,
    key: &str,
    messages: &Arc<[Message]>,
    n: u64,
    in_flight: usize,
) -> Result<(f64, u64)> {
    let client = switchyard_redis::RedisClient::new(cfg.clone()).context("redis-rs client")?;
    let conn_cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.response_timeout));
    let conn = client
        .inner()
        .get_multiplexed_async_connection_with_config(&conn_cfg)
        .await
        .context("redis-rs connection")?;
    let batch = messages.len() as u64;
    let pipelines = n.div_ceil(batch);
    let next = Arc::new(AtomicU64::new(0));
    let window = Window::open();
    let mut joins = Vec::new();
    for _ in 0..in_flight {
        let (mut conn, next, messages, key) =
            (conn.clone(), next.clone(), messages.clone(), key.to_owned());
        joins.push(tokio::spawn(async move {
            let mut written = 0_u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pipelines {
                    break;
                }
                let k = usize::try_from((n - i * batch).min(batch))?;
                let mut pipe = redis::pipe();
                for m in &messages[..k] {
                    pipe.add_command(fuzzing::xadd_cmd(&key, m));
                }
                let ids: Vec<String> = pipe.query_async(&mut conn).await?;
                if ids.len() != k {
                    bail!("{} ids for {k} XADDs", ids.len());
                }
                written += k as u64;
            }
            Ok::<_, anyhow::Error>(written)
        }));
    }
    let mut total = 0;
    for j in joins {
        total += j.await.context("a redis-rs task panicked")??;
    }
    let done = window.close();
    if total != n {
        bail!("{total} ids of {n}");
    }
    Ok(done)
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        len if len % 2 == 1 => v[len / 2],
        len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
    }
}

/// Hand-written over redis-rs, round by round, of the figure `pick`s.
fn ratios(
    series: &[Series],
    transport: &str,
    size: usize,
    pick: fn(&Series) -> &[f64],
) -> Option<Vec<f64>> {
    let find = |w: Which| {
        series
            .iter()
            .find(|s| s.transport == transport && s.size == size && s.which == w)
    };
    let (a, b) = (find(Which::HandWritten)?, find(Which::RedisRs)?);
    Some(
        pick(a)
            .iter()
            .zip(pick(b))
            .map(|(a, b)| if *b > 0.0 { a / b } else { 0.0 })
            .collect(),
    )
}

fn markdown(
    series: &[Series],
    endpoints: &[Endpoint],
    sizes: &[usize],
    rounds: usize,
    name: &dyn Fn(Which) -> String,
) -> String {
    let throughput = table(
        series,
        endpoints,
        sizes,
        rounds,
        name,
        Figure {
            unit: "msg/s",
            pick: |x| &x.runs,
            show: thousands,
            extra: None,
        },
    );
    let cpu = table(
        series,
        endpoints,
        sizes,
        rounds,
        name,
        Figure {
            unit: "client CPU µs/msg",
            pick: |x| &x.client_us,
            show: |v| format!("{v:.2}"),
            extra: Some(("Redis CPU busy (median)", |x| {
                format!("{:.0} %", median(&x.redis_busy) * 100.0)
            })),
        },
    );
    format!(
        "Throughput (A ÷ B above 1: the hand-written path is faster):\n\n{throughput}\n\
         CPU time of the client process per message (A ÷ B below 1: the hand-written path \
         needs less), and how busy Redis was:\n\n{cpu}"
    )
}

/// One figure of every row, as a table column per round.
struct Figure {
    unit: &'static str,
    pick: fn(&Series) -> &[f64],
    show: fn(f64) -> String,
    /// A last column: its title and what it shows for a row.
    extra: Option<(&'static str, Column)>,
}

/// What a table's last column shows for a row.
type Column = fn(&Series) -> String;

fn table(
    series: &[Series],
    endpoints: &[Endpoint],
    sizes: &[usize],
    rounds: usize,
    name: &dyn Fn(Which) -> String,
    figure: Figure,
) -> String {
    let rounds = rounds.max(1);
    let unit = figure.unit;
    let mut s = String::from("| transport | size | what |");
    for r in 1..=rounds {
        s.push_str(&format!(" round {r} |"));
    }
    s.push_str(&format!(" median {unit} |"));
    if let Some((title, _)) = figure.extra {
        s.push_str(&format!(" {title} |"));
    }
    s.push_str("\n|---|--:|---|");
    for _ in 0..=rounds {
        s.push_str("--:|");
    }
    if figure.extra.is_some() {
        s.push_str("--:|");
    }
    s.push('\n');
    for ep in endpoints {
        for &size in sizes {
            let rows: Vec<&Series> = series
                .iter()
                .filter(|x| x.transport == ep.name && x.size == size)
                .collect();
            for x in &rows {
                s.push_str(&format!("| {} | {size} B | {} |", ep.name, name(x.which)));
                let values = (figure.pick)(x);
                for v in values {
                    s.push_str(&format!(" {} |", (figure.show)(*v)));
                }
                s.push_str(&format!(" {} |", (figure.show)(median(values))));
                if let Some((_, extra)) = figure.extra {
                    s.push_str(&format!(" {} |", extra(x)));
                }
                s.push('\n');
            }
            if let Some(r) = ratios(series, ep.name, size, figure.pick) {
                s.push_str(&format!("| {} | {size} B | **A ÷ B** |", ep.name));
                for v in &r {
                    s.push_str(&format!(" {v:.2} |"));
                }
                s.push_str(&format!(" **{:.2}** |", median(&r)));
                if figure.extra.is_some() {
                    s.push_str(" |");
                }
                s.push('\n');
            }
        }
    }
    s
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
