//! Sentinel failover of the backplane: a primary, a replica and three
//! sentinels (testkit `SentinelGroup`), two transports on a
//! `redis+pubsub+sentinel://` URL — one publishing a paced sequence, one
//! subscribed — while the primary changes by `SENTINEL FAILOVER`, and
//! separately by SIGKILL.
//!
//! Reproduction of the defect: there was no Sentinel URL form; with the
//! primary's plain URL, after a failover the backplane reconnected to the
//! old primary (now a replica), where its PUBLISHes reach only that
//! replica's subscribers, and `health()` said `Ok`.
//!
//! The backplane delivers at most once: messages published while the
//! primary changes may be lost (reported as gaps). What must hold: after
//! the failover both sides end up on the new primary by themselves, and
//! every message published from then on is delivered.

#![allow(clippy::print_stderr)] // the figures are the output

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{Health, Message, Subscription, Topic, Transport};
use switchyard_testkit::{SentinelGroup, SentinelOptions};

use support::{TEST_PARAMS, namespace, replica};

/// Bound on the whole run.
const RUN_LIMIT: Duration = Duration::from_secs(90);
/// Messages published in all (paced, one every PACE).
const TOTAL: u64 = 4_000;
const PACE: Duration = Duration::from_millis(2);
/// The fault happens after this many publishes.
const FAULT_AT: u64 = 1_000;
/// The last messages, published well after the failover, must all arrive.
const TAIL: u64 = 500;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Failover,
    KillPrimary,
}

fn url(group: &SentinelGroup, ns: &str) -> String {
    let sentinels: Vec<String> = group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "redis+pubsub+sentinel://{}/{}?namespace={ns}&{TEST_PARAMS}",
        sentinels.join(","),
        group.master_name()
    )
}

async fn run(fault: Fault) -> anyhow::Result<()> {
    support::init_tracing();
    let group = tokio::task::block_in_place(|| {
        SentinelGroup::start(SentinelOptions::default().down_after(Duration::from_secs(1)))
    })?;
    let url = url(&group, &namespace());
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;
    let publisher = replica(&url).await?;
    let subscriber = replica(&url).await?;
    anyhow::ensure!(publisher.health().await == Health::Ok);
    let topic = Topic::new("ticks")?;
    let mut sub = subscriber
        .subscribe(Subscription::new(topic.clone()))
        .await?;
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let marks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let received = received.clone();
        let marks = marks.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
                    Ok(Some(Ok(d))) => {
                        let p: [u8; 8] = d.message().payload[..].try_into().unwrap_or_default();
                        let i = u64::from_le_bytes(p);
                        received.lock().insert(i);
                        marks.lock().push(started.elapsed());
                        if i == TOTAL - 1 {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => {}
                }
            }
        })
    };
    let mut group = Some(group);
    let mut faulting = None;
    let mut fault_at = None;
    let mut tail_at = None;
    let mut old_primary = None;
    let mut published_ok = 0u64;
    for i in 0..TOTAL {
        anyhow::ensure!(Instant::now() < deadline, "publishing did not finish");
        if i == FAULT_AT {
            // The fault runs beside the publishing, which goes on.
            fault_at = Some(started.elapsed());
            let mut g = group.take().ok_or_else(|| anyhow::anyhow!("no group"))?;
            let old = g.current_primary_addr()?;
            old_primary = Some(old);
            faulting = Some(tokio::task::spawn_blocking(
                move || -> anyhow::Result<SentinelGroup> {
                    match fault {
                        Fault::Failover => g.failover()?,
                        Fault::KillPrimary => {
                            g.kill_primary()?;
                        }
                    }
                    g.wait_for_new_primary(old, Duration::from_secs(60))?;
                    Ok(g)
                },
            ));
        }
        if i == TOTAL - TAIL {
            tail_at = Some(started.elapsed());
            if let Some(f) = faulting.take() {
                group = Some(f.await??);
            }
            let group = group.as_ref().ok_or_else(|| anyhow::anyhow!("no group"))?;
            // Before the tail: after SENTINEL FAILOVER the old primary
            // keeps serving until the sentinels demote it (and close its
            // clients, which then reconnect to the new primary): wait for
            // that, then for both transports to report healthy.
            if let (Fault::Failover, Some(old)) = (fault, old_primary) {
                let node = group
                    .nodes()
                    .iter()
                    .find(|n| n.addr() == old)
                    .ok_or_else(|| anyhow::anyhow!("no node at {old}"))?;
                loop {
                    let role = node.cmd(&["ROLE"])?;
                    let first = role
                        .as_array()
                        .and_then(|a| a.first().and_then(|r| r.as_str().map(str::to_owned)));
                    if first.as_deref() == Some("slave") {
                        break;
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "the old primary was never demoted"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            loop {
                let p = publisher.health().await;
                let s = subscriber.health().await;
                if p == Health::Ok && s == Health::Ok {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "not healthy after the failover: {p:?} / {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if publisher
            .publish(Message::new(topic.clone(), i.to_le_bytes().to_vec()))
            .await
            .is_ok()
        {
            published_ok += 1;
        }
        tokio::time::sleep(PACE).await;
    }
    reader.await?;
    let received = received.lock().clone();
    let tail_missing: Vec<u64> = (TOTAL - TAIL..TOTAL)
        .filter(|i| !received.contains(i))
        .collect();
    let fault_at = fault_at.unwrap_or_default();
    // The longest pause in deliveries between the fault and the tail
    // (before the tail the test itself waits, publishing nothing).
    let tail_at = tail_at.unwrap_or_default();
    let mut after: Vec<Duration> = marks
        .lock()
        .iter()
        .copied()
        .filter(|m| *m >= fault_at && *m <= tail_at)
        .collect();
    after.sort();
    let mut gap = Duration::ZERO;
    let mut previous = fault_at;
    for m in after {
        gap = gap.max(m - previous);
        previous = m;
    }
    eprintln!(
        "pubsub failover figures ({fault:?}): delivery resumed after {gap:?}, published {published_ok} of {TOTAL}, delivered {}, lost {}",
        received.len(),
        TOTAL - received.len() as u64
    );
    anyhow::ensure!(
        tail_missing.is_empty(),
        "{} of the last {TAIL} messages were not delivered: {:?}",
        tail_missing.len(),
        &tail_missing[..tail_missing.len().min(10)]
    );
    publisher.close().await?;
    subscriber.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_follows_sentinel_failover() -> anyhow::Result<()> {
    run(Fault::Failover).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_follows_a_killed_primary() -> anyhow::Result<()> {
    run(Fault::KillPrimary).await
}
