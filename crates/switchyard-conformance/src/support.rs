//! Helpers shared by the cases: receiving with deadlines, numbered payloads
//! and checks that return precise errors instead of panicking.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use switchyard_core::{
    DedupId, Delivery, Error, Message, MessageId, Subscriber, Subscription, Topic, Transport,
};
use tokio::time::timeout;

/// A boxed subscriber, as `subscribe` returns it.
pub(crate) type Sub = Box<dyn Subscriber>;

/// The payload of message number `i` tagged `tag`: `tag-000042`.
pub(crate) fn payload(tag: &str, i: usize) -> Bytes {
    Bytes::from(format!("{tag}-{i:06}"))
}

/// The number `i` in a payload made by [`payload`].
pub(crate) fn index_of(tag: &str, d: &Delivery) -> anyhow::Result<usize> {
    let parsed = std::str::from_utf8(d.payload())
        .ok()
        .and_then(|s| s.strip_prefix(tag))
        .and_then(|s| s.strip_prefix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    match parsed {
        Some(i) => Ok(i),
        None => bail!(
            "unexpected delivery ({}): payload is not of the form {tag}-NNNNNN",
            describe(d)
        ),
    }
}

/// A short description of a delivery for error messages.
pub(crate) fn describe(d: &Delivery) -> String {
    format!(
        "topic {} id {} attempt {} payload {}",
        d.topic(),
        d.id(),
        d.attempt(),
        preview(d.payload())
    )
}

/// The payload as a quoted string when short UTF-8, else its length.
pub(crate) fn preview(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.len() <= 48 => format!("{s:?}"),
        _ => format!("<{} bytes>", bytes.len()),
    }
}

/// Subscribes, naming the subscriber in the error.
pub(crate) async fn subscribe(
    t: &Arc<dyn Transport>,
    subscription: Subscription,
    what: &str,
) -> anyhow::Result<Sub> {
    let shown = format!("{subscription:?}");
    t.subscribe(subscription)
        .await
        .with_context(|| format!("subscribe failed for {what} ({shown})"))
}

/// Publishes `tag-i` for every `i` in `range` on `topic`, one at a time.
pub(crate) async fn publish_range(
    t: &Arc<dyn Transport>,
    topic: &Topic,
    tag: &str,
    range: Range<usize>,
) -> anyhow::Result<Vec<MessageId>> {
    let mut ids = Vec::with_capacity(range.len());
    for i in range {
        let id = t
            .publish(Message::new(topic.clone(), payload(tag, i)))
            .await
            .with_context(|| format!("publishing message {tag}-{i:06} on {topic}"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The next delivery within `wait`; an error if none comes, the subscriber
/// ends, or it yields an error item.
pub(crate) async fn next(sub: &mut Sub, wait: Duration, what: &str) -> anyhow::Result<Delivery> {
    match timeout(wait, sub.recv()).await {
        Err(_) => bail!("{what}: nothing arrived within {wait:?}"),
        Ok(None) => bail!("{what}: the subscriber ended (recv returned None)"),
        Ok(Some(Err(e))) => bail!("{what}: the subscriber yielded an error item: {e}"),
        Ok(Some(Ok(d))) => Ok(d),
    }
}

/// Checks that nothing arrives within `period`.
pub(crate) async fn quiet(sub: &mut Sub, period: Duration, what: &str) -> anyhow::Result<()> {
    match timeout(period, sub.recv()).await {
        Err(_) => Ok(()),
        Ok(None) => bail!("{what}: the subscriber ended (recv returned None) unexpectedly"),
        Ok(Some(Err(e))) => {
            bail!("{what}: expected nothing within {period:?}, got an error item: {e}")
        }
        Ok(Some(Ok(d))) => bail!(
            "{what}: expected nothing more within {period:?}, got a delivery ({})",
            describe(&d)
        ),
    }
}

/// Receives exactly `n` deliveries, waiting at most `idle` for each.
pub(crate) async fn collect(
    sub: &mut Sub,
    n: usize,
    idle: Duration,
    what: &str,
) -> anyhow::Result<Vec<Delivery>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match timeout(idle, sub.recv()).await {
            Err(_) => bail!(
                "{what}: received {} of {n} expected deliveries, then nothing for {idle:?}",
                out.len()
            ),
            Ok(None) => bail!(
                "{what}: the subscriber ended after {} of {n} expected deliveries",
                out.len()
            ),
            Ok(Some(Err(e))) => bail!(
                "{what}: error item after {} of {n} expected deliveries: {e}",
                out.len()
            ),
            Ok(Some(Ok(d))) => out.push(d),
        }
    }
    Ok(out)
}

/// Receives until nothing arrives for `period` (or the subscriber ends);
/// error items fail.
pub(crate) async fn drain(
    sub: &mut Sub,
    period: Duration,
    what: &str,
) -> anyhow::Result<Vec<Delivery>> {
    let mut out = Vec::new();
    loop {
        match timeout(period, sub.recv()).await {
            Err(_) | Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => bail!("{what}: error item after {} deliveries: {e}", out.len()),
            Ok(Some(Ok(d))) => out.push(d),
        }
    }
}

/// The numbers of the deliveries, in arrival order.
pub(crate) fn indices(tag: &str, ds: &[Delivery]) -> anyhow::Result<Vec<usize>> {
    ds.iter().map(|d| index_of(tag, d)).collect()
}

/// Checks that every number in `0..n` occurs exactly once and nothing else.
pub(crate) fn exactly_once(got: &[usize], n: usize, what: &str) -> anyhow::Result<()> {
    let mut counts = vec![0u32; n];
    let mut foreign = Vec::new();
    for &i in got {
        match counts.get_mut(i) {
            Some(c) => *c += 1,
            None => foreign.push(i),
        }
    }
    let missing: Vec<usize> = (0..n).filter(|&i| counts[i] == 0).collect();
    let repeated: Vec<String> = (0..n)
        .filter(|&i| counts[i] > 1)
        .map(|i| format!("{i}×{}", counts[i]))
        .collect();
    if missing.is_empty() && repeated.is_empty() && foreign.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{what}: expected each of {n} messages exactly once, got {} deliveries",
        got.len()
    );
    if !missing.is_empty() {
        let _ = write!(
            msg,
            "; {} missing (first: {})",
            missing.len(),
            first(&missing)
        );
    }
    if !repeated.is_empty() {
        let _ = write!(
            msg,
            "; {} duplicated (first: {})",
            repeated.len(),
            first(&repeated)
        );
    }
    if !foreign.is_empty() {
        let _ = write!(
            msg,
            "; {} outside 0..{n} (first: {})",
            foreign.len(),
            first(&foreign)
        );
    }
    bail!(msg)
}

/// Checks that `got` is exactly `expected` in this order.
pub(crate) fn in_order(got: &[usize], expected: Range<usize>, what: &str) -> anyhow::Result<()> {
    let want: Vec<usize> = expected.clone().collect();
    if got == want.as_slice() {
        return Ok(());
    }
    ensure!(
        got.len() == want.len(),
        "{what}: expected {} messages ({expected:?}) in publish order, got {}",
        want.len(),
        got.len()
    );
    let pos = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
    bail!(
        "{what}: not in publish order: at position {pos} expected message {}, got {} (around it: {})",
        want[pos],
        got[pos],
        first(&got[pos.saturating_sub(2)..(pos + 3).min(got.len())])
    )
}

/// Checks that ids are strictly increasing.
pub(crate) fn increasing(ids: &[MessageId], what: &str) -> anyhow::Result<()> {
    if let Some(k) = ids.windows(2).position(|w| w[0] >= w[1]) {
        bail!(
            "{what}: ids must strictly increase in publish order, but id #{k} is {} and id #{} is {}",
            ids[k],
            k + 1,
            ids[k + 1]
        );
    }
    Ok(())
}

/// Checks that every id is different.
pub(crate) fn unique_ids(ids: &[MessageId], what: &str) -> anyhow::Result<()> {
    let mut seen = HashMap::new();
    for (k, id) in ids.iter().enumerate() {
        if let Some(prev) = seen.insert(*id, k) {
            bail!("{what}: id {id} was returned twice (messages #{prev} and #{k})");
        }
    }
    Ok(())
}

/// Per message number, every dedup id seen; fails when a number came with
/// two different dedup ids.
pub(crate) fn same_dedup_ids(
    copies: &[(usize, DedupId)],
    what: &str,
) -> anyhow::Result<HashMap<usize, usize>> {
    let mut first_seen: HashMap<usize, DedupId> = HashMap::new();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for &(i, dedup) in copies {
        *counts.entry(i).or_default() += 1;
        match first_seen.get(&i) {
            None => {
                first_seen.insert(i, dedup);
            }
            Some(&d) => ensure!(
                d == dedup,
                "{what}: message {i} was delivered again with dedup id {dedup}, but its first copy had {d}: duplicates must carry the same dedup id"
            ),
        }
    }
    Ok(counts)
}

/// Checks that `result` failed with an error accepted by `accept`.
pub(crate) fn expect_err<T>(
    result: switchyard_core::Result<T>,
    accept: fn(&Error) -> bool,
    expected: &str,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => bail!("{what}: expected Err({expected}), got Ok"),
        Err(e) if accept(&e) => Ok(()),
        Err(e) => bail!("{what}: expected Err({expected}), got Err({e:?})"),
    }
}

/// Up to ten items, comma separated, with an ellipsis when there are more.
pub(crate) fn first<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s = items
        .iter()
        .take(10)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 10 {
        s.push_str(", …");
    }
    s
}

/// Awaits a spawned task, turning a panic or cancellation into an error.
pub(crate) async fn join<T>(
    handle: tokio::task::JoinHandle<anyhow::Result<T>>,
    what: &str,
) -> anyhow::Result<T> {
    match handle.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => bail!("{what}: the task panicked: {e}"),
        Err(e) => bail!("{what}: the task was cancelled: {e}"),
    }
}
