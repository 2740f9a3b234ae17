//! Chat backplane: two replicas of a chat server share rooms through the
//! Redis Pub/Sub backplane (or one in-process hub on `memory://`).
//!
//! - Two replicas, `replica-a` and `replica-b`, each with a transport of its
//!   own, as two processes behind a load balancer would have.
//! - [`MEMBERS`] are connected to one replica each and have joined some of
//!   the [`ROOMS`] (`rooms.lobby`, `rooms.rust`). Each member's connection
//!   is one subscription to its rooms on its replica.
//! - A message posted to a room on replica A reaches the room's members on
//!   replica B, and every member gets each message of its rooms exactly
//!   once, including its own. A replica hears its own messages come back
//!   from Redis and drops them (self-echo suppression by instance id); the
//!   summary shows how many it dropped.
//! - In the middle, Redis is restarted through a [`RestartHook`]. No
//!   subscription is lost: after the restart both replicas subscribe again
//!   by themselves and the next round of messages reaches everyone.
//!   Messages posted *while Redis is down* reach the members on the same
//!   replica only: the backplane is **at-most-once**, so they are lost for
//!   the other replica, which is told so with an `Error::Lost` gap signal.
//!
//! - Start-up is strict, as the notifier's was: on Redis the replicas
//!   connect with `connect_timeout=2s` (unless the URL sets one) and no
//!   start-up retry (the backplane's default), so a replica whose Redis is
//!   unreachable fails at once with an error naming the address instead of
//!   serving rooms that reach nobody.
//!
//! On `memory://` both replicas use one named in-process hub (`memory://`
//! becomes `memory://chat-{run id}`); there is no server, so the restart
//! step is skipped with that reason, as it is on Redis without a hook.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod report;

pub use report::{MemberReport, ReplicaReport, RestartReport, Summary};

use crate::{
    PHASE_TIMEOUT, close_all, has_param, lock, run_blocking, scheme, shared_url, wait_until,
    wait_until_async, with_param,
};

/// The replicas of the chat server.
pub const REPLICAS: [&str; 2] = ["replica-a", "replica-b"];
/// The rooms (topic `rooms.{room}`).
pub const ROOMS: [&str; 2] = ["lobby", "rust"];
/// The members: name, index of the replica they are connected to, rooms.
pub const MEMBERS: [(&str, usize, &[&str]); 4] = [
    ("alice", 0, &["lobby", "rust"]),
    ("bob", 0, &["lobby"]),
    ("carol", 1, &["lobby", "rust"]),
    ("dave", 1, &["rust"]),
];
/// Messages each member posts to each of its rooms in each round.
pub const POSTS_PER_ROOM: u32 = 3;
/// Messages alice (replica A) posts to the lobby while Redis is down.
pub const OUTAGE_POSTS: u32 = 2;
/// How long a message waits in a replica's outbox for Redis before it is
/// dropped, when the URL does not say (the adapter's default is 5 s; a
/// chat line that late is stale anyway, and the outage stays short).
pub const OUTBOX_TTL: &str = "1s";
/// The connect timeout set on a Redis URL without `connect_timeout=`.
pub const CONNECT_TIMEOUT: &str = "2s";

/// What the restart hook is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Stop the Redis server now (return once it is down).
    Stop,
    /// Start it again on the same address (return once it answers).
    Start,
}

/// Stops and starts the Redis server the backplane uses. It may block (it
/// runs through [`run_blocking`]). The tests pass one that drives a
/// testkit `RedisServer`; without one the restart step is skipped.
pub type RestartHook<'a> = &'a mut (dyn FnMut(Outage) -> anyhow::Result<()> + Send);

/// One line of chat, as the replicas send it to each other.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// The room, without the `rooms.` prefix.
    pub room: String,
    /// Who wrote it.
    pub author: String,
    /// The replica the author is connected to.
    pub replica: String,
    /// The author's message number, from 1.
    pub n: u32,
    /// The text.
    pub text: String,
}

/// One replica: its transport, and the backplane behind it for its stats.
struct Replica {
    name: &'static str,
    transport: Arc<dyn Transport>,
    #[cfg(feature = "redis-pubsub")]
    backplane: Option<Arc<switchyard::redis_pubsub::RedisPubSubTransport>>,
}

impl Replica {
    async fn connect(name: &'static str, url: &str) -> anyhow::Result<Replica> {
        let context = || {
            format!(
                "{name} could not connect to {}",
                switchyard::redact_url(url)
            )
        };
        #[cfg(feature = "redis-pubsub")]
        if switchyard::redis_pubsub::SCHEMES.contains(&scheme(url).as_str()) {
            // Opened directly (not through `switchyard::connect`) to read
            // the backplane's own counters, such as self-echoes.
            use switchyard::redis_pubsub::{PubSubConfig, RedisPubSubTransport};
            let config = PubSubConfig::from_url(url).with_context(context)?;
            let backplane = Arc::new(
                RedisPubSubTransport::connect(config)
                    .await
                    .with_context(context)?,
            );
            return Ok(Replica {
                name,
                transport: backplane.clone(),
                backplane: Some(backplane),
            });
        }
        Ok(Replica {
            name,
            transport: switchyard::connect(url).await.with_context(context)?,
            #[cfg(feature = "redis-pubsub")]
            backplane: None,
        })
    }

    fn self_echoes(&self) -> Option<u64> {
        #[cfg(feature = "redis-pubsub")]
        return self
            .backplane
            .as_ref()
            .map(|b| b.pubsub_stats().self_echoes);
        #[cfg(not(feature = "redis-pubsub"))]
        None
    }
}

/// What a member's connection recorded.
#[derive(Default)]
struct Log {
    /// (author, n) of every message received.
    received: HashSet<(String, u32)>,
    from_other_replica: u64,
    lost: u64,
    duplicates: u64,
}

#[derive(Default)]
struct Books {
    logs: Vec<Log>,
    expected: Vec<u64>,
    expected_lost: Vec<u64>,
    posted: [u64; 2],
    errors: Vec<String>,
}

/// Runs the example against `url`. A `memory://` URL becomes a named hub
/// and a Redis URL gets a fresh namespace (see [`shared_url`]), which both
/// replicas use. `restart` stops and starts Redis in the middle; without it
/// (or on an adapter other than the Redis backplane) that step is skipped
/// and the summary says why. Every wait is bounded by [`PHASE_TIMEOUT`].
pub async fn run(url: &str, restart: Option<RestartHook<'_>>) -> anyhow::Result<Summary> {
    let mut url = shared_url(url, "chat");
    let backplane_scheme = matches!(scheme(&url).as_str(), "redis+pubsub" | "rediss+pubsub");
    if backplane_scheme && restart.is_some() && !has_param(&url, "outbox_ttl") {
        url = with_param(&url, "outbox_ttl", OUTBOX_TTL);
    }
    let startup = if !crate::is_redis(&url) {
        "n/a (memory: nothing to connect to)".to_owned()
    } else if let Some(given) = crate::param(&url, "connect_timeout") {
        format!("strict: connect_timeout={given} (from the URL), no start-up retry")
    } else {
        url = with_param(&url, "connect_timeout", CONNECT_TIMEOUT);
        format!("strict: connect_timeout={CONNECT_TIMEOUT} (set by the example), no start-up retry")
    };
    let replicas = [
        Replica::connect(REPLICAS[0], &url).await?,
        Replica::connect(REPLICAS[1], &url).await?,
    ];
    let caps = replicas[0].transport.capabilities();
    let books = Arc::new(Mutex::new(Books {
        logs: MEMBERS.iter().map(|_| Log::default()).collect(),
        expected: vec![0; MEMBERS.len()],
        expected_lost: vec![0; MEMBERS.len()],
        ..Books::default()
    }));

    // Every member connects to its replica and joins its rooms.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    for (index, (_, replica, rooms)) in MEMBERS.iter().enumerate() {
        let topics = rooms
            .iter()
            .map(|room| room_topic(room))
            .collect::<Result<Vec<_>>>()?;
        let sub = Bus::new(replicas[*replica].transport.clone())
            .subscribe::<ChatMessage>(Subscription::new(TopicFilter::list(topics)?))
            .await?;
        connections.push(tokio::spawn(member(
            index,
            sub,
            books.clone(),
            stop_rx.clone(),
        )));
    }

    let result = script(&replicas, &books, caps, backplane_scheme, restart).await;
    drop(stop_tx);
    for connection in connections {
        connection.await.context("a member's connection panicked")?;
    }
    let closed = close_all(&[&replicas[0].transport, &replicas[1].transport]).await;
    let restart = result?;
    closed?;

    let b = lock(&books);
    if !b.errors.is_empty() {
        bail!("members reported errors: {}", b.errors.join("; "));
    }
    Ok(Summary {
        adapter: replicas[0].transport.name(),
        replicas: replicas
            .iter()
            .zip(b.posted)
            .map(|(r, posted)| ReplicaReport {
                name: r.name,
                posted,
                self_echoes_dropped: r.self_echoes(),
                reconnects: r.transport.stats().reconnects,
            })
            .collect(),
        members: MEMBERS
            .iter()
            .enumerate()
            .map(|(i, (name, replica, _))| {
                let log = &b.logs[i];
                MemberReport {
                    name,
                    replica: REPLICAS[*replica],
                    received: log.received.len() as u64,
                    expected: b.expected[i],
                    from_other_replica: log.from_other_replica,
                    lost: log.lost,
                    expected_lost: b.expected_lost[i],
                    duplicates: log.duplicates,
                }
            })
            .collect(),
        restart,
        startup,
    })
}

/// The chat itself: a round, the restart (or why not), another round.
async fn script(
    replicas: &[Replica; 2],
    books: &Arc<Mutex<Books>>,
    caps: switchyard::Capabilities,
    backplane_scheme: bool,
    restart: Option<RestartHook<'_>>,
) -> anyhow::Result<RestartReport> {
    let mut n = vec![0_u32; MEMBERS.len()];
    round(replicas, books, &mut n, "before the restart").await?;
    let report = match restart {
        _ if !caps.gap_signals => RestartReport::Skipped(format!(
            "the {} adapter is not the Redis backplane{}",
            replicas[0].transport.name(),
            if caps.cross_process {
                ""
            } else {
                ": both replicas share one in-process hub, there is no server to restart"
            }
        )),
        None if backplane_scheme => RestartReport::Skipped(
            "no way to restart the Redis server from here; the test \
             `cargo test -p switchyard-examples --test chat_backplane` runs this step on a \
             redis-server of its own"
                .to_owned(),
        ),
        None => RestartReport::Skipped("no restart hook".to_owned()),
        Some(hook) => outage(replicas, books, &mut n, hook).await?,
    };
    round(replicas, books, &mut n, "after the restart").await?;
    Ok(report)
}

/// Every member posts [`POSTS_PER_ROOM`] messages to each of its rooms; then
/// waits until every member has what it should have.
async fn round(
    replicas: &[Replica; 2],
    books: &Arc<Mutex<Books>>,
    n: &mut [u32],
    phase: &str,
) -> anyhow::Result<()> {
    for _ in 0..POSTS_PER_ROOM {
        for (author, (_, _, rooms)) in MEMBERS.iter().enumerate() {
            for room in *rooms {
                post(replicas, books, n, author, room, true).await?;
            }
        }
    }
    everyone_has_their_messages(books, phase).await
}

/// Stops Redis, posts on replica A while it is down, starts it again and
/// waits until both replicas are subscribed again.
async fn outage(
    replicas: &[Replica; 2],
    books: &Arc<Mutex<Books>>,
    n: &mut [u32],
    hook: RestartHook<'_>,
) -> anyhow::Result<RestartReport> {
    let a = &replicas[0].transport;
    let reconnects_before = replicas.each_ref().map(|r| r.transport.stats().reconnects);
    let dropped_before = a.stats().dropped;
    let down = Instant::now();
    run_blocking(|| hook(Outage::Stop)).context("the restart hook could not stop Redis")?;

    // alice posts while Redis is down: bob (same replica) gets it at once,
    // carol (replica B) cannot.
    let alice = 0;
    for _ in 0..OUTAGE_POSTS {
        post(replicas, books, n, alice, "lobby", false).await?;
    }
    // The messages wait in A's outbox until they are older than its
    // outbox_ttl, then are dropped for Redis.
    let expired = u64::from(OUTAGE_POSTS);
    wait_until(
        PHASE_TIMEOUT,
        || a.stats().dropped >= dropped_before + expired,
        || {
            format!(
                "{} of {expired} outage messages dropped from {}'s outbox",
                a.stats().dropped.saturating_sub(dropped_before),
                REPLICAS[0]
            )
        },
    )
    .await?;

    run_blocking(|| hook(Outage::Start)).context("the restart hook could not start Redis")?;
    let back = Instant::now();
    let outage = back - down;
    // Subscribed again: a new subscribing connection, and healthy (every
    // channel confirmed by Redis, publishing works).
    for (replica, before) in replicas.iter().zip(reconnects_before) {
        let t = &replica.transport;
        wait_until_async(
            PHASE_TIMEOUT,
            || async { t.stats().reconnects > before && t.health().await.is_ok() },
            &format!("{} to subscribe again after the restart", replica.name),
        )
        .await?;
    }
    Ok(RestartReport::Done {
        outage_posts: u64::from(OUTAGE_POSTS),
        dropped_for_redis: a.stats().dropped.saturating_sub(dropped_before),
        outage,
        resubscribed_after: back.elapsed(),
    })
}

/// `author` posts one message to `room` on its replica. `redis_up` says
/// whether members on the other replica should get it (else they should
/// be told it was lost).
async fn post(
    replicas: &[Replica; 2],
    books: &Arc<Mutex<Books>>,
    n: &mut [u32],
    author: usize,
    room: &str,
    redis_up: bool,
) -> anyhow::Result<()> {
    let (name, replica, _) = MEMBERS[author];
    n[author] += 1;
    let message = ChatMessage {
        room: room.to_owned(),
        author: name.to_owned(),
        replica: REPLICAS[replica].to_owned(),
        n: n[author],
        text: format!("{name} says hello #{} in {room}", n[author]),
    };
    {
        let mut b = lock(books);
        b.posted[replica] += 1;
        for (i, (_, member_replica, rooms)) in MEMBERS.iter().enumerate() {
            if rooms.contains(&room) {
                if redis_up || *member_replica == replica {
                    b.expected[i] += 1;
                } else {
                    b.expected_lost[i] += 1;
                }
            }
        }
    }
    Bus::new(replicas[replica].transport.clone())
        .publish(&room_topic(room)?, &message)
        .await
        .with_context(|| format!("{name} posting to {room} on {}", REPLICAS[replica]))?;
    Ok(())
}

/// Waits until every member received what it should have and was told
/// about what it lost; fails at once on a member's error.
async fn everyone_has_their_messages(books: &Arc<Mutex<Books>>, phase: &str) -> anyhow::Result<()> {
    wait_until(
        PHASE_TIMEOUT,
        || {
            let b = lock(books);
            !b.errors.is_empty()
                || b.logs.iter().enumerate().all(|(i, log)| {
                    log.received.len() as u64 >= b.expected[i] && log.lost >= b.expected_lost[i]
                })
        },
        || {
            let b = lock(books);
            let members: Vec<String> = MEMBERS
                .iter()
                .enumerate()
                .map(|(i, (name, _, _))| {
                    format!(
                        "{name} {}/{} (lost {}/{})",
                        b.logs[i].received.len(),
                        b.expected[i],
                        b.logs[i].lost,
                        b.expected_lost[i]
                    )
                })
                .collect();
            format!("{phase}: {}", members.join(", "))
        },
    )
    .await?;
    let b = lock(books);
    if !b.errors.is_empty() {
        bail!("{phase}: members reported errors: {}", b.errors.join("; "));
    }
    Ok(())
}

fn room_topic(room: &str) -> Result<Topic> {
    Topic::new(format!("rooms.{room}"))
}

/// One member's connection: records every message of its rooms.
async fn member(
    index: usize,
    mut sub: TypedSubscriber<ChatMessage>,
    books: Arc<Mutex<Books>>,
    mut stop: watch::Receiver<bool>,
) {
    let (name, replica, rooms) = MEMBERS[index];
    loop {
        let item = tokio::select! {
            _ = stop.changed() => break,
            item = sub.recv() => item,
        };
        let mut b = lock(&books);
        match item {
            None => break,
            Some(Ok(line)) => {
                let m = &line.value;
                if !rooms.contains(&m.room.as_str())
                    || line.delivery.topic().as_str() != format!("rooms.{}", m.room)
                {
                    let topic = line.delivery.topic();
                    b.errors
                        .push(format!("{name}: a message for room {} on {topic}", m.room));
                }
                let log = &mut b.logs[index];
                if !log.received.insert((m.author.clone(), m.n)) {
                    log.duplicates += 1;
                } else if m.replica != REPLICAS[replica] {
                    log.from_other_replica += 1;
                }
            }
            // The backplane says which messages of another replica it lost.
            Some(Err(Error::Lost { from, to, .. })) => {
                b.logs[index].lost += to.saturating_sub(from) + 1;
            }
            Some(Err(e)) => b.errors.push(format!("{name}: {e}")),
        }
    }
    if let Err(e) = sub.close().await {
        lock(&books).errors.push(format!("{name}: closing: {e}"));
    }
}
