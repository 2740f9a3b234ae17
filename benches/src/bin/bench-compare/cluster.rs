//! `bench-compare cluster`: the Redis Streams adapter on a Redis Cluster of
//! 1 master and of 3 masters (no replicas), both started by this program on
//! free loopback ports (`switchyard_testkit::ClusterGroup`) and measured in
//! the same run.
//!
//! Throughput, in rounds; each round runs, on each cluster in turn (A B A B
//! …):
//!
//! - `redis-benchmark --cluster -P 64 -c 50 XADD rb:{tag}:stream * v 1 d … p
//!   …` (the entry shape switchyard writes; `{tag}` is replaced by
//!   redis-benchmark with a tag of each client's node, so its 50 clients
//!   are spread over the masters, one stream per master);
//! - **publish**: `--messages` messages from `--publishers` tasks, one
//!   `publish` each, round robin over `--topics` topics (spread over the
//!   slots, so over every master), through a `redis+streams+cluster://`
//!   transport; `XLEN` checks that every message is there;
//! - **group consume + ack**: that backlog consumed by a group of
//!   `--members` members subscribed to a pattern covering the topics (from
//!   `Start::Earliest`), each delivery acked; timed from the first
//!   `subscribe` until `XPENDING` shows no pending entry on any stream.
//!
//! For each run: msg/s, this process' CPU time per message (every thread,
//! `/proc/self/task/*/schedstat`, as `bench-compare wire`) and the CPU time
//! of every master (`INFO cpu`) over the wall time.
//!
//! Pattern discovery: for each count of streams (`--discovery`, e.g. 1,
//! 100, 1,000, 10,000; created beforehand with one pipeline per master,
//! one entry each), on each cluster, a child process (`bench-compare
//! cluster-discovery`, so each RSS is its own) measures
//!
//! - `latest`: how long `subscribe` of a fan-out pattern subscription from
//!   `Start::Latest` takes to return (slot map, one `SCAN` pass per master,
//!   then the last id of every stream found);
//! - `fanout`: the same from `Start::Earliest` (slot map and `SCAN` pass
//!   only: the discovery pass itself), then the time until one delivery of
//!   every stream arrived, the RSS growth and the connections the masters
//!   count;
//! - `group`: the same for one group member (`Start::Earliest`), each
//!   delivery acked.
//!
//! Writes `cluster.json` (every round's figures) and `cluster.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use switchyard::redis_streams::{fuzzing, keys};
use switchyard::{Message, Start, Subscription, Topic, TopicFilter, Transport};
use switchyard_testkit::{ClusterGroup, ClusterOptions, SLOTS};

use crate::harness::{Readers, payload, round};
use crate::wire::{Window, cpu_ns, median, redis_cpu, thousands};

/// The namespace of every key this program writes.
const NAMESPACE: &str = "bench";

/// How long a throughput run may go without a delivery.
const IDLE: Duration = Duration::from_secs(30);

/// The longest one measured throughput run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a discovery child may go without a delivery before it reports
/// a stall.
const DISCOVERY_IDLE: Duration = Duration::from_secs(15);

/// The longest one discovery child may run before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(240);

/// How long to wait, after the last delivery, for every ack to reach Redis.
const ACK_DEADLINE: Duration = Duration::from_secs(30);

/// Entries per pipeline when creating the streams of a discovery point.
const CREATE_PIPELINE: usize = 1000;

#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {
    /// Masters of each cluster, measured in this order in every round
    #[arg(long, value_delimiter = ',', default_values_t = [1_usize, 3])]
    masters: Vec<usize>,
    /// Messages per publish run (and the backlog of the group run)
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Payload size in bytes
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Topics the messages are spread over
    #[arg(long, default_value_t = 30)]
    topics: usize,
    /// Concurrent publishing tasks
    #[arg(long, default_value_t = 64)]
    publishers: u64,
    /// Members of the consumer group
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Rounds; each runs every throughput row on every cluster, and every
    /// discovery point on every cluster
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests of each redis-benchmark run (0: no redis-benchmark row)
    #[arg(long, default_value_t = 1_000_000)]
    rb_requests: u64,
    /// Stream counts of the pattern discovery measurement
    #[arg(long, value_delimiter = ',', default_values_t = [1_u64, 100, 1_000, 10_000])]
    discovery: Vec<u64>,
    /// Discovery modes: latest, fanout, group
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("latest"), String::from("fanout"), String::from("group")])]
    modes: Vec<String>,
    /// Sections: throughput, discovery
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("throughput"), String::from("discovery")])]
    sections: Vec<String>,
    /// Where cluster.json and cluster.md go
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// `bench-compare cluster-discovery`: one discovery point in this process.
#[derive(clap::Args, Debug)]
pub(crate) struct DiscoveryArgs {
    /// The cluster URL
    #[arg(long)]
    url: String,
    /// The pattern to subscribe to
    #[arg(long)]
    pattern: String,
    /// Streams the pattern matches (one entry each)
    #[arg(long)]
    streams: u64,
    /// latest, fanout or group
    #[arg(long)]
    mode: String,
    /// `host:port` of every master (their `connected_clients`)
    #[arg(long, value_delimiter = ',')]
    masters: Vec<String>,
}

/// A cluster and what talks to it.
struct Node {
    masters: usize,
    group: ClusterGroup,
    url: String,
    conns: Masters,
    publisher: Option<Arc<dyn Transport>>,
    consumer: Option<Arc<dyn Transport>>,
}

/// A plain connection to every master and the slots it serves.
struct Masters {
    nodes: Vec<Master>,
}

/// One master: its address, the slot ranges it serves, a connection.
struct Master {
    addr: SocketAddr,
    slots: Vec<(u16, u16)>,
    conn: MultiplexedConnection,
}

impl Masters {
    async fn connect(group: &ClusterGroup) -> Result<Masters> {
        let mut layout: Vec<(SocketAddr, Vec<(u16, u16)>)> = group
            .topology()?
            .into_iter()
            .filter(|n| n.master)
            .map(|n| (n.addr, n.slots))
            .collect();
        if layout.is_empty() && group.nodes().len() == 1 {
            // A lone node has met no other, so it does not know its own
            // address: `CLUSTER NODES` shows it as `:PORT@BUS`, which the
            // testkit's topology skips. It serves every slot.
            layout.push((group.nodes()[0].addr(), vec![(0, SLOTS - 1)]));
        }
        let mut nodes = Vec::new();
        for (addr, slots) in layout {
            let client = redis::Client::open(format!("redis://{addr}"))?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            nodes.push(Master { addr, slots, conn });
        }
        nodes.sort_by_key(|n| n.addr);
        Ok(Masters { nodes })
    }

    /// The index of the master serving `key`.
    fn index_of(&self, key: &str) -> Result<usize> {
        let slot = switchyard_redis::key_slot(key.as_bytes());
        self.nodes
            .iter()
            .position(|m| m.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .with_context(|| format!("no master serves slot {slot}"))
    }

    fn conn(&self, key: &str) -> Result<MultiplexedConnection> {
        Ok(self.nodes[self.index_of(key)?].conn.clone())
    }

    /// `host:port` of every master, joined with `,`.
    fn addrs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many of `keys` each master serves.
    fn spread(&self, keys: &[String]) -> Result<Vec<usize>> {
        let mut out = vec![0; self.nodes.len()];
        for k in keys {
            out[self.index_of(k)?] += 1;
        }
        Ok(out)
    }
}

impl Node {
    fn flush(&self) {
        for n in self.group.nodes() {
            let _ = n.cmd(&["FLUSHALL"]);
        }
    }

    /// Every master's CPU seconds (user + sys) so far.
    fn redis_cpu(&self) -> Result<f64> {
        let mut total = 0.0;
        for n in self.group.nodes() {
            total += redis_cpu(n)?;
        }
        Ok(total)
    }

    fn seed_port(&self) -> Result<u16> {
        Ok(self
            .group
            .nodes()
            .first()
            .context("a cluster without nodes")?
            .port())
    }
}

/// Every round's figures of one row.
#[derive(Default)]
struct Series {
    masters: usize,
    what: &'static str,
    runs: Vec<f64>,
    /// Client CPU µs per message (empty for redis-benchmark).
    client_us: Vec<f64>,
    /// Every master's CPU over the wall time (1.0 = one core).
    redis_busy: Vec<f64>,
    /// The group's msg/s at its last delivery (before the last acks
    /// reached Redis).
    delivered: Vec<f64>,
}

/// One run's figures.
struct Sample {
    msgs: f64,
    client_us: Option<f64>,
    redis_busy: f64,
    delivered: Option<f64>,
}

pub(crate) async fn run(args: ClusterArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))?;
    let mut nodes = Vec::new();
    for &m in &args.masters {
        let group =
            ClusterGroup::start(ClusterOptions::default().masters(m).replicas_per_master(0))
                .with_context(|| format!("could not start a cluster of {m} master(s)"))?;
        let url = format!(
            "redis+streams+cluster://{}?namespace={NAMESPACE}",
            group.host_list()
        );
        let conns = Masters::connect(&group).await?;
        nodes.push(Node {
            masters: m,
            group,
            url,
            conns,
            publisher: None,
            consumer: None,
        });
    }
    let first = nodes.first().context("no cluster given (--masters)")?;
    let machine = crate::machine::describe(&first.group.nodes()[0]);
    eprintln!("bench-compare cluster: {machine}");
    let wants = |s: &str| args.sections.iter().any(|x| x == s);
    let mut series: Vec<Series> = Vec::new();
    let mut spreads = BTreeMap::new();
    if wants("throughput") {
        for node in &mut nodes {
            node.publisher = Some(crate::open(&node.url).await?);
            node.consumer = Some(crate::open(&node.url).await?);
        }
        for r in 1..=args.rounds.max(1) {
            for node in &nodes {
                let rows = throughput(node, &args, &mut spreads)
                    .await
                    .with_context(|| format!("round {r}, {} master(s)", node.masters))?;
                for (what, sample) in rows {
                    eprintln!(
                        "  round {r}  {} master(s)  {what:<16} {:>12.0} msg/s  client CPU {}  Redis busy {:.0} %",
                        node.masters,
                        sample.msgs,
                        sample
                            .client_us
                            .map_or_else(|| "—".into(), |c| format!("{c:.2} µs/msg")),
                        sample.redis_busy * 100.0
                    );
                    let i = match series
                        .iter()
                        .position(|s| s.masters == node.masters && s.what == what)
                    {
                        Some(i) => i,
                        None => {
                            series.push(Series {
                                masters: node.masters,
                                what,
                                ..Series::default()
                            });
                            series.len() - 1
                        }
                    };
                    let s = &mut series[i];
                    s.runs.push(sample.msgs);
                    s.client_us.extend(sample.client_us);
                    s.redis_busy.push(sample.redis_busy);
                    s.delivered.extend(sample.delivered);
                }
            }
        }
        for node in &mut nodes {
            for t in [node.publisher.take(), node.consumer.take()]
                .into_iter()
                .flatten()
            {
                let _ = t.close().await;
            }
        }
    }
    let mut points = Vec::new();
    if wants("discovery") {
        for r in 1..=args.rounds.max(1) {
            for &streams in &args.discovery {
                for node in &nodes {
                    let p = discovery_point(node, streams, &args.modes)
                        .await
                        .with_context(|| {
                            format!(
                                "round {r}, discovery of {streams} streams on {} master(s)",
                                node.masters
                            )
                        })?;
                    for m in &p {
                        eprintln!("  round {r}  {} master(s)  {m}", node.masters);
                    }
                    points.push(json!({
                        "round": r,
                        "masters": node.masters,
                        "streams": streams,
                        "modes": p,
                    }));
                }
            }
        }
    }
    let load_after = crate::machine::load_average();
    let command = format!(
        "bench-compare cluster --masters {} --messages {} --size {} --topics {} --publishers {} --members {} --rounds {} --rb-requests {} --discovery {} --modes {} --sections {}",
        join(&args.masters),
        args.messages,
        args.size,
        args.topics,
        args.publishers,
        args.members,
        args.rounds,
        args.rb_requests,
        join(&args.discovery),
        args.modes.join(","),
        args.sections.join(","),
    );
    let rows_json: Vec<Value> = series
        .iter()
        .map(|s| {
            json!({
                "masters": s.masters,
                "what": s.what,
                "runs_msgs_per_sec": s.runs.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
                "median_msgs_per_sec": round(median(&s.runs), 1),
                "runs_client_cpu_us_per_msg": s.client_us.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                "median_client_cpu_us_per_msg": (!s.client_us.is_empty()).then(|| round(median(&s.client_us), 3)),
                "runs_redis_cpu_busy": s.redis_busy.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
                "runs_delivered_msgs_per_sec": s.delivered.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let cpu_ratios = cpu_ratios(&series, &args.masters);
    let doc = json!({
        "command": command,
        "machine": machine,
        "load_average_after": load_after,
        "messages": args.messages,
        "size": args.size,
        "topics": args.topics,
        "topics_per_master": spreads,
        "publishers": args.publishers,
        "members": args.members,
        "rounds": args.rounds,
        "rb_requests": args.rb_requests,
        "order": "each round: for each cluster (in --masters order): redis-benchmark, publish, group consume + ack; then for each stream count, for each cluster: the discovery modes",
        "rows": rows_json,
        "client_cpu_ratio_last_over_first": cpu_ratios.iter().map(|(what, r)| json!({
            "what": what,
            "per_round": r.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
            "median": round(median(r), 3),
        })).collect::<Vec<_>>(),
        "discovery": points,
    });
    crate::write(
        &args.out.join("cluster.json"),
        &serde_json::to_string_pretty(&doc)?,
    )?;
    let md = markdown(&args, &series, &cpu_ratios, &points, &spreads);
    crate::write(&args.out.join("cluster.md"), &md)?;
    println!("\n{md}");
    eprintln!(
        "bench-compare cluster: load average after: {}",
        load_after.unwrap_or_default()
    );
    Ok(())
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// One round of the throughput rows on one cluster.
async fn throughput(
    node: &Node,
    args: &ClusterArgs,
    spreads: &mut BTreeMap<String, Vec<usize>>,
) -> Result<Vec<(&'static str, Sample)>> {
    let mut out = Vec::new();
    if args.rb_requests > 0 {
        let redis0 = node.redis_cpu()?;
        let started = Instant::now();
        // redis-benchmark 7.0 refuses `--cluster` on one node ("Invalid
        // cluster: 1 node(s)"); that node serves every slot, so the plain
        // mode is the same work there.
        let rps = redis_benchmark_cluster(
            node.seed_port()?,
            node.masters > 1,
            args.size,
            args.rb_requests,
        )?;
        let wall = started.elapsed().as_secs_f64();
        let busy = (node.redis_cpu()? - redis0) / wall;
        node.flush();
        out.push((
            "redis-benchmark",
            Sample {
                msgs: rps,
                client_us: None,
                redis_busy: busy,
                delivered: None,
            },
        ));
    }
    let suffix = crate::raw::rand_suffix();
    let topics: Vec<Topic> = (0..args.topics.max(1))
        .map(|i| Topic::new(format!("clu-{suffix}.t{i:02}")))
        .collect::<Result<_, _>>()?;
    let keys: Vec<String> = topics
        .iter()
        .map(|t| keys::stream_key(NAMESPACE, t))
        .collect();
    spreads.insert(
        format!("{} master(s)", node.masters),
        node.conns.spread(&keys)?,
    );
    let publisher = node.publisher.as_ref().context("no publisher")?;
    let consumer = node.consumer.as_ref().context("no consumer")?;
    let n = args.messages;

    // publish
    let redis0 = node.redis_cpu()?;
    let window = Window::open();
    tokio::time::timeout(
        RUN_TIMEOUT,
        crate::ours::publish(publisher, &topics, args.size, n, args.publishers),
    )
    .await
    .map_err(|_| anyhow::anyhow!("publish: no result within {} s", RUN_TIMEOUT.as_secs()))??;
    let (secs, cpu) = window.close();
    let busy = (node.redis_cpu()? - redis0) / secs;
    let mut total = 0_u64;
    for k in &keys {
        let mut c = node.conns.conn(k)?;
        total += redis::cmd("XLEN").arg(k).query_async::<u64>(&mut c).await?;
    }
    if total != n {
        bail!("the topics hold {total} entries after publishing {n}");
    }
    out.push((
        "publish",
        Sample {
            msgs: n as f64 / secs,
            client_us: Some(cpu as f64 / 1e3 / n as f64),
            redis_busy: busy,
            delivered: None,
        },
    ));

    // group consume + ack of that backlog
    let pattern = TopicFilter::parse(&format!("clu-{suffix}.*"))?;
    let redis0 = node.redis_cpu()?;
    let window = Window::open();
    let epoch = Instant::now();
    let mut subs = Vec::new();
    for i in 0..args.members.max(1) {
        let s = Subscription::new(pattern.clone())
            .group_member("g", format!("c{i}"))
            .start(Start::Earliest)
            .buffer(4096);
        subs.push(consumer.subscribe(s).await?);
    }
    let readers = Readers::start(subs, epoch);
    tokio::time::timeout(RUN_TIMEOUT, readers.wait_for(n, IDLE))
        .await
        .map_err(|_| anyhow::anyhow!("group: no result within {} s", RUN_TIMEOUT.as_secs()))??;
    let delivered_secs = readers.last_arrival().as_secs_f64();
    let (_, cpu) = window.close();
    // Every ack in Redis: no pending entry on any stream.
    let acked_by = Instant::now() + ACK_DEADLINE;
    loop {
        let mut pending = 0;
        for k in &keys {
            let mut c = node.conns.conn(k)?;
            let (count, _, _, _): (u64, redis::Value, redis::Value, redis::Value) =
                redis::cmd("XPENDING")
                    .arg(k)
                    .arg("g")
                    .query_async(&mut c)
                    .await?;
            pending += count;
        }
        if pending == 0 {
            break;
        }
        if Instant::now() > acked_by {
            bail!(
                "{pending} entries still pending {} s after the last delivery",
                ACK_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = epoch.elapsed().as_secs_f64();
    let busy = (node.redis_cpu()? - redis0) / secs;
    let got = readers.stop().await?;
    if got != n {
        bail!("the group received {got} of {n}");
    }
    node.flush();
    out.push((
        "group consume+ack",
        Sample {
            msgs: n as f64 / secs,
            client_us: Some(cpu as f64 / 1e3 / n as f64),
            redis_busy: busy,
            delivered: Some(n as f64 / delivered_secs),
        },
    ));
    Ok(out)
}

/// `redis-benchmark --cluster -P 64 -c 50 -n N XADD rb:{tag}:stream * v 1
/// d … p PAYLOAD` against the cluster of the seed `port` (without
/// `--cluster` when `cluster` is false: `{tag}` is then a literal hash
/// tag): requests/s.
fn redis_benchmark_cluster(port: u16, cluster: bool, size: usize, n: u64) -> Result<f64> {
    let body = "x".repeat(size);
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(cluster.then_some("--cluster"))
        .args(["-P", "64", "-c", "50", "-n", &n.to_string(), "--csv"])
        .args(["XADD", "rb:{tag}:stream", "*", "v", "1", "d"])
        .args(["0123456789abcdef0123456789abcdef", "p", &body])
        .output()
        .context("could not run redis-benchmark (install redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark --cluster failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with("\"XADD"))
        .with_context(|| format!("no XADD line in redis-benchmark's output {stdout:?}"))?;
    line.split("\",\"")
        .nth(1)
        .and_then(|f| f.trim_matches('"').parse().ok())
        .with_context(|| format!("no rps in redis-benchmark's line {line:?}"))
}

/// Client CPU per message of the last cluster over the first, round by
/// round, for each of our rows.
fn cpu_ratios(series: &[Series], masters: &[usize]) -> Vec<(&'static str, Vec<f64>)> {
    let (Some(&a), Some(&b)) = (masters.first(), masters.last()) else {
        return Vec::new();
    };
    if a == b {
        return Vec::new();
    }
    let mut out = Vec::new();
    for what in ["publish", "group consume+ack"] {
        let find = |m: usize| series.iter().find(|s| s.masters == m && s.what == what);
        if let (Some(x), Some(y)) = (find(a), find(b)) {
            let r = x
                .client_us
                .iter()
                .zip(&y.client_us)
                .map(|(x, y)| if *x > 0.0 { y / x } else { 0.0 })
                .collect();
            out.push((what, r));
        }
    }
    out
}

/// One discovery point on one cluster: `streams` streams created, then one
/// child process per mode.
async fn discovery_point(node: &Node, streams: u64, modes: &[String]) -> Result<Vec<Value>> {
    node.flush();
    let suffix = crate::raw::rand_suffix();
    let prefix = format!("disc-{suffix}");
    create_streams(node, &prefix, streams).await?;
    let exe = std::env::current_exe().context("current_exe")?;
    let mut out = Vec::new();
    for mode in modes {
        let mut child = Command::new(&exe)
            .args(["cluster-discovery", "--url", &node.url])
            .args(["--pattern", &format!("{prefix}.*")])
            .args(["--streams", &streams.to_string(), "--mode", mode])
            .args(["--masters", &node.conns.addrs()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start the discovery child")?;
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut text = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            use std::io::Read as _;
            let _ = stdout.read_to_string(&mut text);
        }
        let value = match status {
            None => {
                json!({"mode": mode, "error": format!("killed after {} s", CHILD_TIMEOUT.as_secs())})
            }
            Some(s) if !s.success() => json!({"mode": mode, "error": format!("exit {s}")}),
            Some(_) => text
                .lines()
                .rfind(|l| l.starts_with('{'))
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| json!({"mode": mode, "error": "no JSON line"})),
        };
        out.push(value);
    }
    node.flush();
    Ok(out)
}

/// `streams` streams `PREFIX.sNNNNN` with one entry each, one pipeline of
/// up to `CREATE_PIPELINE` XADDs at a time per master.
async fn create_streams(node: &Node, prefix: &str, streams: u64) -> Result<()> {
    let mut per_master: Vec<Vec<(String, Topic)>> = vec![Vec::new(); node.conns.nodes.len()];
    for i in 0..streams {
        let t = Topic::new(format!("{prefix}.s{i:05}"))?;
        let key = keys::stream_key(NAMESPACE, &t);
        per_master[node.conns.index_of(&key)?].push((key, t));
    }
    let body = payload(16);
    for (i, entries) in per_master.iter().enumerate() {
        let mut conn = node.conns.nodes[i].conn.clone();
        for chunk in entries.chunks(CREATE_PIPELINE) {
            let mut pipe = redis::pipe();
            for (key, topic) in chunk {
                let m = Message::new(topic.clone(), body.clone());
                pipe.add_command(fuzzing::xadd_cmd(key, &m)).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
    }
    Ok(())
}

/// `bench-compare cluster-discovery`: one discovery point in this process;
/// prints one JSON line.
pub(crate) fn discovery(args: &DiscoveryArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let value = rt.block_on(discover(args))?;
    println!("{value}");
    Ok(())
}

async fn discover(args: &DiscoveryArgs) -> Result<Value> {
    let t = crate::open(&args.url).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = status_kib("VmRSS:");
    let clients0 = connected_clients(&args.masters).await;
    let filter = TopicFilter::parse(&args.pattern)?;
    let sub = match args.mode.as_str() {
        "latest" => Subscription::new(filter).fanout().start(Start::Latest),
        "fanout" => Subscription::new(filter).fanout().start(Start::Earliest),
        "group" => Subscription::new(filter)
            .group_member("g", "c0")
            .start(Start::Earliest),
        other => bail!("no discovery mode {other:?} (latest, fanout or group)"),
    }
    .buffer(4096);
    let cpu0 = cpu_ns();
    let started = Instant::now();
    let s = t.subscribe(sub).await?;
    let subscribe_secs = started.elapsed().as_secs_f64();
    let mut doc = json!({
        "mode": args.mode,
        "streams": args.streams,
        "subscribe_secs": round(subscribe_secs, 6),
    });
    if args.mode == "latest" {
        let _ = tokio::time::timeout(Duration::from_secs(10), s.close()).await;
        let _ = t.close().await;
        return Ok(doc);
    }
    let readers = Readers::start(vec![s], started);
    let waited = readers.wait_for(args.streams, DISCOVERY_IDLE).await;
    let all_secs = readers.last_arrival().as_secs_f64();
    let cpu = cpu_ns().saturating_sub(cpu0);
    let got = readers.count();
    let rss1 = status_kib("VmRSS:");
    let clients1 = connected_clients(&args.masters).await;
    let closing = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(60), readers.stop()).await;
    let close_secs = closing.elapsed().as_secs_f64();
    let _ = tokio::time::timeout(Duration::from_secs(30), t.close()).await;
    let obj = doc.as_object_mut().context("a JSON object")?;
    obj.insert("delivered".into(), json!(got));
    obj.insert("all_delivered_secs".into(), json!(round(all_secs, 6)));
    obj.insert("client_cpu_secs".into(), json!(round(cpu as f64 / 1e9, 4)));
    obj.insert("rss_before_kib".into(), json!(rss0));
    obj.insert("rss_after_kib".into(), json!(rss1));
    obj.insert(
        "rss_growth_kib".into(),
        json!(rss0.zip(rss1).map(|(a, b)| b.saturating_sub(a))),
    );
    obj.insert("peak_rss_kib".into(), json!(status_kib("VmHWM:")));
    obj.insert("connected_clients_before".into(), json!(clients0));
    obj.insert("connected_clients_after".into(), json!(clients1));
    obj.insert("close_secs".into(), json!(round(close_secs, 4)));
    if let Err(e) = waited {
        obj.insert("error".into(), json!(format!("{e:#}")));
    }
    match stopped {
        Err(_) => {
            obj.insert("close_error".into(), json!("close took over 60 s"));
        }
        Ok(Err(e)) => {
            obj.insert("close_error".into(), json!(format!("{e:#}")));
        }
        Ok(Ok(_)) => {}
    }
    Ok(doc)
}

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The sum of every master's `connected_clients`, less the connection that
/// asks; `None` when a master could not be asked (e.g. it refuses
/// connections: max number of clients reached).
async fn connected_clients(masters: &[String]) -> Option<u64> {
    let mut total = 0;
    for m in masters {
        let client = redis::Client::open(format!("redis://{m}")).ok()?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn)
            .await
            .ok()?;
        let n: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())?;
        total += n.saturating_sub(1);
    }
    Some(total)
}

/// The markdown of the whole run.
fn markdown(
    args: &ClusterArgs,
    series: &[Series],
    ratios: &[(&'static str, Vec<f64>)],
    points: &[Value],
    spreads: &BTreeMap<String, Vec<usize>>,
) -> String {
    let rounds = args.rounds.max(1);
    let mut s = String::new();
    if !series.is_empty() {
        s.push_str(&format!(
            "Throughput, {} B payloads, {} messages per run ({} per redis-benchmark run), {} topics ({}), {} publishers, a group of {} on a pattern:\n\n",
            args.size,
            thousands(args.messages as f64),
            thousands(args.rb_requests as f64),
            args.topics,
            spreads
                .iter()
                .map(|(k, v)| format!("{k}: {} per master", join(v)))
                .collect::<Vec<_>>()
                .join("; "),
            args.publishers,
            args.members
        ));
        s.push_str(&header(
            rounds,
            "median msg/s",
            "group: msg/s at the last delivery",
        ));
        for x in series {
            s.push_str(&format!("| {} | {} |", x.masters, x.what));
            for v in &x.runs {
                s.push_str(&format!(" {} |", thousands(*v)));
            }
            s.push_str(&format!(" **{}** |", thousands(median(&x.runs))));
            s.push_str(&format!(
                " {} |\n",
                if x.delivered.is_empty() {
                    "—".to_owned()
                } else {
                    format!("{} (last delivery)", thousands(median(&x.delivered)))
                }
            ));
        }
        s.push_str("\nClient CPU time per message (this process, every thread), and every master's CPU over the wall time (100 % = one core):\n\n");
        s.push_str(&header(
            rounds,
            "median µs/msg",
            "every master's CPU (median)",
        ));
        for x in series.iter().filter(|x| !x.client_us.is_empty()) {
            s.push_str(&format!("| {} | {} |", x.masters, x.what));
            for v in &x.client_us {
                s.push_str(&format!(" {v:.2} |"));
            }
            s.push_str(&format!(
                " **{:.2}** | {:.0} % |\n",
                median(&x.client_us),
                median(&x.redis_busy) * 100.0
            ));
        }
        for (what, r) in ratios {
            s.push_str(&format!(
                "| **{} ÷ {}** | {what} |",
                args.masters.last().copied().unwrap_or(0),
                args.masters.first().copied().unwrap_or(0)
            ));
            for v in r {
                s.push_str(&format!(" {v:.2} |"));
            }
            s.push_str(&format!(" **{:.2}** | |\n", median(r)));
        }
        for x in series.iter().filter(|x| x.client_us.is_empty()) {
            s.push_str(&format!(
                "| {} | {} (Redis busy) |{} — | {:.0} % |\n",
                x.masters,
                x.what,
                " — |".repeat(rounds),
                median(&x.redis_busy) * 100.0
            ));
        }
    }
    if !points.is_empty() {
        s.push_str("\nPattern discovery (one child process per figure; `latest`: `subscribe` of a fan-out pattern from `Start::Latest` returned; `fanout`/`group`: from `Start::Earliest`, then one delivery of every stream):\n\n");
        s.push_str("| streams | masters | round | latest: subscribe s | fanout: subscribe s | fanout: all delivered s | fanout: RSS growth MiB | fanout: connections | group: subscribe s | group: all delivered s | group: RSS growth MiB | group: connections | note |\n");
        s.push_str("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
        for p in points {
            let mode = |m: &str| {
                p["modes"]
                    .as_array()
                    .and_then(|a| a.iter().find(|v| v["mode"] == m))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let secs = |v: &Value, k: &str| {
                v[k].as_f64()
                    .map_or_else(|| "—".to_owned(), |x| format!("{x:.3}"))
            };
            let mib = |v: &Value| {
                v["rss_growth_kib"]
                    .as_f64()
                    .map_or_else(|| "—".to_owned(), |x| format!("{:.1}", x / 1024.0))
            };
            let conns = |v: &Value| match (
                v["connected_clients_before"].as_u64(),
                v["connected_clients_after"].as_u64(),
            ) {
                (Some(a), Some(b)) => format!("{a} → {b}"),
                _ => "—".to_owned(),
            };
            let (l, f, g) = (mode("latest"), mode("fanout"), mode("group"));
            let mut notes = Vec::new();
            for (name, v) in [("latest", &l), ("fanout", &f), ("group", &g)] {
                if let Some(e) = v["error"].as_str() {
                    notes.push(format!(
                        "{name}: {e} ({} of {} delivered)",
                        v["delivered"], p["streams"]
                    ));
                }
                if let Some(e) = v["close_error"].as_str() {
                    notes.push(format!("{name} close: {e}"));
                }
            }
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                thousands(p["streams"].as_f64().unwrap_or(0.0)),
                p["masters"],
                p["round"],
                secs(&l, "subscribe_secs"),
                secs(&f, "subscribe_secs"),
                secs(&f, "all_delivered_secs"),
                mib(&f),
                conns(&f),
                secs(&g, "subscribe_secs"),
                secs(&g, "all_delivered_secs"),
                mib(&g),
                conns(&g),
                notes.join("; ")
            ));
        }
    }
    s
}

/// A table header: masters and what, a column per round, the median and
/// one more column.
fn header(rounds: usize, median: &str, extra: &str) -> String {
    let mut s = String::from("| masters | what |");
    for r in 1..=rounds {
        s.push_str(&format!(" round {r} |"));
    }
    s.push_str(&format!(" {median} | {extra} |\n|--:|---|"));
    for _ in 0..=rounds {
        s.push_str("--:|");
    }
    s.push_str("--:|\n");
    s
}
