//! Presence rooms: a presence service's Redis pub/sub rooms, on switchyard.
//! Two replicas of the service broadcast who joins and leaves which room;
//! rooms are named by arbitrary strings; payloads are bincode; the channel
//! prefix and the server come from the environment.
//!
//! - **Config from the environment.** [`url_from_env`] reads
//!   `SWITCHYARD_URL`; without it, a `REDIS_URL` (`redis://host:port/db`,
//!   as the service had) becomes `redis+pubsub://host:port/db` with the
//!   channel prefix `PRESENCE_PREFIX` (default `presence`) as `namespace=`;
//!   without either, `memory://`. [`url_from`] is the same without the
//!   environment.
//! - **Channel prefix.** Every channel lives under the URL's `namespace=`;
//!   a URL without one gets `namespace=presence-<run id>` (see
//!   [`shared_url`]).
//! - **Rooms with any name.** [`ROOMS`] have spaces, braces and non-ASCII
//!   characters. Each becomes one topic segment with
//!   `switchyard::topic::encode_segment` (`Lobby {main}` ->
//!   `Lobby=20=7Bmain=7D`), topic `presence.<segment>`; a replica turns a
//!   delivery's topic back into the room with `decode_segment`.
//! - **Two replicas.** `replica-a` hosts members of every room, `replica-b`
//!   of the first two; each subscribes to the rooms it hosts. [`SCRIPT`]'s
//!   joins and leaves are published (bincode, `Codec::Bincode`) by the
//!   member's replica and reach every replica subscribed to the room, the
//!   publishing one included, exactly once. In the end both replicas agree
//!   on every roster.
//! - **Subscriber counts.** `Transport::subscribers(topic)` per room:
//!   `local` counts this transport's subscribers (on `memory://`, where
//!   both replicas share one named hub, the hub's), and on the Pub/Sub
//!   backplane `remote` the replicas subscribed to the room's channel
//!   (`PUBSUB NUMSUB`). Other adapters cannot tell (`remote: None`).
//! - **Health.** `health()` of both replicas before and after.
//!
//! On `redis+streams://` it works as fan-out too (every replica's
//! subscription reads every entry of its rooms' streams from `Latest`), with
//! the streams kept in Redis afterwards; `remote` is `None` there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::SubscriberCounts;
use switchyard::prelude::*;
use switchyard::topic::{decode_segment, encode_segment};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{PHASE_TIMEOUT, close_all, is_redis, lock, param, shared_url, wait_until};

/// The replicas of the presence service.
pub const REPLICAS: [&str; 2] = ["replica-a", "replica-b"];
/// The rooms, named as users name them.
pub const ROOMS: [&str; 3] = ["Lobby {main}", "café au lait", "日本語 chat"];
/// Which rooms each replica hosts members of (indexes into [`ROOMS`]).
pub const HOSTED: [&[usize]; 2] = [&[0, 1, 2], &[0, 1]];
/// Prefix of every room's topic: `presence.<encode_segment(room)>`.
pub const TOPIC_PREFIX: &str = "presence.";
/// The default channel prefix when the URL is built from `REDIS_URL`.
pub const DEFAULT_PREFIX: &str = "presence";

/// Joins and leaves in order: (replica index, user, room index, joined).
pub const SCRIPT: [(usize, &str, usize, bool); 8] = [
    (0, "alice", 0, true),
    (0, "alice", 1, true),
    (0, "alice", 2, true),
    (0, "bob", 0, true),
    (1, "carol", 0, true),
    (1, "carol", 1, true),
    (0, "bob", 0, false),
    (1, "carol", 1, false),
];

/// A presence change, as the service puts it on the wire (bincode).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The room, as named by users.
    pub room: String,
    /// Who.
    pub user: String,
    /// Joined (`true`) or left.
    pub joined: bool,
    /// The replica the user is connected to.
    pub replica: String,
}

/// The room's topic: `presence.<encode_segment(room)>`.
pub fn room_topic(room: &str) -> Result<Topic> {
    Topic::new(format!("{TOPIC_PREFIX}{}", encode_segment(room)?))
}

/// The room a topic made by [`room_topic`] stands for.
pub fn topic_room(topic: &Topic) -> Result<String> {
    let segment = topic
        .as_str()
        .strip_prefix(TOPIC_PREFIX)
        .ok_or_else(|| Error::invalid_topic(topic.as_str(), "not a presence room topic"))?;
    decode_segment(segment)
}

/// The URL the service would use, from the environment: `SWITCHYARD_URL`,
/// else `REDIS_URL` with `PRESENCE_PREFIX`, else `memory://` (see
/// [`url_from`]).
pub fn url_from_env() -> anyhow::Result<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    url_from(
        var(switchyard::URL_ENV).as_deref(),
        var("REDIS_URL").as_deref(),
        var("PRESENCE_PREFIX").as_deref(),
    )
}

/// The URL from the values of `SWITCHYARD_URL`, `REDIS_URL` and
/// `PRESENCE_PREFIX`: `SWITCHYARD_URL` as given; else `REDIS_URL`
/// (`redis://` or `rediss://`) on the Pub/Sub backplane
/// (`redis+pubsub://`, `rediss+pubsub://`) with `namespace=<prefix>`
/// (default [`DEFAULT_PREFIX`]) unless it has one; else `memory://`.
/// A `REDIS_URL` of another scheme is an error naming the expected ones
/// (without the password).
pub fn url_from(
    switchyard_url: Option<&str>,
    redis_url: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(url) = switchyard_url {
        return Ok(url.to_owned());
    }
    let Some(redis_url) = redis_url else {
        return Ok(switchyard::DEFAULT_URL.to_owned());
    };
    let url = if let Some(rest) = redis_url.strip_prefix("redis://") {
        format!("redis+pubsub://{rest}")
    } else if let Some(rest) = redis_url.strip_prefix("rediss://") {
        format!("rediss+pubsub://{rest}")
    } else {
        bail!(
            "REDIS_URL {} is not a redis:// or rediss:// URL",
            switchyard::redact_url(redis_url)
        );
    };
    if param(&url, "namespace").is_some() {
        return Ok(url);
    }
    Ok(crate::with_param(
        &url,
        "namespace",
        prefix.unwrap_or(DEFAULT_PREFIX),
    ))
}

/// One room as the run saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomReport {
    /// The room's name.
    pub room: String,
    /// Its topic segment.
    pub segment: String,
    /// `subscribers(topic)` asked on each replica, once every replica
    /// subscribed to its rooms.
    pub counts: [SubscriberCounts; 2],
    /// Presence events each replica received for the room.
    pub received: [u64; 2],
    /// The roster each replica ends with (empty for a room it does not host).
    pub rosters: [Vec<String>; 2],
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// The channel prefix (`namespace=`), or the memory hub.
    pub prefix: String,
    /// Events each replica published.
    pub published: [u64; 2],
    /// Events each replica received (all rooms).
    pub received: [u64; 2],
    /// Deliveries received twice by a replica.
    pub duplicates: u64,
    /// Deliveries whose decoded topic did not name the room in the payload.
    pub room_mismatches: u64,
    /// The rooms.
    pub rooms: Vec<RoomReport>,
    /// `health()` of each replica at the start and at the end.
    pub health: [(String, String); 2],
}

fn show_counts(c: &SubscriberCounts) -> String {
    match c.remote {
        Some(remote) => format!("local {} remote {remote}", c.local),
        None => format!("local {} remote n/a", c.local),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "presence_rooms on {}:", self.adapter)?;
        writeln!(f, "  channel prefix: {}", self.prefix)?;
        for (i, name) in REPLICAS.iter().enumerate() {
            writeln!(
                f,
                "  {name}: published {}, received {}, health {} -> {}",
                self.published[i], self.received[i], self.health[i].0, self.health[i].1
            )?;
        }
        writeln!(
            f,
            "  duplicates: {}, topic/room mismatches: {}",
            self.duplicates, self.room_mismatches
        )?;
        let mut lines = Vec::new();
        for r in &self.rooms {
            lines.push(format!(
                "  room {:?} -> {TOPIC_PREFIX}{}",
                r.room, r.segment
            ));
            for (i, name) in REPLICAS.iter().enumerate() {
                lines.push(format!(
                    "    {name}: subscribers {}, {} events, roster [{}]",
                    show_counts(&r.counts[i]),
                    r.received[i],
                    r.rosters[i].join(", ")
                ));
            }
        }
        write!(f, "{}", lines.join("\n"))
    }
}

/// What one replica's room subscriptions recorded.
#[derive(Default)]
struct Seen {
    /// (room index) -> events received.
    received: BTreeMap<usize, u64>,
    /// (room index) -> members now.
    rosters: BTreeMap<usize, BTreeSet<String>>,
    /// (room, user, joined) seen, to spot duplicates.
    events: BTreeSet<(String, String, bool)>,
    duplicates: u64,
    mismatches: u64,
    errors: Vec<String>,
}

/// Runs the example against `url` (see [`shared_url`]: `memory://` becomes
/// one named hub for both replicas, a Redis URL gets a fresh channel
/// prefix). Every wait is bounded by [`PHASE_TIMEOUT`].
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    let url = shared_url(url, "presence");
    let connect = |role: &'static str| {
        let url = url.clone();
        async move {
            switchyard::connect(&url).await.with_context(|| {
                format!(
                    "could not connect {role} to {}",
                    switchyard::redact_url(&url)
                )
            })
        }
    };
    let replicas = [connect(REPLICAS[0]).await?, connect(REPLICAS[1]).await?];
    let prefix = if is_redis(&url) {
        format!(
            "namespace={}",
            param(&url, "namespace").unwrap_or("switchyard")
        )
    } else {
        format!("memory hub {}", crate::memory_hub_name(&url))
    };
    let result = script(&replicas, prefix).await;
    let closed = close_all(&[&replicas[0], &replicas[1]]).await;
    let summary = result?;
    closed?;
    Ok(summary)
}

async fn script(replicas: &[Arc<dyn Transport>; 2], prefix: String) -> anyhow::Result<Summary> {
    let health_before = [
        format!("{:?}", replicas[0].health().await),
        format!("{:?}", replicas[1].health().await),
    ];
    let topics = ROOMS
        .iter()
        .map(|room| room_topic(room))
        .collect::<Result<Vec<_>>>()?;

    // Each replica subscribes to the rooms it hosts, one subscription per
    // room (a room's channel then counts the replica in PUBSUB NUMSUB).
    let seen: [Arc<Mutex<Seen>>; 2] = Default::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listeners: Vec<JoinHandle<()>> = Vec::new();
    for (r, transport) in replicas.iter().enumerate() {
        let bus = Bus::new(transport.clone()).with_codec(Codec::Bincode);
        for &room in HOSTED[r] {
            let topic = topics.get(room).context("a hosted room out of range")?;
            let sub = bus
                .subscribe::<PresenceEvent>(Subscription::new(topic.clone()))
                .await?;
            listeners.push(tokio::spawn(listen(
                room,
                sub,
                seen[r].clone(),
                stop_rx.clone(),
            )));
        }
    }

    // Who listens on each room, asked on each replica.
    let mut counts = Vec::new();
    for topic in &topics {
        counts.push([
            replicas[0].subscribers(topic).await?,
            replicas[1].subscribers(topic).await?,
        ]);
    }

    // The joins and leaves, each published by the member's replica.
    let mut published = [0_u64; 2];
    for (r, user, room, joined) in SCRIPT {
        let bus = Bus::new(replicas[r].clone()).with_codec(Codec::Bincode);
        let topic = topics.get(room).context("a scripted room out of range")?;
        let event = PresenceEvent {
            room: ROOMS[room].to_owned(),
            user: user.to_owned(),
            joined,
            replica: REPLICAS[r].to_owned(),
        };
        bus.publish(topic, &event).await?;
        published[r] += 1;
    }

    // Every replica gets every event of the rooms it hosts.
    let expected: [u64; 2] = [0, 1].map(|r| {
        SCRIPT
            .iter()
            .filter(|(_, _, room, _)| HOSTED[r].contains(room))
            .count() as u64
    });
    let total = |s: &Seen| s.received.values().sum::<u64>();
    let waited = wait_until(
        PHASE_TIMEOUT,
        || {
            (0..2).all(|r| {
                let s = lock(&seen[r]);
                !s.errors.is_empty() || total(&s) >= expected[r]
            })
        },
        || {
            format!(
                "replica-a received {} of {} events, replica-b {} of {}",
                total(&lock(&seen[0])),
                expected[0],
                total(&lock(&seen[1])),
                expected[1]
            )
        },
    )
    .await;
    let _ = stop_tx.send(true);
    for l in listeners {
        l.await.context("a room listener panicked")?;
    }
    waited?;
    for s in &seen {
        let s = lock(s);
        if !s.errors.is_empty() {
            bail!("room listeners failed: {}", s.errors.join("; "));
        }
    }

    let health_after = [
        format!("{:?}", replicas[0].health().await),
        format!("{:?}", replicas[1].health().await),
    ];
    let seen = [lock(&seen[0]), lock(&seen[1])];
    let rooms = ROOMS
        .iter()
        .enumerate()
        .map(|(i, room)| {
            Ok(RoomReport {
                room: (*room).to_owned(),
                segment: encode_segment(room)?,
                counts: counts.get(i).copied().unwrap_or_default(),
                received: [0, 1].map(|r| seen[r].received.get(&i).copied().unwrap_or(0)),
                rosters: [0, 1].map(|r| {
                    seen[r]
                        .rosters
                        .get(&i)
                        .map(|m| m.iter().cloned().collect())
                        .unwrap_or_default()
                }),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Summary {
        adapter: replicas[0].name(),
        prefix,
        published,
        received: [total(&seen[0]), total(&seen[1])],
        duplicates: seen[0].duplicates + seen[1].duplicates,
        room_mismatches: seen[0].mismatches + seen[1].mismatches,
        rooms,
        health: [
            (health_before[0].clone(), health_after[0].clone()),
            (health_before[1].clone(), health_after[1].clone()),
        ],
    })
}

/// One room subscription of a replica, until stopped: keeps the room's
/// roster from the joins and leaves it receives.
async fn listen(
    room: usize,
    mut sub: TypedSubscriber<PresenceEvent>,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            _ = stop.changed() => break,
            item = sub.recv() => item,
        };
        let event = match item {
            None => break,
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                lock(&seen)
                    .errors
                    .push(format!("room {}: {e}", ROOMS[room]));
                continue;
            }
        };
        let decoded = topic_room(event.delivery.topic());
        let mut s = lock(&seen);
        match decoded {
            Ok(name) if name == event.value.room && name == ROOMS[room] => {}
            Ok(_) => s.mismatches += 1,
            Err(e) => s.errors.push(format!("room {}: {e}", ROOMS[room])),
        }
        *s.received.entry(room).or_default() += 1;
        let key = (
            event.value.room.clone(),
            event.value.user.clone(),
            event.value.joined,
        );
        if !s.events.insert(key) {
            s.duplicates += 1;
        }
        let roster = s.rosters.entry(room).or_default();
        if event.value.joined {
            roster.insert(event.value.user.clone());
        } else {
            roster.remove(&event.value.user);
        }
    }
    if let Err(e) = sub.close().await {
        lock(&seen)
            .errors
            .push(format!("closing room {}: {e}", ROOMS[room]));
    }
}
