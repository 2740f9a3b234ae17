//! Backpressure: a full local buffer blocks losslessly, or drops the
//! oldest or newest message and counts it.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use switchyard_core::{Message, Overflow, Subscription};
use tokio::time::timeout;

use crate::support::{
    drain, exactly_once, first, in_order, indices, join, next, payload, publish_range, quiet,
    subscribe,
};
use crate::{CaseResult, Ctx};

const N: usize = 2000;
const BUFFER: usize = 16;

/// A slow subscriber with `Block` loses nothing.
pub async fn backpressure_block(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let topic = ctx.topic("block")?;
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone())
            .buffer(BUFFER)
            .overflow(Overflow::Block),
        "slow subscriber (Block)",
    )
    .await?;
    let publisher = {
        let t = t.clone();
        let topic = topic.clone();
        tokio::spawn(async move { publish_range(&t, &topic, "k", 0..N).await })
    };
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let d = next(
            &mut sub,
            tuning.recv_timeout,
            &format!("slow subscriber (Block) after {} of {N}", got.len()),
        )
        .await?;
        got.push(d);
        if got.len() % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await; // the slow consumer's work
        }
    }
    join(publisher, "publisher").await?;
    let idx = indices("k", &got)?;
    exactly_once(&idx, N, "slow subscriber (Block)")?;
    if ctx.capabilities().per_topic_ordering {
        in_order(&idx, 0..N, "slow subscriber (Block)")?;
    }
    let dropped = sub.stats().dropped;
    ensure!(
        dropped == 0,
        "Overflow::Block must be lossless, but stats().dropped = {dropped}"
    );
    quiet(&mut sub, tuning.quiet_period, "slow subscriber after all").await
}

/// Publishes `N` into an unread subscriber with `overflow`, then checks the
/// accounting; returns the received numbers in arrival order.
async fn overflow_case(ctx: &Ctx, overflow: Overflow) -> anyhow::Result<Vec<usize>> {
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let topic = ctx.topic("overflow")?;
    let what = format!("unread subscriber ({overflow:?}, buffer {BUFFER})");
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone())
            .buffer(BUFFER)
            .overflow(overflow),
        &what,
    )
    .await?;
    for i in 0..N {
        match timeout(
            tuning.recv_timeout,
            t.publish(Message::new(topic.clone(), payload("v", i))),
        )
        .await
        {
            Err(_) => bail!(
                "publish of message {i} blocked for {:?} although the subscriber's overflow policy is {overflow:?}: a full dropping buffer must not stall publishers",
                tuning.recv_timeout
            ),
            Ok(r) => {
                r.with_context(|| format!("publish of message {i}"))?;
            }
        }
    }
    let got = drain(&mut sub, tuning.quiet_period, &what).await?;
    let idx = indices("v", &got)?;
    let received = idx.len() as u64;
    let dropped = sub.stats().dropped;
    ensure!(
        dropped > 0,
        "{what}: {N} messages published while nobody read, yet stats().dropped = 0 (received {received})"
    );
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure!(
        sorted.len() == idx.len(),
        "{what}: a message arrived twice ({} deliveries, {} distinct)",
        idx.len(),
        sorted.len()
    );
    if tuning.exact_drop_accounting {
        ensure!(
            received + dropped == N as u64,
            "{what}: received {received} + dropped {dropped} = {}, expected exactly {N} (every message is either received or counted as dropped)",
            received + dropped
        );
    } else {
        ensure!(
            received + dropped <= N as u64,
            "{what}: received {received} + dropped {dropped} = {} exceeds the {N} published",
            received + dropped
        );
    }
    // The subscriber keeps working after dropping.
    t.publish(Message::new(topic.clone(), payload("v", N)))
        .await
        .context("publish after the overflow")?;
    let after = next(
        &mut sub,
        tuning.recv_timeout,
        &format!("{what}: message published after the overflow"),
    )
    .await?;
    let after_idx = indices("v", std::slice::from_ref(&after))?;
    ensure!(
        after_idx == [N],
        "{what}: after the overflow expected the new message {N}, got {}",
        first(&after_idx)
    );
    Ok(idx)
}

/// `DropOldest`: drops are counted, the newest survive, delivery goes on.
pub async fn backpressure_drop_oldest(ctx: &Ctx) -> CaseResult {
    let idx = overflow_case(ctx, Overflow::DropOldest).await?;
    if ctx.tuning().exact_drop_accounting && ctx.capabilities().per_topic_ordering {
        ensure!(
            idx.last() == Some(&(N - 1)),
            "DropOldest must keep the newest message {}, but the last received was {:?}",
            N - 1,
            idx.last()
        );
        ensure!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "DropOldest: received messages out of order: {}",
            first(&idx)
        );
    }
    Ok(())
}

/// `DropNewest`: drops are counted, the oldest survive, delivery goes on.
pub async fn backpressure_drop_newest(ctx: &Ctx) -> CaseResult {
    let idx = overflow_case(ctx, Overflow::DropNewest).await?;
    if ctx.tuning().exact_drop_accounting && ctx.capabilities().per_topic_ordering {
        ensure!(
            idx.first() == Some(&0),
            "DropNewest must keep the oldest message 0, but the first received was {:?}",
            idx.first()
        );
        ensure!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "DropNewest: received messages out of order: {}",
            first(&idx)
        );
    }
    Ok(())
}

/// The buffer's fill is visible (`stats().buffered`, `capacity`), and a
/// pull (`fetch`) waits for its batch to fill and says whether more is
/// ready.
pub async fn fetch_and_buffer_fill(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let topic = ctx.topic("fetch")?;
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone()).buffer(64),
        "fetching subscriber (buffer 64)",
    )
    .await?;
    publish_range(&t, &topic, "f", 0..30).await?;
    // All 30 arrive in the local buffer without anyone reading.
    let deadline = tokio::time::Instant::now() + tuning.recv_timeout;
    loop {
        let s = sub.stats();
        if s.buffered == 30 {
            ensure!(
                s.capacity >= 64,
                "stats().capacity = {} with buffer(64)",
                s.capacity
            );
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "stats().buffered = {} (want 30 waiting, nobody reading)",
                s.buffered
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = sub.fetch(20, tuning.recv_timeout).await;
    ensure!(
        first.items.len() == 20,
        "fetch(20) returned {} items",
        first.items.len()
    );
    ensure!(
        first.more,
        "fetch(20) of 30 buffered must say more are ready"
    );
    ensure!(!first.closed, "fetch said closed");
    let second = sub.fetch(20, Duration::from_millis(300)).await;
    ensure!(
        second.items.len() == 10,
        "the second fetch(20, 300ms) returned {} items (10 were left)",
        second.items.len()
    );
    ensure!(!second.more, "nothing is left, but fetch said more");
    let mut got = Vec::with_capacity(30);
    for item in first.items.into_iter().chain(second.items) {
        got.push(item.context("fetch returned an error item")?);
    }
    let idx = indices("f", &got)?;
    exactly_once(&idx, 30, "fetched")?;
    if ctx.capabilities().per_topic_ordering {
        in_order(&idx, 0..30, "fetched")?;
    }
    ensure!(
        sub.stats().buffered == 0,
        "buffered = {} after fetching all",
        sub.stats().buffered
    );
    // A fetch waits for the batch to fill: 5 published 100 ms apart reach
    // one fetch(5).
    let publisher = {
        let t = t.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 30..35 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                publish_range(&t, &topic, "f", i..i + 1).await?;
            }
            anyhow::Ok(())
        })
    };
    let third = sub.fetch(5, tuning.recv_timeout).await;
    join(publisher, "paced publisher").await?;
    ensure!(
        third.items.len() == 5,
        "fetch(5) while 5 were published 100 ms apart returned {}",
        third.items.len()
    );
    sub.close().await?;
    Ok(())
}
