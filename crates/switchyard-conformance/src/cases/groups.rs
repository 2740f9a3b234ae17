//! Consumer groups: sharing work, independence of groups, long work,
//! crashed members, continuing after close and after a backend restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use switchyard_core::{DedupId, Error, Message, Retry, Subscription};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::support::{
    Sub, collect, describe, exactly_once, first, index_of, join, next, publish_range, quiet,
    same_dedup_ids, subscribe,
};
use crate::{CaseResult, Ctx};

/// One received copy: message number, dedup id, attempt.
type Copy = (usize, DedupId, u32);

/// Receives until `n` distinct messages were seen, acking each delivery;
/// waits at most `idle` for each.
async fn collect_acking(
    sub: &mut Sub,
    tag: &str,
    n: usize,
    idle: Duration,
    what: &str,
) -> anyhow::Result<Vec<Copy>> {
    let mut copies = Vec::new();
    let mut distinct = BTreeSet::new();
    while distinct.len() < n {
        let d = match timeout(idle, sub.recv()).await {
            Err(_) => bail!(
                "{what}: {} of {n} distinct messages received, then nothing for {idle:?}",
                distinct.len()
            ),
            Ok(None) => bail!(
                "{what}: the subscriber ended after {} of {n} distinct messages",
                distinct.len()
            ),
            Ok(Some(Err(e))) => bail!("{what}: error item: {e}"),
            Ok(Some(Ok(d))) => d,
        };
        let i = index_of(tag, &d)?;
        copies.push((i, d.dedup_id(), d.attempt()));
        distinct.insert(i);
        let shown = describe(&d);
        d.ack()
            .await
            .with_context(|| format!("{what}: ack of {shown}"))?;
    }
    Ok(copies)
}

/// Receives whatever else arrives until `period` passes quietly, acking it.
async fn drain_acking(
    sub: &mut Sub,
    tag: &str,
    period: Duration,
    what: &str,
) -> anyhow::Result<Vec<Copy>> {
    let mut copies = Vec::new();
    loop {
        match timeout(period, sub.recv()).await {
            Err(_) | Ok(None) => return Ok(copies),
            Ok(Some(Err(e))) => bail!("{what}: error item: {e}"),
            Ok(Some(Ok(d))) => {
                copies.push((index_of(tag, &d)?, d.dedup_id(), d.attempt()));
                d.ack().await.with_context(|| format!("{what}: ack"))?;
            }
        }
    }
}

/// Checks copies against the delivery guarantee: a message seen more than
/// once is only allowed when `at_least_once`, and then with one dedup id.
fn check_duplicates(ctx: &Ctx, copies: &[Copy], what: &str) -> CaseResult {
    let pairs: Vec<(usize, DedupId)> = copies.iter().map(|&(i, d, _)| (i, d)).collect();
    let counts = same_dedup_ids(&pairs, what)?;
    let mut repeated: Vec<usize> = counts
        .into_iter()
        .filter(|&(_, c)| c > 1)
        .map(|(i, _)| i)
        .collect();
    repeated.sort_unstable();
    ensure!(
        repeated.is_empty() || ctx.capabilities().at_least_once,
        "{what}: {} messages were delivered more than once (first: {}) although capabilities.at_least_once = false",
        repeated.len(),
        first(&repeated)
    );
    Ok(())
}

/// 1,000 messages over 3 members: each delivered and acked exactly once in
/// total, and no member starves.
pub async fn group_exactly_once(ctx: &Ctx) -> CaseResult {
    const N: usize = 1000;
    const MEMBERS: usize = 3;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("jobs")?;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut members = JoinSet::new();
    let mut transports = Vec::new();
    for m in 0..MEMBERS {
        let t = ctx.connect().await?;
        let name = format!("member m{m}");
        let mut sub = subscribe(
            &t,
            Subscription::new(topic.clone())
                .group_member("workers", format!("m{m}"))
                .buffer(32),
            &name,
        )
        .await?;
        transports.push(t);
        let acked = acked.clone();
        let tuning = tuning.clone();
        members.spawn(async move {
            let mut got = Vec::new();
            let mut last_total = 0;
            let mut last_change = Instant::now();
            loop {
                match timeout(tuning.quiet_period, sub.recv()).await {
                    Ok(Some(Ok(d))) => {
                        got.push(index_of("j", &d)?);
                        d.ack().await.with_context(|| format!("{name}: ack"))?;
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Some(Err(e))) => bail!("{name}: error item: {e}"),
                    Ok(None) => bail!("{name}: the subscriber ended"),
                    Err(_) => {
                        let total = acked.load(Ordering::SeqCst);
                        if total >= N {
                            break;
                        }
                        if total != last_total {
                            last_total = total;
                            last_change = Instant::now();
                        } else if last_change.elapsed() > tuning.recv_timeout {
                            bail!(
                                "{name}: stalled: {total} of {N} acked by the group in total, then nothing for {:?}",
                                tuning.recv_timeout
                            );
                        }
                    }
                }
            }
            Ok((name, got))
        });
    }
    let publisher = ctx.connect().await?;
    publish_range(&publisher, &topic, "j", 0..N).await?;

    let mut all = Vec::new();
    let mut shares = Vec::new();
    while let Some(joined) = members.join_next().await {
        let (name, got) = joined.context("a member task panicked")??;
        shares.push((name, got.len()));
        all.extend(got);
    }
    shares.sort();
    exactly_once(&all, N, "the group (all members together)")?;
    if let Some((name, _)) = shares.iter().find(|(_, c)| *c == 0) {
        bail!("{name} received nothing: the group starved it (distribution: {shares:?})");
    }
    Ok(())
}

/// Two groups on one topic each get all 1,000.
pub async fn groups_independent(ctx: &Ctx) -> CaseResult {
    const N: usize = 1000;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("events")?;
    let t = ctx.connect().await?;
    let mut set = JoinSet::new();
    for g in ["billing", "audit"] {
        let what = format!("group {g}");
        let mut sub = subscribe(
            &t,
            Subscription::new(topic.clone()).group_member(g, "only"),
            &what,
        )
        .await?;
        let tuning = tuning.clone();
        set.spawn(async move {
            let mut copies = collect_acking(&mut sub, "e", N, tuning.recv_timeout, &what).await?;
            copies.extend(drain_acking(&mut sub, "e", tuning.quiet_period, &what).await?);
            Ok::<_, anyhow::Error>((what, copies))
        });
    }
    publish_range(&t, &topic, "e", 0..N).await?;
    while let Some(joined) = set.join_next().await {
        let (what, copies) = joined.context("a group task panicked")??;
        let idx: Vec<usize> = copies.iter().map(|c| c.0).collect();
        exactly_once(&idx, N, &what)?;
    }
    Ok(())
}

/// Without consumer groups, group mode is refused.
pub async fn group_unsupported(ctx: &Ctx) -> CaseResult {
    let t = ctx.connect().await?;
    let topic = ctx.topic("nogroups")?;
    match t
        .subscribe(Subscription::new(topic).group_member("g", "c"))
        .await
    {
        Ok(_) => bail!(
            "subscribe in group mode succeeded although capabilities.consumer_groups = false: it must fail with Unsupported or InvalidConfig, not silently fan out"
        ),
        Err(Error::Unsupported { .. } | Error::InvalidConfig(_)) => Ok(()),
        Err(e) => bail!(
            "subscribe in group mode: expected Err(Unsupported) or Err(InvalidConfig), got Err({e:?})"
        ),
    }
}

/// `in_progress()` keeps a delivery from being handed to another member.
pub async fn long_work_in_progress(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning().clone();
    let ack_timeout = tuning.ack_timeout;
    let topic = ctx.topic("long")?;
    let ta = ctx.connect().await?;
    let tb = ctx.connect().await?;
    let group = |member: &str| {
        Subscription::new(topic.clone())
            .group_member("slow", member)
            .ack_timeout(ack_timeout)
    };
    let mut a = subscribe(&ta, group("a"), "member a").await?;
    ta.publish(Message::new(topic.clone(), "long-job"))
        .await
        .context("publish")?;
    let d = next(&mut a, tuning.recv_timeout, "member a").await?;
    let mut b = subscribe(&tb, group("b"), "member b").await?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => return Ok::<_, anyhow::Error>(seen),
                item = b.recv() => match item {
                    Some(Ok(d)) => seen.push(describe(&d)),
                    Some(Err(e)) => seen.push(format!("error item: {e}")),
                    None => bail!("member b: the subscriber ended"),
                },
            }
        }
    });

    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < ack_timeout * 3 {
        tokio::time::sleep(ack_timeout / 3).await; // simulated work
        d.in_progress()
            .await
            .with_context(|| format!("in_progress() call {} failed", calls + 1))?;
        calls += 1;
    }
    d.ack().await.context("ack after the long work")?;
    quiet(
        &mut a,
        ack_timeout + tuning.quiet_period,
        "member a after its ack",
    )
    .await?;
    let _ = stop_tx.send(());
    let seen = join(watcher, "member b").await?;
    ensure!(
        seen.is_empty(),
        "member b received {} while member a kept the message alive with {calls} in_progress() calls over {:?} (ack timeout {ack_timeout:?}) and then acked it: {}",
        seen.len(),
        ack_timeout * 3,
        seen.join("; ")
    );
    Ok(())
}

/// A member that crashes holding unsettled deliveries: another member of
/// the group gets them after the ack timeout; nothing is lost.
pub async fn crash_redelivers(ctx: &Ctx) -> CaseResult {
    const N: usize = 20;
    const HELD: usize = 5;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("crash")?;
    let group = |member: &str| {
        Subscription::new(topic.clone())
            .group_member("crashy", member)
            .ack_timeout(tuning.ack_timeout)
    };
    let publisher = ctx.connect().await?;
    let ta = ctx.connect().await?;
    let mut a = subscribe(&ta, group("a"), "member a").await?;
    publish_range(&publisher, &topic, "c", 0..N).await?;
    let held = collect(&mut a, HELD, tuning.recv_timeout, "member a").await?;
    let mut held_idx = Vec::new();
    for d in held {
        held_idx.push(index_of("c", &d)?);
        // A crashed process settles nothing: no ack, no nack, no abandon.
        std::mem::forget(d);
    }
    drop(a);
    drop(ta);

    let tb = ctx.connect().await?;
    let mut b = subscribe(&tb, group("b"), "member b").await?;
    let idle = tuning.ack_timeout + tuning.recv_timeout;
    let mut copies = collect_acking(&mut b, "c", N, idle, "member b").await?;
    copies.extend(
        drain_acking(
            &mut b,
            "c",
            tuning.ack_timeout + tuning.quiet_period,
            "member b",
        )
        .await?,
    );
    check_duplicates(ctx, &copies, "member b")?;
    for i in &held_idx {
        let attempts: Vec<u32> = copies.iter().filter(|c| c.0 == *i).map(|c| c.2).collect();
        ensure!(
            attempts.iter().all(|&a| a >= 2),
            "message {i} was delivered to crashed member a, so member b must get it with attempt >= 2, got attempts {attempts:?}"
        );
    }
    Ok(())
}

/// Read 200 of 500 (ack 150), close, continue on a new transport: nothing
/// lost, acked ones not redelivered.
pub async fn continue_after_close(ctx: &Ctx) -> CaseResult {
    const N: usize = 500;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("resume")?;
    let member = || {
        Subscription::new(topic.clone())
            .group_member("resumers", "c1")
            .ack_timeout(tuning.ack_timeout)
    };
    let t1 = ctx.connect().await?;
    let mut s1 = subscribe(&t1, member(), "first consumer c1").await?;
    publish_range(&t1, &topic, "r", 0..N).await?;
    let mut first_read = collect(&mut s1, 200, tuning.recv_timeout, "first consumer c1").await?;
    let mut copies: Vec<Copy> = Vec::new();
    for d in &first_read {
        copies.push((index_of("r", d)?, d.dedup_id(), d.attempt()));
    }
    let unsettled = first_read.split_off(150);
    let mut acked = BTreeSet::new();
    for d in first_read {
        acked.insert(index_of("r", &d)?);
        d.ack().await.context("first consumer c1: ack")?;
    }
    t1.close().await.context("closing the first transport")?;
    drop(unsettled);
    drop(s1);
    drop(t1);

    let t2 = ctx.connect().await?;
    let mut s2 = subscribe(&t2, member(), "second consumer c1").await?;
    let mut seen: BTreeSet<usize> = copies.iter().map(|c| c.0).collect();
    let mut later: Vec<Copy> = Vec::new();
    let idle = tuning.ack_timeout + tuning.recv_timeout;
    while seen.len() < N {
        let d = match timeout(idle, s2.recv()).await {
            Err(_) => {
                let missing: Vec<usize> = (0..N).filter(|i| !seen.contains(i)).collect();
                bail!(
                    "second consumer c1: {} of {N} messages seen in total, then nothing for {idle:?}; missing {} (first: {})",
                    seen.len(),
                    missing.len(),
                    first(&missing)
                );
            }
            Ok(None) => bail!("second consumer c1: the subscriber ended"),
            Ok(Some(Err(e))) => bail!("second consumer c1: error item: {e}"),
            Ok(Some(Ok(d))) => d,
        };
        let i = index_of("r", &d)?;
        later.push((i, d.dedup_id(), d.attempt()));
        seen.insert(i);
        d.ack().await.context("second consumer c1: ack")?;
    }
    later.extend(
        drain_acking(
            &mut s2,
            "r",
            tuning.ack_timeout + tuning.quiet_period,
            "second consumer c1",
        )
        .await?,
    );
    let again: Vec<usize> = later
        .iter()
        .map(|c| c.0)
        .filter(|i| acked.contains(i))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ensure!(
        again.is_empty(),
        "{} messages acked before close were delivered again after it (first: {})",
        again.len(),
        first(&again)
    );
    copies.extend(later);
    check_duplicates(ctx, &copies, "both consumers together")
}

/// Unsettled and unread messages survive a backend restart; acked ones do not come back.
pub async fn restart_keeps_unacked(ctx: &Ctx) -> CaseResult {
    const N: usize = 100;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("durable")?;
    let member = || {
        Subscription::new(topic.clone())
            .group_member("durable", "c1")
            .ack_timeout(tuning.ack_timeout)
    };
    let t1 = ctx.connect().await?;
    let mut s1 = subscribe(&t1, member(), "consumer before the restart").await?;
    publish_range(&t1, &topic, "d", 0..N).await?;
    let mut read = collect(
        &mut s1,
        40,
        tuning.recv_timeout,
        "consumer before the restart",
    )
    .await?;
    let unsettled = read.split_off(30);
    let mut acked = BTreeSet::new();
    for d in read {
        acked.insert(index_of("d", &d)?);
        d.ack().await.context("ack before the restart")?;
    }
    t1.close()
        .await
        .context("closing the transport before the restart")?;
    drop(unsettled);
    drop(s1);
    drop(t1);

    ctx.namespace()
        .restart_backend()
        .await
        .context("restarting the backend")?;

    let t2 = ctx.connect().await?;
    let mut s2 = subscribe(&t2, member(), "consumer after the restart").await?;
    let want = N - acked.len();
    let idle = tuning.ack_timeout + tuning.recv_timeout;
    let mut copies: Vec<Copy> = Vec::new();
    let mut seen = BTreeSet::new();
    while seen.len() < want {
        let d = match timeout(idle, s2.recv()).await {
            Err(_) => bail!(
                "consumer after the restart: {} of the {want} unacked messages received, then nothing for {idle:?}",
                seen.len()
            ),
            Ok(None) => bail!("consumer after the restart: the subscriber ended"),
            Ok(Some(Err(e))) => bail!("consumer after the restart: error item: {e}"),
            Ok(Some(Ok(d))) => d,
        };
        let i = index_of("d", &d)?;
        ensure!(
            !acked.contains(&i),
            "message {i} was acked before the restart but delivered again after it"
        );
        copies.push((i, d.dedup_id(), d.attempt()));
        seen.insert(i);
        d.ack().await.context("ack after the restart")?;
    }
    copies.extend(
        drain_acking(
            &mut s2,
            "d",
            tuning.ack_timeout + tuning.quiet_period,
            "consumer after the restart",
        )
        .await?,
    );
    let again: Vec<usize> = copies
        .iter()
        .map(|c| c.0)
        .filter(|i| acked.contains(i))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ensure!(
        again.is_empty(),
        "{} acked messages came back after the restart (first: {})",
        again.len(),
        first(&again)
    );
    let expected: BTreeSet<usize> = (0..N).filter(|i| !acked.contains(i)).collect();
    ensure!(
        seen == expected,
        "after the restart expected exactly the {} unacked messages, got {} different ones",
        expected.len(),
        seen.len()
    );
    check_duplicates(ctx, &copies, "consumer after the restart")
}

/// Members that fetch but hand nothing to the application use up no
/// attempts: 6 messages; 3 members in turn subscribe, take nothing for
/// twice the quiet period and close; a 4th member then gets all 6 with
/// `attempt() == 1`. A delivery the application did receive counts: the
/// first one, nacked, comes back with `attempt() == 2`.
pub async fn attempts_count_received_deliveries(ctx: &Ctx) -> CaseResult {
    const N: usize = 6;
    let tuning = ctx.tuning().clone();
    let topic = ctx.topic("attempts")?;
    let member = |name: &str| {
        Subscription::new(topic.clone())
            .group_member("counted", name)
            .ack_timeout(tuning.ack_timeout)
            .buffer(8)
    };
    let t = ctx.connect().await?;
    // The group exists before the messages are published.
    let first = subscribe(&t, member("idle-0"), "idle member 0").await?;
    publish_range(&t, &topic, "a", 0..N).await?;
    let mut idle = Some(first);
    for i in 0..3 {
        let what = format!("idle member {i}");
        let sub = match idle.take() {
            Some(s) => s,
            None => subscribe(&t, member(&format!("idle-{i}")), &what).await?,
        };
        // The application takes nothing meanwhile; the member may fetch.
        tokio::time::sleep(tuning.quiet_period * 2).await;
        let received = sub.stats().received;
        ensure!(
            received == 0,
            "{what}: the application called no recv, yet {received} deliveries are counted as received"
        );
        sub.close()
            .await
            .with_context(|| format!("closing {what}"))?;
    }
    let mut taker = subscribe(&t, member("taker"), "taking member").await?;
    let mut seen = BTreeSet::new();
    let mut nacked = None;
    while seen.len() < N {
        let d = next(
            &mut taker,
            tuning.ack_timeout + tuning.recv_timeout,
            &format!("taking member, after {} of {N} messages", seen.len()),
        )
        .await?;
        let i = index_of("a", &d)?;
        if nacked == Some(i) {
            ensure!(
                d.attempt() == 2,
                "message {i} was received once and nacked: its next delivery must have attempt 2, got {}",
                d.attempt()
            );
            d.ack().await.context("taking member: ack")?;
            nacked = None;
            seen.insert(i);
            continue;
        }
        ensure!(
            d.attempt() == 1,
            "message {i} never reached the application before (the idle members only held it), yet it arrives with attempt {} ({})",
            d.attempt(),
            describe(&d)
        );
        ensure!(
            !seen.contains(&i),
            "message {i} arrived again after its ack"
        );
        if seen.is_empty() && nacked.is_none() {
            nacked = Some(i);
            d.nack(Retry::Now)
                .await
                .context("taking member: nack of the first delivery")?;
            continue;
        }
        seen.insert(i);
        d.ack().await.context("taking member: ack")?;
    }
    quiet(
        &mut taker,
        tuning.ack_timeout + tuning.quiet_period,
        "taking member after all 6 were acked",
    )
    .await?;
    let s = taker.stats();
    ensure!(
        s.received == N as u64 + 1 && s.redelivered == 1 && s.dead_lettered == 0,
        "taking member: expected {} received, 1 redelivered, 0 dead-lettered; got {} received, {} redelivered, {} dead-lettered",
        N + 1,
        s.received,
        s.redelivered,
        s.dead_lettered
    );
    taker.close().await.context("closing the taking member")?;
    Ok(())
}
