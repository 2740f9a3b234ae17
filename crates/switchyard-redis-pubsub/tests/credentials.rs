//! The backplane's own connections (publishing and subscribing) against
//! Redis servers that ask for credentials, on a database other than 0, and
//! with an ACL that refuses `PUBLISH`.

mod support;

use std::time::Duration;

use anyhow::ensure;
use switchyard_core::{Subscription, Topic, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::{RedisOptions, RedisServer};

use support::{Seen, namespace, publish_range, pubsub_url, read_quiet, read_until, replica};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

/// Two replicas on `url`: 50 messages from one reach the other, all of them.
async fn carries_messages(url: &str) -> anyhow::Result<()> {
    let (a, b) = (replica(url).await?, replica(url).await?);
    let topic = Topic::new("auth.check")?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    const N: u64 = 50;
    publish_range(&a, &topic, "a", 0..N).await?;
    let mut seen = Seen::new(&[("a", &*a), ("b", &*b)]);
    read_until(&mut sub, &mut seen, WAIT, "subscriber on b", |s| {
        s.count("a") as u64 >= N
    })
    .await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    let (received, lost) = seen.check_accounting("a", N)?;
    ensure!(
        received == N && lost == 0,
        "{received} received, {lost} lost"
    );
    let s = a.pubsub_stats();
    ensure!(s.published == N, "a published {} to redis", s.published);
    ensure!(s.publish_errors == 0, "publish errors {}", s.publish_errors);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_database_are_used_by_every_connection() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start_with(RedisOptions::default().password("s3cret pass"))?;
    let base = format!("{}/3", server.url());
    carries_messages(&pubsub_url(&base, &namespace(), "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_is_used_by_every_connection() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start_with(RedisOptions::default().acl_user("svc", "pw-1"))?;
    carries_messages(&pubsub_url(&server.url(), &namespace(), "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_start_up_without_showing_it() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start_with(RedisOptions::default().password("right-one"))?;
    let url = pubsub_url(
        &format!("redis://:wrong-one@{}", server.addr()),
        &namespace(),
        "",
    );
    let Err(e) = RedisPubSubTransport::connect(PubSubConfig::from_url(&url)?).await else {
        anyhow::bail!("connecting with a wrong password succeeded");
    };
    let text = e.to_string();
    ensure!(
        !text.contains("wrong-one"),
        "the error shows the password: {text}"
    );
    ensure!(
        text.contains(&server.addr().to_string()),
        "the error does not name the address: {text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_are_counted_and_not_retried() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    server.cmd(&[
        "ACL", "SETUSER", "nopub", "on", ">pw", "~*", "&*", "+@all", "-publish",
    ])?;
    let url = pubsub_url(
        &format!("redis://nopub:pw@{}", server.addr()),
        &namespace(),
        "",
    );
    let a = replica(&url).await?;
    let topic = Topic::new("auth.refused")?;
    // Local subscribers still get everything.
    let mut local = a.subscribe(Subscription::new(topic.clone())).await?;
    const N: u64 = 20;
    publish_range(&a, &topic, "a", 0..N).await?;
    let mut seen = Seen::new(&[("a", &*a)]);
    read_until(&mut local, &mut seen, WAIT, "local subscriber", |s| {
        s.count("a") as u64 >= N
    })
    .await?;
    support::wait_until(WAIT, "every PUBLISH answered", || async {
        a.pubsub_stats().outbox_refused >= N
    })
    .await?;
    // Nothing more happens: refusals are not retried.
    tokio::time::sleep(QUIET).await;
    let s = a.pubsub_stats();
    ensure!(s.outbox_refused == N, "refused {}", s.outbox_refused);
    ensure!(s.published == 0, "published {}", s.published);
    ensure!(s.publish_errors == 0, "publish errors {}", s.publish_errors);
    ensure!(seen.count("a") as u64 == N, "local got {}", seen.count("a"));
    Ok(())
}
