//! Least-privilege ACL users on the backplane.
//!
//! Redis checks a `PSUBSCRIBE` pattern *literally* against the user's
//! channel rules: `&ns:*` allows `SUBSCRIBE ns:orders.created` (glob match)
//! but not `PSUBSCRIBE ns:orders.*` (not the same text). A pattern needs a
//! rule that is exactly that pattern (`&ns:orders.*`, which also allows
//! the channels it matches) or `&*`.
//!
//! Reproduction of the defect these guard (issue 14): with the line
//! `doctor` suggested (`&switchyard:*`), a pattern subscription got NOPERM,
//! and `health()` kept answering `Ok` (or blamed reachability) instead of
//! naming the denied command; the refusal error did not say which rule to
//! grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use switchyard_core::{Health, Message, Subscription, Topic, Transport};
use switchyard_testkit::RedisServer;

use support::{pubsub_url, replica, wait_health, wait_until};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "s3cret-acl-pw";

/// The backplane's line of `docs/security.md` for namespace `ns`, with
/// `extra` channel rules and without the command `missing`.
fn create_user(server: &RedisServer, user: &str, ns: &str, extra: &[&str], missing: Option<&str>) {
    let pw = format!(">{PASSWORD}");
    let channels = format!("&{ns}:*");
    let mut args = vec![
        "ACL",
        "SETUSER",
        user,
        "reset",
        "on",
        &pw,
        "resetkeys",
        "resetchannels",
        &channels,
    ];
    args.extend_from_slice(extra);
    args.extend(
        [
            "-@all",
            "+ping",
            "+role",
            "+publish",
            "+subscribe",
            "+unsubscribe",
            "+psubscribe",
            "+punsubscribe",
            "+pubsub|numsub",
        ]
        .into_iter()
        .filter(|c| Some(&c[1..]) != missing),
    );
    assert!(server.cmd(&args).unwrap().is_ok());
    // Redis >= 7.2 and Valkey: redis-rs announces itself with CLIENT
    // SETINFO (docs/security.md); Redis 7.0 refuses the rule: fine.
    let _ = server.cmd(&["ACL", "SETUSER", user, "+client|setinfo"]);
}

/// `ACL LOG` as object (command or channel) → times denied.
fn denials(server: &RedisServer) -> HashMap<String, i64> {
    let log = server.cmd(&["ACL", "LOG"]).unwrap();
    let mut out = HashMap::new();
    for entry in log.as_array().unwrap_or_default() {
        let fields = entry.as_array().unwrap_or_default();
        let get = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_str() == Some(name))
                .map(|kv| kv[1].clone())
        };
        let object = get("object")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *out.entry(object).or_insert(0) += get("count").and_then(|v| v.as_int()).unwrap_or(0);
    }
    out
}

fn reason(h: &Health) -> String {
    match h {
        Health::Ok => "ok".into(),
        Health::Degraded(r) | Health::Down(r) => r.clone(),
        other => format!("{other:?}"),
    }
}

/// A pattern with its literal rule works; a pattern without one fails
/// that `subscribe` only (once, naming PSUBSCRIBE and the rule to add),
/// the exact-topic and allowed-pattern subscribers on the same transport
/// keep receiving, nothing retries it, and `health()` stays `Ok` (the
/// caller has the error; every other subscription works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pattern_fails_that_subscribe_only() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    let ns = "acl";
    create_user(&server, "svc", ns, &["&acl:orders.*"], None);
    let url = pubsub_url(&format!("redis://svc:{PASSWORD}@{}", server.addr()), ns, "");
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let alerts = Topic::new("alerts")?;
    let mut exact = b.subscribe(Subscription::new(alerts.clone())).await?;
    let mut orders = b.subscribe(Subscription::to("orders.*")?).await?;
    let e = b
        .subscribe(Subscription::to("payments.*")?)
        .await
        .err()
        .expect("PSUBSCRIBE acl:payments.* is not permitted");
    ensure!(!e.is_transient(), "{e}");
    let text = e.to_string();
    ensure!(text.contains("permission denied: redis at"), "{text}");
    ensure!(text.contains("PSUBSCRIBE acl:payments.*"), "{text}");
    ensure!(
        text.contains("ACL SETUSER <user> &acl:payments.*"),
        "{text}"
    );
    // The transport itself is fine: the refusal was that call's alone.
    ensure!(b.health().await == Health::Ok);

    a.publish(Message::new(alerts, "a1")).await?;
    a.publish(Message::new(Topic::new("orders.created")?, "o1"))
        .await?;
    let got = tokio::time::timeout(WAIT, exact.recv()).await?.unwrap()?;
    ensure!(&got.payload()[..] == b"a1");
    let got = tokio::time::timeout(WAIT, orders.recv()).await?.unwrap()?;
    ensure!(&got.payload()[..] == b"o1");
    ensure!(got.topic().as_str() == "orders.created");
    // One refusal, no re-subscribing loop: Redis saw the pattern once.
    let seen = denials(&server);
    ensure!(seen.get("acl:payments.*") == Some(&1), "{seen:?}");
    ensure!(seen.len() == 1, "{seen:?}");
    let s = b.pubsub_stats();
    ensure!(s.reconnects == 0, "reconnects {}", s.reconnects);
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// Without the `psubscribe` command, a pattern subscription fails naming
/// PSUBSCRIBE, exact topics keep working, and `health()` says
/// `permission denied` (every pattern subscription would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_psubscribe_health_says_permission_denied() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    create_user(&server, "nopat", "acl", &["&*"], Some("psubscribe"));
    let url = pubsub_url(
        &format!("redis://nopat:{PASSWORD}@{}", server.addr()),
        "acl",
        "",
    );
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("alerts")?;
    let mut exact = b.subscribe(Subscription::new(topic.clone())).await?;
    let e = b
        .subscribe(Subscription::to("orders.*")?)
        .await
        .err()
        .expect("PSUBSCRIBE is not permitted");
    ensure!(!e.is_transient(), "{e}");
    ensure!(
        e.to_string().contains("refused PSUBSCRIBE acl:orders.*"),
        "{e}"
    );
    let r = reason(&b.health().await);
    ensure!(
        r.starts_with("permission denied: redis refused PSUBSCRIBE"),
        "{r}"
    );
    ensure!(r.contains("+psubscribe"), "{r}");
    a.publish(Message::new(topic, "a1")).await?;
    let got = tokio::time::timeout(WAIT, exact.recv()).await?.unwrap()?;
    ensure!(&got.payload()[..] == b"a1");
    ensure!(
        denials(&server).get("psubscribe") == Some(&1),
        "{:?}",
        denials(&server)
    );
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// Without `publish`, messages still reach local subscribers, each refused
/// PUBLISH is counted once (never retried) and `health()` names PUBLISH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_permission_is_reported_by_health() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    create_user(&server, "nopub", "acl", &[], Some("publish"));
    let url = pubsub_url(
        &format!("redis://nopub:{PASSWORD}@{}", server.addr()),
        "acl",
        "",
    );
    let a = replica(&url).await?;
    ensure!(a.health().await == Health::Ok);
    let topic = Topic::new("orders")?;
    a.publish(Message::new(topic.clone(), "x")).await?;
    wait_health(&a, WAIT, "permission denied", |h| {
        reason(h).starts_with("permission denied: redis refused PUBLISH")
    })
    .await?;
    wait_until(WAIT, "the refusal counted", || async {
        a.pubsub_stats().outbox_refused == 1
    })
    .await?;
    ensure!(
        denials(&server).get("publish") == Some(&1),
        "{:?}",
        denials(&server)
    );
    let r = reason(&a.health().await);
    ensure!(r.contains("+publish"), "{r}");
    a.close().await?;
    Ok(())
}
