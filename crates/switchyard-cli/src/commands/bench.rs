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

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use switchyard::{
    Bytes, Error, Message, Subscriber, Subscription, Topic, TopicFilter, Transport, redact_url,
};
use tokio::task::JoinSet;

use crate::GlobalOpts;
use crate::output::out;

/// Bytes at the start of every payload: sequence number and send time.
const HEADER_LEN: usize = 16;
/// The default number of messages of the throughput modes.
const DEFAULT_MESSAGES: u64 = 100_000;
/// The default length of a latency run, in seconds (when `--messages` and
/// `--duration` are both absent).
const DEFAULT_LATENCY_SECS: u64 = 5;
/// Messages received per `recv_batch`.
const RECV_BATCH: usize = 1024;
/// Local buffer of each benchmark subscriber.
const SUB_BUFFER: usize = 4096;
/// Latency mode fails when this many publishes are in flight at once: the
/// backend cannot keep up with the offered rate.
const MAX_IN_FLIGHT: usize = 100_000;
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

    /// Payload size in bytes (at least 16: sequence number and send time)
    #[arg(long, value_name = "BYTES", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..=64 * 1024 * 1024))]
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

/// Writes the sequence number and send time, then fills up to `size`.
fn encode(seq: u64, sent_ns: u64, size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&sent_ns.to_le_bytes());
    v.resize(size.max(HEADER_LEN), b'x');
    Bytes::from(v)
}

/// Reads what [`encode`] wrote; `None` for a payload that is not ours.
fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// Which sequence numbers one subscriber (or group member) saw.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    unique: u64,
    received: u64,
}

/// Sequence numbers beyond this are not ours (a corrupt payload).
const MAX_SEQ: u64 = 1 << 34;

impl Seen {
    fn with_capacity(n: u64) -> Self {
        Seen {
            bits: vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)],
            ..Seen::default()
        }
    }

    /// Records `seq`; `false` when it is out of range.
    fn record(&mut self, seq: u64) -> bool {
        if seq >= MAX_SEQ {
            return false;
        }
        let Ok(word) = usize::try_from(seq / 64) else {
            return false;
        };
        if word >= self.bits.len() {
            self.bits.resize((word + 1).max(self.bits.len() * 2), 0);
        }
        let mask = 1_u64 << (seq % 64);
        self.received += 1;
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.unique += 1;
        }
        true
    }

    fn merge(&mut self, other: &Seen) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= *b;
        }
        self.received += other.received;
        self.unique = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// Seen numbers at or beyond `expected` (never published in this run).
    fn beyond(&self, expected: u64) -> u64 {
        let mut n = 0;
        for (i, w) in self.bits.iter().enumerate() {
            let base = i as u64 * 64;
            for bit in 0..64 {
                if w & (1 << bit) != 0 && base + bit >= expected {
                    n += 1;
                }
            }
        }
        n
    }
}

/// State shared by publishers, subscribers and the coordinator.
struct Shared {
    /// The next sequence number to claim.
    next_seq: AtomicU64,
    /// Publishes accepted by the transport.
    published: AtomicU64,
    /// Deliveries seen by all subscribers together (duplicates included).
    arrivals: AtomicU64,
    /// Nanoseconds since `epoch` of the latest arrival.
    last_arrival_ns: AtomicU64,
    /// Set to stop everything (an error, or the end of the run).
    stop: AtomicBool,
    /// The first error of a publisher, to report.
    failure: Mutex<Option<String>>,
    /// Publishes in flight (latency mode).
    in_flight: AtomicUsize,
    /// Time zero of the run: send times are nanoseconds since then.
    epoch: Instant,
}

impl Shared {
    fn since_epoch_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(&self, message: String) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(message);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// What one subscriber task saw.
struct SubReport {
    seen: Seen,
    /// `Err` items (malformed payloads, lost ranges) and failed acks.
    errors: u64,
    /// Payloads that do not carry a valid sequence number.
    foreign: u64,
    /// The first error item, to report.
    first_error: Option<String>,
    latency_ns: Option<Histogram<u64>>,
}

/// The figures of a run that passed its checks.
struct Figures {
    published: u64,
    publish_secs: f64,
    deliveries: u64,
    deliver_secs: f64,
    latency_ns: Option<Histogram<u64>>,
}

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
    for t in std::iter::once(&publisher_side).chain(subscriber_side.as_ref()) {
        match tokio::time::timeout(CLOSE_TIMEOUT, t.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the transport failed"),
            Err(_) => tracing::debug!("closing the transport timed out"),
        }
    }
    let figures = result?;
    let text = if args.json {
        json_report(&args, &shown_url, &run_id, publisher_side.name(), &figures)
    } else {
        text_report(&args, &shown_url, &run_id, publisher_side.name(), &figures)
    };
    out(&text).context("could not write the result to stdout")?;
    Ok(())
}

/// Runs the benchmark and checks every delivery.
async fn bench(
    args: &BenchArgs,
    run_id: &str,
    publisher_side: &Arc<dyn Transport>,
    subscriber_side: &Arc<dyn Transport>,
) -> anyhow::Result<Figures> {
    let size = usize::try_from(args.size).context("--size does not fit in memory")?;
    let topic_count = usize::try_from(args.topics).context("--topics is too large")?;
    let topics: Arc<[Topic]> = (0..topic_count)
        .map(|i| Topic::new(format!("bench-{run_id}.{i}")))
        .collect::<Result<Vec<_>, _>>()?
        .into();
    let limit = match (args.messages, args.duration) {
        (Some(n), _) => Limit::Count(n),
        (None, Some(secs)) => Limit::Until(Instant::now() + Duration::from_secs_f64(secs)),
        (None, None) if args.mode == BenchMode::Latency => {
            Limit::Count(args.rate.saturating_mul(DEFAULT_LATENCY_SECS))
        }
        (None, None) => Limit::Count(DEFAULT_MESSAGES),
    };
    let subscribers = match args.mode {
        BenchMode::Publish => 0,
        _ => args.subscribers,
    };

    // Subscribe everything before publishing (Start::Latest).
    let filter = if topics.len() == 1 {
        TopicFilter::Exact(topics[0].clone())
    } else {
        TopicFilter::list(topics.iter().cloned())?
    };
    let group = format!("bench-{run_id}");
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let mut subscription = Subscription::new(filter.clone()).buffer(SUB_BUFFER);
        if args.mode == BenchMode::Group {
            subscription = subscription.group_member(group.clone(), format!("c{i}"));
        }
        let sub = subscriber_side
            .subscribe(subscription)
            .await
            .with_context(|| format!("could not subscribe subscriber {i} to {filter}"))?;
        subs.push(sub);
    }

    let expected_hint = match limit {
        Limit::Count(n) => n,
        Limit::Until(_) => 0,
    };
    let shared = Arc::new(Shared {
        next_seq: AtomicU64::new(0),
        published: AtomicU64::new(0),
        arrivals: AtomicU64::new(0),
        last_arrival_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        epoch: Instant::now(),
    });
    let record_latency = args.mode == BenchMode::Latency;
    let mut sub_tasks = JoinSet::new();
    for sub in subs {
        sub_tasks.spawn(subscriber(
            sub,
            shared.clone(),
            expected_hint,
            record_latency,
        ));
    }
    let copies = match args.mode {
        BenchMode::Publish => 0,
        BenchMode::Group => 1,
        BenchMode::Fanout | BenchMode::Latency => subscribers,
    };
    let progress = Progress::start(shared.clone(), expected_hint, copies);

    // Publish.
    let started = Instant::now();
    let published = if args.mode == BenchMode::Latency {
        paced_publish(args, limit, &topics, size, publisher_side, &shared).await
    } else {
        flat_out_publish(args, limit, &topics, size, publisher_side, &shared).await
    };
    let publish_secs = started.elapsed().as_secs_f64();
    let published = match published {
        Ok(n) => n,
        Err(e) => {
            shared.stop.store(true, Ordering::SeqCst);
            progress.finish();
            drain(&mut sub_tasks).await;
            return Err(e);
        }
    };

    // Wait for every delivery, failing after `--timeout` without progress.
    let target = published.saturating_mul(copies);
    let idle = Duration::from_secs(args.timeout);
    let mut last_count = shared.arrivals.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let mut timed_out = false;
    while shared.arrivals.load(Ordering::Relaxed) < target && !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.arrivals.load(Ordering::Relaxed);
        if now != last_count {
            last_count = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= idle {
            timed_out = true;
            break;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    progress.finish();
    let reports = drain(&mut sub_tasks).await;
    if let Some(failure) = shared.failure() {
        bail!(failure);
    }
    let deliver_secs = Duration::from_nanos(shared.last_arrival_ns.load(Ordering::Relaxed))
        .saturating_sub(started.saturating_duration_since(shared.epoch))
        .as_secs_f64();

    // Check what arrived.
    let mut missing = 0_u64;
    let mut duplicates = 0_u64;
    let mut foreign = 0_u64;
    let mut errors = 0_u64;
    let mut first_error = None;
    let mut deliveries = 0_u64;
    let mut latency: Option<Histogram<u64>> = None;
    let mut group_seen = Seen::default();
    for report in &reports {
        errors += report.errors;
        foreign += report.foreign + report.seen.beyond(published);
        if first_error.is_none() {
            first_error.clone_from(&report.first_error);
        }
        if let Some(h) = &report.latency_ns {
            match &mut latency {
                Some(all) => all
                    .add(h)
                    .map_err(|e| anyhow!("could not merge latency histograms: {e}"))?,
                None => latency = Some(h.clone()),
            }
        }
        if args.mode == BenchMode::Group {
            group_seen.merge(&report.seen);
        } else {
            let unique = report.seen.unique.min(published);
            missing += published - unique;
            duplicates += report.seen.received - report.seen.unique;
            deliveries += unique;
        }
    }
    if args.mode == BenchMode::Group {
        let unique = group_seen.unique.min(published);
        missing = published - unique;
        duplicates = group_seen.received - group_seen.unique;
        deliveries = unique;
    }
    if reports.len() as u64 != subscribers {
        bail!(
            "{} of {subscribers} subscriber tasks ended abnormally; no figures",
            subscribers - reports.len() as u64
        );
    }
    if missing > 0 || duplicates > 0 || foreign > 0 || errors > 0 {
        let mut why = format!(
            "bench run {run_id} failed its delivery check, no figures printed: {missing} missing, {duplicates} duplicated, {foreign} foreign of {published} messages x {copies} expected deliveries, {errors} error items"
        );
        if timed_out {
            let _ = write!(why, "; nothing arrived for {}s", args.timeout);
        }
        if let Some(e) = first_error {
            let _ = write!(why, "; first error: {e}");
        }
        bail!(why);
    }
    Ok(Figures {
        published,
        publish_secs,
        deliveries,
        deliver_secs,
        latency_ns: latency,
    })
}

/// Stops and collects the subscriber tasks.
async fn drain(tasks: &mut JoinSet<SubReport>) -> Vec<SubReport> {
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => tracing::warn!(error = %e, "a subscriber task failed"),
        }
    }
    reports
}

/// Receives until told to stop, counting every delivery.
async fn subscriber(
    mut sub: Box<dyn Subscriber>,
    shared: Arc<Shared>,
    expected_hint: u64,
    record_latency: bool,
) -> SubReport {
    let mut report = SubReport {
        seen: Seen::with_capacity(expected_hint),
        errors: 0,
        foreign: 0,
        first_error: None,
        latency_ns: if record_latency {
            // 1 ns .. 1 hour, 3 significant digits.
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok()
        } else {
            None
        },
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let items = sub.recv_batch(RECV_BATCH, Duration::from_millis(20)).await;
        if items.is_empty() {
            continue;
        }
        let now_ns = shared.since_epoch_ns();
        let mut counted = 0;
        for item in items {
            match item {
                Ok(delivery) => {
                    match decode(delivery.payload()) {
                        Some((seq, sent_ns)) if report.seen.record(seq) => {
                            counted += 1;
                            if let Some(h) = &mut report.latency_ns {
                                h.saturating_record(now_ns.saturating_sub(sent_ns).max(1));
                            }
                        }
                        _ => report.foreign += 1,
                    }
                    if delivery.needs_ack()
                        && let Err(e) = delivery.ack().await
                    {
                        report.errors += 1;
                        report
                            .first_error
                            .get_or_insert_with(|| format!("ack failed: {e}"));
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    report.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        shared.last_arrival_ns.fetch_max(now_ns, Ordering::Relaxed);
        shared.arrivals.fetch_add(counted, Ordering::Relaxed);
    }
    if tokio::time::timeout(CLOSE_TIMEOUT, sub.close())
        .await
        .is_err()
    {
        tracing::debug!("closing a bench subscriber timed out");
    }
    report
}

/// `--publishers` tasks publish as fast as the transport accepts.
async fn flat_out_publish(
    args: &BenchArgs,
    limit: Limit,
    topics: &Arc<[Topic]>,
    size: usize,
    transport: &Arc<dyn Transport>,
    shared: &Arc<Shared>,
) -> anyhow::Result<u64> {
    let mut tasks = JoinSet::new();
    for _ in 0..args.publishers {
        let transport = transport.clone();
        let shared = shared.clone();
        let topics = topics.clone();
        let batch = args.batch;
        tasks.spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                let count = match limit {
                    Limit::Until(deadline) if Instant::now() >= deadline => break,
                    Limit::Until(_) => batch,
                    Limit::Count(n) => {
                        let claimed = shared.next_seq.load(Ordering::Relaxed);
                        if claimed >= n {
                            break;
                        }
                        batch.min(n - claimed)
                    }
                };
                let first = shared.next_seq.fetch_add(count, Ordering::Relaxed);
                let count = match limit {
                    Limit::Count(n) if first >= n => break,
                    Limit::Count(n) => count.min(n - first),
                    Limit::Until(_) => count,
                };
                let sent = shared.since_epoch_ns();
                let message = |seq: u64| {
                    let topic = &topics[usize::try_from(seq % topics.len() as u64).unwrap_or(0)];
                    Message::new(topic.clone(), encode(seq, sent, size))
                };
                let result = if count == 1 {
                    transport.publish(message(first)).await.map(|_| ())
                } else {
                    let batch: Vec<Message> = (first..first + count).map(message).collect();
                    transport.publish_batch(batch).await.map(|_| ())
                };
                if let Err(e) = result {
                    shared.fail(format!("publishing message #{first} failed: {e}"));
                    break;
                }
                shared.published.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            shared.fail(format!("a publishing task crashed: {e}"));
        }
    }
    if let Some(failure) = shared.failure() {
        bail!(failure);
    }
    Ok(shared.published.load(Ordering::SeqCst))
}

/// Latency mode: `--publishers` pacing threads share the offered `--rate`.
/// Message `i` is due at `start + i / rate` and carries that due time;
/// each is handed to the runtime as its own publish so a slow publish
/// does not delay the next ones.
async fn paced_publish(
    args: &BenchArgs,
    limit: Limit,
    topics: &Arc<[Topic]>,
    size: usize,
    transport: &Arc<dyn Transport>,
    shared: &Arc<Shared>,
) -> anyhow::Result<u64> {
    let total = match limit {
        Limit::Count(n) => n,
        Limit::Until(deadline) => {
            let secs = deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            // Truncation is intended: whole messages.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (secs * args.rate as f64).ceil() as u64;
            n.max(1)
        }
    };
    let interval_ns = 1e9 / args.rate as f64;
    let start_ns = shared.since_epoch_ns() + 1_000_000;
    let handle = tokio::runtime::Handle::current();
    let mut pacers = JoinSet::new();
    for p in 0..args.publishers {
        let shared = shared.clone();
        let topics = topics.clone();
        let transport = transport.clone();
        let handle = handle.clone();
        let step = args.publishers;
        let rate = args.rate;
        pacers.spawn_blocking(move || {
            let mut seq = p;
            while seq < total && !shared.stop.load(Ordering::Relaxed) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = start_ns + (seq as f64 * interval_ns) as u64;
                let now = shared.since_epoch_ns();
                if due > now {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    shared.fail(format!(
                        "the transport cannot keep up with {rate} msg/s: {MAX_IN_FLIGHT} publishes in flight"
                    ));
                    break;
                }
                let topic = topics[usize::try_from(seq % topics.len() as u64).unwrap_or(0)].clone();
                let message = Message::new(topic, encode(seq, due, size));
                let transport = transport.clone();
                let shared = shared.clone();
                handle.spawn(async move {
                    match transport.publish(message).await {
                        Ok(_) => {
                            shared.published.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => shared.fail(format!("publishing message #{seq} failed: {e}")),
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
                seq += step;
            }
        });
    }
    while let Some(joined) = pacers.join_next().await {
        if let Err(e) = joined {
            shared.fail(format!("a pacing thread crashed: {e}"));
        }
    }
    // Wait for the publishes still in flight.
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while shared.in_flight.load(Ordering::SeqCst) > 0 && !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() >= deadline {
            shared.fail(format!(
                "{} publishes still unanswered after {}s",
                shared.in_flight.load(Ordering::SeqCst),
                args.timeout
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(failure) = shared.failure() {
        bail!(failure);
    }
    Ok(shared.published.load(Ordering::SeqCst))
}

/// A progress bar on stderr, only when stderr is a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(shared: Arc<Shared>, expected: u64, copies: u64) -> Progress {
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

    fn finish(&self) {
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

fn json_report(args: &BenchArgs, url: &str, run_id: &str, adapter: &str, f: &Figures) -> String {
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
    });
    format!("{value}\n")
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn text_report(args: &BenchArgs, url: &str, run_id: &str, adapter: &str, f: &Figures) -> String {
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
        "{:<10}every message counted: 0 missing, 0 duplicated",
        "checked"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode(42, 7, 16);
        assert_eq!(p.len(), 16);
        assert_eq!(decode(&p), Some((42, 7)));
        assert_eq!(encode(1, 2, 300).len(), 300);
        assert_eq!(decode(b"short"), None);
    }

    #[test]
    fn seen_counts_duplicates_and_merges() {
        let mut a = Seen::with_capacity(10);
        assert!(a.record(1));
        assert!(a.record(1));
        assert!(a.record(200));
        assert_eq!((a.unique, a.received), (2, 3));
        assert_eq!(a.beyond(100), 1);
        let mut b = Seen::default();
        b.record(1);
        b.record(2);
        a.merge(&b);
        assert_eq!((a.unique, a.received), (3, 5));
        assert!(!a.record(MAX_SEQ));
    }
}
