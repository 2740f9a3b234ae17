//! `Transport::topics` on Redis Streams beyond the conformance case: the
//! age of a group's oldest pending entry (`GroupInfo::oldest_pending_age`,
//! what `switchyard topics` prints), and a denied `XINFO` or `XPENDING`
//! named as a permission to grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, TestResult, eventually, member, next, publish_n, topic};
use switchyard_core::{Start, TopicFilter};

/// One delivery held unsettled: the group reports 1 to 3 pending (with
/// read-ahead) and the age of the oldest, which is never more than the
/// time since the first publish; acked, the age is gone with the pending
/// entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_pending_age_follows_the_held_delivery() -> TestResult {
    let env = Env::start("catalog-age");
    let t = topic("orders");
    let bus = env.connect("").await;
    let published = Instant::now();
    publish_n(&bus, &t, "o", 3).await;
    let mut sub = bus
        .subscribe(
            member(&t, "billing", "c1", Duration::from_secs(30))
                .start(Start::Earliest)
                .buffer(1),
        )
        .await?;
    let held = next(&mut sub).await;
    let filter = TopicFilter::Exact(t.clone());
    let infos = bus.topics(&filter).await?;
    assert_eq!(infos.len(), 1, "{infos:?}");
    let group = &infos[0].groups[0];
    assert_eq!(group.name, "billing");
    assert!((1..=3).contains(&group.pending), "{group:?}");
    let age = group
        .oldest_pending_age
        .expect("an age while entries are pending");
    // Redis stamps the id with its clock, this process reads its own: the
    // same machine's clock here, so the age fits in the time since publish.
    assert!(
        age <= published.elapsed() + Duration::from_millis(1),
        "age {age:?} exceeds the {:?} since the publish",
        published.elapsed()
    );
    held.ack().await?;
    // The rest (read ahead) is taken and acked too.
    for _ in 0..2 {
        next(&mut sub).await.ack().await?;
    }
    eventually("no pending entry left, and no age", || async {
        let infos = bus.topics(&filter).await.unwrap();
        let g = &infos[0].groups[0];
        g.pending == 0 && g.oldest_pending_age.is_none()
    })
    .await;
    sub.close().await?;
    Ok(())
}

/// A user without `+xpending` (everything else of the listing granted)
/// gets `permission denied` naming `+xpending`, not a bare NOPERM, once a
/// group has pending entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_xpending_names_the_permission() -> TestResult {
    let env = Env::start("catalog-noperm");
    let t = topic("orders");
    let bus = env.connect("").await;
    publish_n(&bus, &t, "o", 1).await;
    let mut sub = bus
        .subscribe(member(&t, "billing", "c1", Duration::from_secs(30)).start(Start::Earliest))
        .await?;
    let _held = next(&mut sub).await;
    env.cmd(&[
        "ACL",
        "SETUSER",
        "lister",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-xpending",
    ]);
    // Same server and namespace, as the restricted user.
    let mut config = env.config("");
    config.redis = config
        .redis
        .with_credentials(Some("lister".into()), Some("pw".into()));
    let lister = switchyard_redis_streams::RedisStreamsTransport::connect(config).await?;
    let err = switchyard_core::Transport::topics(&lister, &TopicFilter::Exact(t.clone()))
        .await
        .expect_err("XPENDING is denied");
    let text = err.to_string();
    assert!(
        text.contains("permission denied") && text.contains("+xpending"),
        "{text}"
    );
    sub.close().await?;
    Ok(())
}
