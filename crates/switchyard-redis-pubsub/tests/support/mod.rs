//! Helpers shared by the integration tests: servers, replicas, and a
//! recorder of what a subscriber saw. Waiting is always polling with a
//! deadline.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use switchyard_core::{Error, Health, Message, Subscriber, Topic, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport, split_lost_origin};

/// Fast probes and reconnects for tests.
pub(crate) const TEST_PARAMS: &str = "probe_interval=250ms&probe_timeout=500ms&reconnect_min=20ms&reconnect_max=400ms&connect_timeout=1s&response_timeout=2s";

/// Logs to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh namespace name.
pub(crate) fn namespace() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

/// `redis://127.0.0.1:PORT` (or any `scheme://rest`) → `redis+pubsub://rest`.
pub(crate) fn pubsub_url(url: &str, namespace: &str, extra: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut s = format!(
        "redis+pubsub://{}?namespace={namespace}&{TEST_PARAMS}",
        rest.trim_end_matches('/')
    );
    if !extra.is_empty() {
        s.push('&');
        s.push_str(extra);
    }
    s
}

/// A new replica (transport) on `url`.
pub(crate) async fn replica(url: &str) -> anyhow::Result<Arc<RedisPubSubTransport>> {
    let cfg = PubSubConfig::from_url(url)?;
    Ok(Arc::new(RedisPubSubTransport::connect(cfg).await?))
}

/// Polls `check` every 10 ms until it is true or `within` passes.
pub(crate) async fn wait_until<F, Fut>(
    within: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= within {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the health of `t` to satisfy `want`.
pub(crate) async fn wait_health(
    t: &RedisPubSubTransport,
    within: Duration,
    what: &str,
    want: impl Fn(&Health) -> bool,
) -> anyhow::Result<Duration> {
    wait_until(within, what, || async { want(&t.health().await) }).await
}

/// Publishes `tag-i` for `i` in `range` on `topic`.
pub(crate) async fn publish_range(
    t: &RedisPubSubTransport,
    topic: &Topic,
    tag: &str,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    for i in range {
        t.publish(Message::new(topic.clone(), format!("{tag}-{i}")))
            .await
            .with_context(|| format!("publishing {tag}-{i}"))?;
    }
    Ok(())
}

/// What one subscriber saw: message indices per publisher tag, in arrival
/// order, and gap signals per publisher tag (as index ranges).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) received: HashMap<String, Vec<u64>>,
    pub(crate) lost: HashMap<String, Vec<(u64, u64)>>,
    pub(crate) other_errors: Vec<String>,
    /// instance id (hex) → tag, to attribute gap signals.
    pub(crate) tags: HashMap<String, String>,
}

impl Seen {
    /// A recorder that knows which replica has which tag.
    pub(crate) fn new(replicas: &[(&str, &RedisPubSubTransport)]) -> Self {
        Seen {
            tags: replicas
                .iter()
                .map(|(tag, t)| (t.instance_id().to_owned(), (*tag).to_owned()))
                .collect(),
            ..Seen::default()
        }
    }

    fn record(&mut self, item: switchyard_core::Result<switchyard_core::Delivery>) {
        match item {
            Ok(d) => {
                let text = String::from_utf8_lossy(d.payload()).into_owned();
                match text
                    .rsplit_once('-')
                    .and_then(|(t, i)| Some((t.to_owned(), i.parse().ok()?)))
                {
                    Some((tag, i)) => self.received.entry(tag).or_default().push(i),
                    None => self
                        .other_errors
                        .push(format!("unexpected payload {text:?}")),
                }
            }
            Err(Error::Lost { origin, from, to }) => {
                let tag = split_lost_origin(&origin)
                    .and_then(|(id, _)| self.tags.get(&format!("{id:016x}")).cloned())
                    .unwrap_or(origin);
                // Topic sequence numbers count from 1, indices from 0.
                self.lost.entry(tag).or_default().push((from - 1, to - 1));
            }
            Err(e) => self.other_errors.push(e.to_string()),
        }
    }

    /// Messages of `tag` received.
    pub(crate) fn count(&self, tag: &str) -> usize {
        self.received.get(tag).map_or(0, Vec::len)
    }

    /// Messages of `tag` reported lost.
    pub(crate) fn lost_count(&self, tag: &str) -> u64 {
        self.lost
            .get(tag)
            .map_or(0, |v| v.iter().map(|(f, t)| t - f + 1).sum())
    }

    /// The highest index of `tag` received or reported lost, plus one.
    pub(crate) fn accounted(&self, tag: &str) -> u64 {
        let r = self.received.get(tag).and_then(|v| v.iter().max().copied());
        let l = self
            .lost
            .get(tag)
            .and_then(|v| v.iter().map(|(_, t)| *t).max());
        r.max(l).map_or(0, |m| m + 1)
    }

    /// Checks that every index `0..published` of `tag` was either received
    /// (exactly once, in order) or reported lost (exactly once), and nothing
    /// else; returns (received, lost).
    pub(crate) fn check_accounting(&self, tag: &str, published: u64) -> anyhow::Result<(u64, u64)> {
        let got = self.received.get(tag).cloned().unwrap_or_default();
        if got.windows(2).any(|w| w[0] >= w[1]) {
            bail!("{tag}: received out of order or twice: {got:?}");
        }
        let mut all = BTreeSet::new();
        for &i in &got {
            all.insert(i);
        }
        let mut lost = 0;
        for &(f, t) in self.lost.get(tag).map_or(&[][..], Vec::as_slice) {
            for i in f..=t {
                lost += 1;
                if !all.insert(i) {
                    bail!("{tag}: index {i} both received and reported lost (or lost twice)");
                }
            }
        }
        let want: BTreeSet<u64> = (0..published).collect();
        if all != want {
            let missing: Vec<_> = want.difference(&all).take(20).collect();
            let extra: Vec<_> = all.difference(&want).take(20).collect();
            bail!(
                "{tag}: received {} + lost {lost} != published {published}; silently missing {missing:?}, unexpected {extra:?}",
                got.len()
            );
        }
        if !self.other_errors.is_empty() {
            bail!("unexpected items: {:?}", self.other_errors);
        }
        Ok((got.len() as u64, lost))
    }
}

/// Reads from `sub` into `seen` until `done(seen)` or `within` passes.
pub(crate) async fn read_until(
    sub: &mut Box<dyn Subscriber>,
    seen: &mut Seen,
    within: Duration,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done(seen) {
        let left = within.saturating_sub(started.elapsed());
        if left.is_zero() {
            bail!("timed out after {within:?} waiting for {what}; saw {seen:?}");
        }
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(item)) => seen.record(item),
            Ok(None) => bail!("subscriber ended while waiting for {what}"),
            Err(_) => {}
        }
    }
    Ok(started.elapsed())
}

/// Reads whatever arrives within `quiet` into `seen`.
pub(crate) async fn read_quiet(sub: &mut Box<dyn Subscriber>, seen: &mut Seen, quiet: Duration) {
    while let Ok(Some(item)) = tokio::time::timeout(quiet, sub.recv()).await {
        seen.record(item);
    }
}
