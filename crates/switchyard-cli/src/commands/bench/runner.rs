//! One run: subscribe, publish, wait for every delivery, then check what
//! arrived ([`super::check::tally`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use switchyard::{Error, Subscriber, SubscriberStats, Subscription, Topic, TopicFilter, Transport};
use tokio::task::JoinSet;

use super::check::{Arrivals, Seen, decode, tally};
use super::publish::{flat_out_publish, paced_publish};
use super::report::Progress;
use super::{BenchArgs, BenchMode, CLOSE_TIMEOUT, DEFAULT_LATENCY_SECS, DEFAULT_MESSAGES, Limit};
use crate::commands::stats::SubscriberTotals;

/// Messages received per `recv_batch`.
const RECV_BATCH: usize = 1024;
/// Local buffer of each benchmark subscriber.
const SUB_BUFFER: usize = 4096;

/// State shared by publishers, subscribers and the coordinator.
pub(super) struct Shared {
    /// The next sequence number to claim.
    pub(super) next_seq: AtomicU64,
    /// Publishes accepted by the transport.
    pub(super) published: AtomicU64,
    /// Deliveries seen by all subscribers together (duplicates included).
    pub(super) arrivals: AtomicU64,
    /// Messages the adapter announced as lost (`Error::Lost` ranges), over
    /// all subscribers: they will not arrive, so the run stops waiting
    /// for them.
    pub(super) announced_lost: AtomicU64,
    /// Nanoseconds since `epoch` of the latest arrival.
    pub(super) last_arrival_ns: AtomicU64,
    /// Set to stop everything (an error, or the end of the run).
    pub(super) stop: AtomicBool,
    /// The first error of a publisher, to report.
    pub(super) failure: Mutex<Option<String>>,
    /// Publishes in flight (latency mode).
    pub(super) in_flight: AtomicUsize,
    /// Time zero of the run: send times are nanoseconds since then.
    pub(super) epoch: Instant,
}

impl Shared {
    pub(super) fn since_epoch_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn fail(&self, message: String) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(message);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// What one subscriber task saw.
struct SubReport {
    arrivals: Arrivals,
    latency_ns: Option<Histogram<u64>>,
    /// The subscriber's own counters when it stopped.
    stats: SubscriberStats,
}

/// The figures of a run that passed its checks.
pub(super) struct Figures {
    pub(super) published: u64,
    pub(super) publish_secs: f64,
    pub(super) deliveries: u64,
    /// Duplicates that redeliveries explain (group mode, at-least-once).
    pub(super) redelivered: u64,
    pub(super) deliver_secs: f64,
    pub(super) latency_ns: Option<Histogram<u64>>,
    /// The subscribers' counters, summed.
    pub(super) subscribers: SubscriberTotals,
}
/// Runs the benchmark and checks every delivery.
pub(super) async fn bench(
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
        announced_lost: AtomicU64::new(0),
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
    let accounted = || {
        shared
            .arrivals
            .load(Ordering::Relaxed)
            .saturating_add(shared.announced_lost.load(Ordering::Relaxed))
    };
    while accounted() < target && !shared.stop.load(Ordering::SeqCst) {
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
    if reports.len() as u64 != subscribers {
        bail!(
            "{} of {subscribers} subscriber tasks ended abnormally; no figures",
            subscribers - reports.len() as u64
        );
    }
    let mut latency: Option<Histogram<u64>> = None;
    for h in reports.iter().filter_map(|r| r.latency_ns.as_ref()) {
        match &mut latency {
            Some(all) => all
                .add(h)
                .map_err(|e| anyhow!("could not merge latency histograms: {e}"))?,
            None => latency = Some(h.clone()),
        }
    }
    let arrivals: Vec<&Arrivals> = reports.iter().map(|r| &r.arrivals).collect();
    let t = tally(args.mode, published, &arrivals);
    if !t.passed() {
        let mut why = format!(
            "bench run {run_id} failed its delivery check, no figures printed: {} missing, {} duplicated, {} foreign of {published} messages x {copies} expected deliveries, {} error items",
            t.missing, t.duplicates, t.foreign, t.errors
        );
        let announced = shared.announced_lost.load(Ordering::Relaxed);
        if announced > 0 {
            let _ = write!(
                why,
                "; {announced} deliveries announced lost by gap signals (the subscribers fell behind: try fewer --publishers, or --mode latency with a --rate)"
            );
        }
        if timed_out {
            let _ = write!(why, "; nothing arrived for {}s", args.timeout);
        }
        if let Some(e) = t.first_error {
            let _ = write!(why, "; first error: {e}");
        }
        bail!(why);
    }
    Ok(Figures {
        published,
        publish_secs,
        deliveries: t.deliveries,
        redelivered: t.redelivered,
        deliver_secs,
        latency_ns: latency,
        subscribers: reports
            .iter()
            .fold(SubscriberTotals::default(), |mut t, r| {
                t.add(&r.stats);
                t
            }),
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
        arrivals: Arrivals {
            seen: Seen::with_capacity(expected_hint),
            ..Arrivals::default()
        },
        latency_ns: if record_latency {
            // 1 ns .. 1 hour, 3 significant digits.
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok()
        } else {
            None
        },
        stats: SubscriberStats::default(),
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
                    let arrivals = &mut report.arrivals;
                    if delivery.attempt() > 1 {
                        arrivals.redelivered += 1;
                    }
                    match decode(delivery.payload()) {
                        Some((seq, sent_ns)) if arrivals.seen.record(seq) => {
                            counted += 1;
                            if let Some(h) = &mut report.latency_ns {
                                h.saturating_record(now_ns.saturating_sub(sent_ns).max(1));
                            }
                        }
                        _ => arrivals.foreign += 1,
                    }
                    if delivery.needs_ack()
                        && let Err(e) = delivery.ack().await
                    {
                        let arrivals = &mut report.arrivals;
                        arrivals.errors += 1;
                        arrivals
                            .first_error
                            .get_or_insert_with(|| format!("ack failed: {e}"));
                    }
                }
                Err(e) => {
                    if let Error::Lost { from, to, .. } = &e {
                        let n = to.saturating_sub(*from).saturating_add(1);
                        shared.announced_lost.fetch_add(n, Ordering::Relaxed);
                    }
                    report.arrivals.errors += 1;
                    report
                        .arrivals
                        .first_error
                        .get_or_insert_with(|| e.to_string());
                }
            }
        }
        shared.last_arrival_ns.fetch_max(now_ns, Ordering::Relaxed);
        shared.arrivals.fetch_add(counted, Ordering::Relaxed);
    }
    report.stats = sub.stats();
    if tokio::time::timeout(CLOSE_TIMEOUT, sub.close())
        .await
        .is_err()
    {
        tracing::debug!("closing a bench subscriber timed out");
    }
    report
}
