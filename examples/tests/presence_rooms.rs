//! `presence_rooms` on memory (one named hub), on the Redis Pub/Sub
//! backplane and on Redis Streams (fan-out): every replica gets every join
//! and leave of its rooms once, rooms with any name round-trip through
//! their topic segment, subscriber counts per room, health.

mod support;

use anyhow::ensure;
use switchyard::SubscriberCounts;
use switchyard_examples::presence_rooms::{self, Summary, room_topic, topic_room, url_from};

/// A room's name, segment, events per replica and rosters per replica.
type ExpectedRoom = (
    &'static str,
    &'static str,
    [u64; 2],
    [&'static [&'static str]; 2],
);

/// What every adapter must show: events, rosters, no duplicates.
fn check(summary: &Summary, adapter: &str) -> anyhow::Result<()> {
    ensure!(summary.adapter == adapter, "adapter {}", summary.adapter);
    ensure!(summary.published == [5, 3], "{summary}");
    // replica-a hosts all three rooms (8 events), replica-b two (7).
    ensure!(summary.received == [8, 7], "{summary}");
    ensure!(summary.duplicates == 0, "{summary}");
    ensure!(summary.room_mismatches == 0, "{summary}");
    let expected: [ExpectedRoom; 3] = [
        (
            "Lobby {main}",
            "Lobby=20=7Bmain=7D",
            [4, 4],
            [&["alice", "carol"], &["alice", "carol"]],
        ),
        (
            "café au lait",
            "caf=C3=A9=20au=20lait",
            [3, 3],
            [&["alice"], &["alice"]],
        ),
        (
            "日本語 chat",
            "=E6=97=A5=E6=9C=AC=E8=AA=9E=20chat",
            [1, 0],
            [&["alice"], &[]],
        ),
    ];
    ensure!(summary.rooms.len() == 3, "{summary}");
    for (room, (name, segment, received, rosters)) in summary.rooms.iter().zip(expected) {
        ensure!(room.room == name && room.segment == segment, "{summary}");
        ensure!(room.received == received, "{summary}");
        ensure!(room.rosters[0] == rosters[0], "{summary}");
        ensure!(room.rosters[1] == rosters[1], "{summary}");
    }
    for (before, after) in &summary.health {
        ensure!(before == "Ok" && after == "Ok", "{summary}");
    }
    Ok(())
}

fn counts(summary: &Summary) -> Vec<[SubscriberCounts; 2]> {
    summary.rooms.iter().map(|r| r.counts).collect()
}

fn c(local: u64, remote: Option<u64>) -> SubscriberCounts {
    SubscriberCounts::new(local, remote)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory_both_replicas_share_one_named_hub() -> anyhow::Result<()> {
    let summary = presence_rooms::run("memory://").await?;
    check(&summary, "memory")?;
    // One hub: `local` counts both replicas' subscriptions; no remote.
    ensure!(
        counts(&summary)
            == [
                [c(2, None), c(2, None)],
                [c(2, None), c(2, None)],
                [c(1, None), c(1, None)],
            ],
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_backplane_remote_counts_the_subscribed_replicas() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?namespace=t-presence",
        support::url(&server, "redis+pubsub")
    );
    let summary = presence_rooms::run(&url).await?;
    check(&summary, "redis-pubsub")?;
    ensure!(summary.prefix == "namespace=t-presence", "{summary}");
    // PUBSUB NUMSUB: two replicas on the first two rooms, one on the third
    // (replica-b has no local subscriber there, and still sees replica-a).
    ensure!(
        counts(&summary)
            == [
                [c(1, Some(2)), c(1, Some(2))],
                [c(1, Some(2)), c(1, Some(2))],
                [c(1, Some(1)), c(0, Some(1))],
            ],
        "{summary}"
    );
    // Nothing is kept in Redis by the backplane.
    ensure!(support::int(&server, &["DBSIZE"])? == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_it_is_fan_out_over_streams() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?namespace=t-presence",
        support::url(&server, "redis+streams")
    );
    let summary = presence_rooms::run(&url).await?;
    check(&summary, "redis-streams")?;
    ensure!(
        counts(&summary)
            == [
                [c(1, None), c(1, None)],
                [c(1, None), c(1, None)],
                [c(1, None), c(0, None)],
            ],
        "{summary}"
    );
    // The rooms' streams hold every join and leave.
    for (segment, len) in [
        ("Lobby=20=7Bmain=7D", 4),
        ("caf=C3=A9=20au=20lait", 3),
        ("=E6=97=A5=E6=9C=AC=E8=AA=9E=20chat", 1),
    ] {
        let key = format!("t-presence:{{presence.{segment}}}");
        ensure!(support::int(&server, &["XLEN", &key])? == len, "XLEN {key}");
    }
    Ok(())
}

#[test]
fn rooms_round_trip_through_their_topics() -> anyhow::Result<()> {
    for room in [
        "Lobby {main}",
        "café au lait",
        "日本語 chat",
        "a.b/c*d>e",
        "=",
    ] {
        let topic = room_topic(room)?;
        ensure!(topic_room(&topic)? == room, "{room:?} -> {topic}");
    }
    ensure!(room_topic("").is_err());
    ensure!(topic_room(&switchyard::Topic::new("other.x")?).is_err());
    Ok(())
}

#[test]
fn the_url_comes_from_the_environment_values() -> anyhow::Result<()> {
    // SWITCHYARD_URL wins.
    ensure!(url_from(Some("memory://x"), Some("redis://h:1"), None)? == "memory://x");
    // REDIS_URL moves to the backplane, with the channel prefix.
    ensure!(
        url_from(None, Some("redis://h:6379/2"), None)?
            == "redis+pubsub://h:6379/2?namespace=presence"
    );
    ensure!(
        url_from(None, Some("rediss://u:pw@h:6380"), Some("eu-presence"))?
            == "rediss+pubsub://u:pw@h:6380?namespace=eu-presence"
    );
    ensure!(
        url_from(None, Some("redis://h?namespace=given"), Some("p"))?
            == "redis+pubsub://h?namespace=given"
    );
    // Neither: the embedded default.
    ensure!(url_from(None, None, Some("p"))? == "memory://");
    // Another scheme is refused without showing the password.
    let error = url_from(None, Some("http://u:secret@h"), None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        error.contains("not a redis:// or rediss:// URL") && !error.contains("secret"),
        "{error}"
    );
    Ok(())
}
