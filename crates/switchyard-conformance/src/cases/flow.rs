//! Backpressure: a full local buffer blocks losslessly, or drops the
//! oldest or newest message and counts it.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use switchyard_core::{Error, Message, Overflow, Subscription};
use tokio::time::timeout;

use crate::support::{
    describe, drain, exactly_once, first, in_order, indices, join, next, payload, publish_range,
    quiet, subscribe,
};
use crate::{CaseResult, Ctx};

const N: usize = 2000;
const BUFFER: usize = 16;

/// A slow subscriber with `Block` loses nothing; with `lossy_block` (the
/// Pub/Sub backplane) a stuck one stalls nobody and gets gap signals for
/// what it missed.
pub async fn backpressure_block(ctx: &Ctx) -> CaseResult {
    if ctx.capabilities().lossy_block {
        return block_never_waits(ctx).await;
    }
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

/// `lossy_block`: a `Block` subscriber (buffer 16) that never reads does
/// not hold back the publisher or a reading subscriber; drained, it yields
/// its buffer in order and gap signals covering exactly what it missed.
async fn block_never_waits(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let topic = ctx.topic("block")?;
    let what = format!("unread subscriber (Block, buffer {BUFFER}, lossy_block)");
    let mut stuck = subscribe(
        &t,
        Subscription::new(topic.clone())
            .buffer(BUFFER)
            .overflow(Overflow::Block),
        &what,
    )
    .await?;
    let mut reader = subscribe(
        &t,
        Subscription::new(topic.clone())
            .buffer(N)
            .overflow(Overflow::Block),
        "reading subscriber (Block, buffer 2,000)",
    )
    .await?;
    for i in 0..N {
        match timeout(
            tuning.recv_timeout,
            t.publish(Message::new(topic.clone(), payload("k", i))),
        )
        .await
        {
            Err(_) => bail!(
                "publish of message {i} blocked for {:?}: with lossy_block a full Block subscriber must not stall the publisher",
                tuning.recv_timeout
            ),
            Ok(r) => {
                r.with_context(|| format!("publish of message {i}"))?;
            }
        }
    }
    let got = drain(&mut reader, tuning.quiet_period, "reading subscriber").await?;
    let idx = indices("k", &got)?;
    exactly_once(&idx, N, "reading subscriber (Block)")?;
    if ctx.capabilities().per_topic_ordering {
        in_order(&idx, 0..N, "reading subscriber (Block)")?;
    }
    let mut kept = Vec::new();
    let mut signalled = 0u64;
    loop {
        match timeout(tuning.quiet_period, stuck.recv()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(d))) => {
                ensure!(
                    signalled == 0,
                    "{what}: message {} arrived after a gap signal",
                    describe(&d)
                );
                kept.push(d);
            }
            Ok(Some(Err(Error::Lost { from, to, .. }))) => {
                ensure!(from <= to, "{what}: gap signal {from}..={to}");
                signalled += to - from + 1;
            }
            Ok(Some(Err(e))) => bail!("{what}: unexpected error item: {e}"),
        }
    }
    let idx = indices("k", &kept)?;
    if ctx.capabilities().per_topic_ordering {
        in_order(&idx, 0..BUFFER, &what)?;
    }
    let missed = (N - BUFFER) as u64;
    let st = stuck.stats();
    ensure!(
        kept.len() == BUFFER && signalled == missed,
        "{what}: kept {} (expected its buffer, {BUFFER}), gap signals for {signalled} (expected {missed})",
        kept.len()
    );
    if tuning.exact_drop_accounting {
        ensure!(
            st.dropped == missed && st.lost == 0,
            "{what}: stats().dropped = {}, lost = {}; expected {missed} dropped and 0 lost (a gap signal for a dropped message does not count it again)",
            st.dropped,
            st.lost
        );
    }
    Ok(())
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

/// `max_in_flight`: a member at its limit takes nothing more; the others
/// get the rest; a settlement frees a slot.
pub async fn max_in_flight_limits_a_member(ctx: &Ctx) -> CaseResult {
    use switchyard_core::{Error, Start};
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let topic = ctx.topic("inflight")?;
    // A fan-out subscription has nothing in flight: refused.
    match t
        .subscribe(Subscription::new(topic.clone()).max_in_flight(2))
        .await
    {
        Err(Error::InvalidConfig(_)) => {}
        Err(e) => bail!("fan-out with max_in_flight: want InvalidConfig, got {e}"),
        Ok(_) => bail!("fan-out with max_in_flight: want InvalidConfig, got a subscriber"),
    }
    let mut busy = subscribe(
        &t,
        Subscription::new(topic.clone())
            .group_member("workers", "busy")
            .start(Start::Earliest)
            .max_in_flight(2)
            .ack_timeout(Duration::from_secs(600)),
        "member with max_in_flight(2)",
    )
    .await?;
    publish_range(&t, &topic, "m", 0..20).await?;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(next(&mut busy, tuning.recv_timeout, "busy member's first two").await?);
    }
    let mut other = subscribe(
        &t,
        Subscription::new(topic.clone())
            .group_member("workers", "other")
            .start(Start::Earliest),
        "member without a limit",
    )
    .await?;
    // The other member gets all 18 the busy one may not take.
    let mut all: Vec<usize> = indices("m", &held)?;
    for _ in 0..18 {
        let d = next(&mut other, tuning.recv_timeout, "the other member's share").await?;
        all.push(crate::support::index_of("m", &d)?);
        d.ack().await?;
    }
    exactly_once(&all, 20, "the two members together")?;
    // While the busy member holds 2, 5 more all go to the other one.
    publish_range(&t, &topic, "n", 0..5).await?;
    let mut five = Vec::new();
    for _ in 0..5 {
        let d = next(
            &mut other,
            tuning.recv_timeout,
            "5 published while busy is at its limit",
        )
        .await?;
        five.push(crate::support::index_of("n", &d)?);
        d.ack().await?;
    }
    exactly_once(&five, 5, "the other member")?;
    if let Ok(Some(item)) = timeout(tuning.quiet_period, busy.recv()).await {
        bail!("the member at max_in_flight(2) took a third delivery: {item:?}");
    }
    // A settlement frees a slot: with the other member gone, the busy one
    // takes the next message.
    other.close().await?;
    held.pop().context("two held")?.ack().await?;
    publish_range(&t, &topic, "p", 0..1).await?;
    let d = next(&mut busy, tuning.recv_timeout, "busy after acking one").await?;
    ensure!(
        crate::support::index_of("p", &d)? == 0,
        "busy got {:?}",
        d.payload()
    );
    d.ack().await?;
    for d in held {
        d.ack().await?;
    }
    busy.close().await?;
    Ok(())
}
