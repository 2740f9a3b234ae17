//! `Transport::close()` ends a group member the way `Subscriber::close()`
//! does: `recv()` ends at once and what the member fetched but never
//! handed out goes back to the group at once (issue "Hardening", item 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Env, TestResult, WAIT, eventually, member, next, nothing_within, publish_n, topic};
use switchyard_core::Start;

/// Reproduction (before the fix: `recv()` gave 0 deliveries then `None`,
/// sometimes only 5 s after `close()` returned, and all 20 stayed pending
/// under the member until the ack timeout): 20 messages, a member
/// subscribes, 300 ms later its transport is closed. `recv()` ends within
/// a second, nothing stays pending under the member, and a member on
/// another transport gets all 20 with attempt 1 long before the 60 s ack
/// timeout. Ten rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_close_hands_fetched_entries_back_at_once() -> TestResult {
    let env = Env::start("transport-close");
    let at = Duration::from_secs(60);
    let other = env.connect("").await;
    for round in 0..10 {
        let t = topic(&format!("jobs.{round}"));
        let bus = env.connect("").await;
        let mut sub = bus
            .subscribe(member(&t, "g", "leaver", at).start(Start::Earliest))
            .await?;
        publish_n(&bus, &t, "j", 20).await;
        eventually("the member fetched the 20", || async {
            env.pending_rows(&t, "g").len() == 20
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        bus.close().await?;
        let closed = Instant::now();
        let mut n = 0;
        while let Some(item) = tokio::time::timeout(WAIT, sub.recv()).await? {
            item.expect("no error item");
            n += 1;
        }
        let ended = closed.elapsed();
        assert_eq!(
            n, 0,
            "round {round}: what was buffered went back to the group"
        );
        assert!(
            ended < Duration::from_secs(1),
            "round {round}: recv ended {ended:?} after close returned"
        );
        // Given back at once: idle for the ack timeout, count back to 0.
        let rows = env.pending_rows(&t, "g");
        assert_eq!(rows.len(), 20, "round {round}");
        assert!(rows.iter().all(|r| r.2 == 0), "round {round}: {rows:?}");

        let mut taker = other
            .subscribe(member(&t, "g", "taker", at).start(Start::Earliest))
            .await?;
        let started = Instant::now();
        let mut seen = BTreeSet::new();
        while seen.len() < 20 {
            let d = next(&mut taker).await;
            assert_eq!(d.attempt(), 1, "round {round}: {d:?}");
            assert!(seen.insert(d.payload().clone()), "round {round}: twice");
            d.ack().await?;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "round {round}");
        nothing_within(&mut taker, Duration::from_millis(200)).await;
        eventually("nothing pending", || async { env.pending(&t, "g") == 0 }).await;
        taker.close().await?;
    }
    other.close().await?;
    Ok(())
}
