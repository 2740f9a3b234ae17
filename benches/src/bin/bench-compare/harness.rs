//! What every workload of `bench-compare` shares: the result row, payloads,
//! medians over repeats, latency summaries and readers that count every
//! delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use switchyard::{Bytes, Subscriber};
use tokio::sync::Notify;

/// Who a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A raw limit: redis-benchmark, hand-written redis-rs, tokio channels.
    Raw,
    /// A library users would pick instead of switchyard (rows exist only
    /// with the `peers` feature).
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    Peer,
    /// One of switchyard's adapters.
    Ours,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Peer => "peer",
            Kind::Ours => "switchyard",
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// The comparison it belongs to (`streams-publish`, …).
    pub(crate) section: &'static str,
    /// What ran, e.g. `switchyard redis-streams, 64 publishers`.
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// Messages (or deliveries) counted.
    pub(crate) messages: u64,
    /// Payload bytes per message.
    pub(crate) size: usize,
    /// Seconds the messages took (the median run).
    pub(crate) secs: f64,
    /// The msg/s of every repeat, for the raw JSON.
    pub(crate) runs: Vec<f64>,
    pub(crate) latency: Option<Latency>,
    /// Anything a reader must know to compare it fairly.
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn msgs_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.messages as f64 / self.secs
        } else {
            0.0
        }
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.size as f64 / 1e6
    }

    pub(crate) fn to_json(&self, ratio: Option<f64>) -> Value {
        json!({
            "section": self.section,
            "name": self.name,
            "kind": self.kind.as_str(),
            "messages": self.messages,
            "size": self.size,
            "secs": round(self.secs, 6),
            "msgs_per_sec": round(self.msgs_per_sec(), 1),
            "mb_per_sec": round(self.mb_per_sec(), 2),
            "runs_msgs_per_sec": self.runs.iter().map(|r| round(*r, 1)).collect::<Vec<_>>(),
            "ratio_to_raw_limit": ratio.map(|r| round(r, 3)),
            "latency_us": self.latency.map(|l| json!({
                "p50": round(l.p50, 1), "p90": round(l.p90, 1), "p99": round(l.p99, 1),
                "p999": round(l.p999, 1), "max": round(l.max, 1),
            })),
            "note": self.note,
        })
    }
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let f = 10_f64.powi(digits);
    (v * f).round() / f
}

/// A payload of `size` bytes.
pub(crate) fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

/// The longest one measured run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `f` `repeats` times; the row of the median throughput, with every
/// run's msg/s recorded.
pub(crate) async fn median<F, Fut>(repeats: usize, mut f: F) -> Result<Row>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Row>>,
{
    let mut rows = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        // A run that hangs must not hang the whole comparison.
        let row = tokio::time::timeout(RUN_TIMEOUT, f())
            .await
            .map_err(|_| anyhow::anyhow!("no result within {} s", RUN_TIMEOUT.as_secs()))??;
        rows.push(row);
    }
    rows.sort_by(|a, b| a.msgs_per_sec().total_cmp(&b.msgs_per_sec()));
    let runs: Vec<f64> = rows.iter().map(Row::msgs_per_sec).collect();
    let mut row = rows.swap_remove(rows.len() / 2);
    row.runs = runs;
    Ok(row)
}

/// A fresh HDR histogram of nanoseconds (1 ns .. 1 h, 3 digits).
pub(crate) fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).context("latency histogram")
}

/// Background readers: each counts (and acks) its deliveries; the caller
/// waits for a total.
pub(crate) struct Readers {
    count: Arc<AtomicU64>,
    /// Messages that `Lost` signals reported (at-most-once adapters).
    lost: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    epoch: Instant,
}

impl Readers {
    /// One task per subscriber, reading `recv_batch`es of up to 1024.
    pub(crate) fn start(subs: Vec<Box<dyn Subscriber>>, epoch: Instant) -> Readers {
        let count = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = subs
            .into_iter()
            .map(|mut sub| {
                let (count, lost, last_ns, failed, notify, stop) = (
                    count.clone(),
                    lost.clone(),
                    last_ns.clone(),
                    failed.clone(),
                    notify.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let result = async {
                        while !stop.load(Ordering::Relaxed) {
                            let asked = Instant::now();
                            let items = sub.recv_batch(1024, Duration::from_millis(20)).await;
                            if items.is_empty() && asked.elapsed() < Duration::from_millis(1) {
                                // An empty batch without waiting: the
                                // subscription has ended.
                                bail!("the subscription ended");
                            }
                            let n = items.len() as u64;
                            let mut n = n;
                            for item in items {
                                let d = match item {
                                    Ok(d) => d,
                                    // At-most-once adapters announce a gap;
                                    // count what it says was lost.
                                    Err(switchyard::Error::Lost { from, to, .. }) => {
                                        lost.fetch_add(
                                            to.saturating_sub(from) + 1,
                                            Ordering::Relaxed,
                                        );
                                        n -= 1;
                                        continue;
                                    }
                                    Err(e) => return Err(e).context("a delivery failed"),
                                };
                                if d.needs_ack() {
                                    d.ack().await.context("ack failed")?;
                                }
                            }
                            if n > 0 {
                                let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(0);
                                last_ns.fetch_max(now, Ordering::Relaxed);
                                count.fetch_add(n, Ordering::Relaxed);
                                notify.notify_waiters();
                            }
                        }
                        Ok(())
                    }
                    .await;
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        notify.notify_waiters();
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), sub.close()).await;
                    result
                })
            })
            .collect();
        Readers {
            count,
            lost,
            last_ns,
            failed,
            notify,
            stop,
            tasks,
            epoch,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Messages reported lost by `Lost` signals so far.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Time of the latest delivery since the epoch.
    pub(crate) fn last_arrival(&self) -> Duration {
        Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }

    /// Waits until `target` deliveries arrived; fails when nothing arrives
    /// for `idle`.
    pub(crate) async fn wait_for(&self, target: u64, idle: Duration) -> Result<()> {
        let mut last = self.count();
        let mut last_change = Instant::now();
        while self.count() < target {
            if self.failed.load(Ordering::Relaxed) {
                bail!("a reader failed at {} of {target} deliveries", self.count());
            }
            let notified = self.notify.notified();
            if self.count() >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
            let now = self.count();
            if now != last {
                (last, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > idle {
                bail!("deliveries stalled at {now} of {target}");
            }
        }
        Ok(())
    }

    /// Stops the readers; an error of any of them.
    pub(crate) async fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            t.await.context("a reader task panicked")??;
        }
        Ok(self.count.load(Ordering::Relaxed))
    }
}

impl Drop for Readers {
    /// A run that failed half way drops its readers: they stop too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.epoch;
    }
}

/// Splits `n` into `parts` nearly equal shares.
pub(crate) fn share(n: u64, parts: u64, i: u64) -> u64 {
    n / parts + u64::from(i < n % parts)
}

/// A pacing thread offering `n` payloads of `size` bytes (at least 8) at
/// `rate` msg/s from `epoch` + 1 ms: each payload starts with its
/// intended send time (ns since `epoch`, little endian), so latency can
/// be measured from it (no coordinated omission). `send` hands each one
/// on; its error ends the thread's run.
pub(crate) fn spawn_pacer(
    n: u64,
    rate: u64,
    size: usize,
    epoch: Instant,
    mut send: impl FnMut(Vec<u8>) -> Result<()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<()>> {
    let interval_ns = 1e9 / rate.max(1) as f64;
    let size = size.max(8);
    tokio::task::spawn_blocking(move || {
        for i in 0..n {
            let due = Duration::from_nanos(1_000_000 + (i as f64 * interval_ns) as u64);
            if let Some(wait) = due.checked_sub(epoch.elapsed()) {
                std::thread::sleep(wait);
            }
            let mut body = vec![b'x'; size];
            let due_ns = u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
            body[..8].copy_from_slice(&due_ns.to_le_bytes());
            send(body)?;
        }
        Ok(())
    })
}
