//! Sentinel groups: a primary, a replica and three sentinels; the primary
//! moves on `SENTINEL FAILOVER` and when it is killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchyard_testkit::{
    RedisServer, RespConnection, SentinelGroup, SentinelOptions, ServerKind, TestkitError,
};

/// Generous: the machine running the tests may be loaded. A failover after
/// SIGKILL takes `down_after` (2 s) plus an election, usually 3 to 6 s.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

fn role(node: &RedisServer) -> String {
    let info = node.info("replication").unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn group_starts_with_a_replica_in_sync_and_three_sentinels() {
    let group = SentinelGroup::start(SentinelOptions::default().master_name("sy-start")).unwrap();
    assert_eq!(group.master_name(), "sy-start");
    let sentinels = group.sentinel_addrs();
    assert_eq!(sentinels.len(), 3);
    assert!(sentinels.iter().all(|a| a.ip().is_loopback()));
    let nodes = group.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(group.current_primary_addr().unwrap(), nodes[0].addr());
    assert_eq!(group.primary().unwrap().addr(), nodes[0].addr());
    assert_eq!(group.replica().unwrap().addr(), nodes[1].addr());
    assert_eq!(role(&nodes[0]), "master");
    assert_eq!(role(&nodes[1]), "slave");

    // Every sentinel answers for the same primary, and knows two others.
    for addr in &sentinels {
        let mut conn = RespConnection::connect(*addr).unwrap();
        let reply = conn
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sy-start"])
            .unwrap();
        let port = reply.as_array().unwrap()[1].as_int().unwrap();
        assert_eq!(port, i64::from(nodes[0].port()));
        let others = conn
            .command(&["SENTINEL", "SENTINELS", "sy-start"])
            .unwrap();
        assert_eq!(others.as_array().unwrap().len(), 2);
    }

    // Writes to the primary reach the replica.
    group.nodes()[0].cmd(&["SET", "k", "v"]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        group.nodes()[1]
            .cmd(&["GET", "k"])
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            == Some("v".to_owned())
    }));
}

#[test]
fn a_restarted_sentinel_keeps_what_it_learned() {
    let mut group = SentinelGroup::start(SentinelOptions::default()).unwrap();
    let primary = group.current_primary_addr().unwrap();
    let sentinel = group.sentinel_mut(2).unwrap();
    let (port, pid) = (sentinel.port(), sentinel.pid());
    let started = Instant::now();
    sentinel.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    sentinel.start_again().unwrap();
    assert_eq!(sentinel.port(), port);
    assert_ne!(sentinel.pid(), pid);
    // Its rewritten config still names the group's primary and peers.
    let conf = std::fs::read_to_string(sentinel.dir().join("redis.conf")).unwrap();
    assert!(conf.contains("sentinel known-sentinel"), "{conf}");
    let mut conn = RespConnection::connect(sentinel.addr()).unwrap();
    let reply = conn
        .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "switchyard"])
        .unwrap();
    let port = reply.as_array().unwrap()[1].as_int().unwrap();
    assert_eq!(port, i64::from(primary.port()));
}

#[test]
fn sentinel_failover_moves_the_primary() {
    let group = SentinelGroup::start(SentinelOptions::default()).unwrap();
    let old = group.current_primary_addr().unwrap();
    group.failover().unwrap();
    let new = group.wait_for_new_primary(old, FAILOVER_DEADLINE).unwrap();
    assert_ne!(new, old);
    assert_eq!(new, group.nodes()[1].addr());
    assert_eq!(group.primary().unwrap().addr(), new);
    assert_eq!(role(group.primary().unwrap()), "master");
    group
        .primary()
        .unwrap()
        .cmd(&["SET", "after", "failover"])
        .unwrap();
    // The old primary follows the new one.
    assert!(
        wait_until(FAILOVER_DEADLINE, || role(&group.nodes()[0]) == "slave"),
        "the old primary did not become a replica\n{}",
        group.log_tails()
    );
}

#[test]
fn killing_the_primary_moves_it_to_the_replica() {
    let mut group = SentinelGroup::start(SentinelOptions::default()).unwrap();
    let old = group.kill_primary().unwrap();
    assert_eq!(old, group.nodes()[0].addr());
    assert_eq!(group.nodes()[0].pid(), None);
    let new = group.wait_for_new_primary(old, FAILOVER_DEADLINE).unwrap();
    assert_eq!(new, group.nodes()[1].addr());
    assert_eq!(role(&group.nodes()[1]), "master");
    group.nodes()[1].cmd(&["SET", "after", "kill"]).unwrap();

    // The killed node comes back and is turned into a replica of the new
    // primary by the sentinels.
    group.node_mut(0).unwrap().start_again().unwrap();
    assert!(
        wait_until(FAILOVER_DEADLINE, || {
            group.nodes()[0].info("replication").is_ok_and(|info| {
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
        }),
        "the restarted node did not follow the new primary\n{}",
        group.log_tails()
    );
    assert_eq!(
        group.nodes()[0].cmd(&["GET", "after"]).unwrap().as_str(),
        Some("kill")
    );
}

#[test]
fn wait_for_new_primary_times_out_naming_what_it_saw() {
    let group = SentinelGroup::start(SentinelOptions::default()).unwrap();
    let old = group.current_primary_addr().unwrap();
    let err = group
        .wait_for_new_primary(old, Duration::from_millis(300))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TestkitError::Timeout(_)), "{text}");
    assert!(text.contains(&old.to_string()), "{text}");
}

#[test]
fn password_protected_group_fails_over() {
    let group = SentinelGroup::start(SentinelOptions::default().password("sentinel pw")).unwrap();
    let err = RespConnection::connect(group.nodes()[0].addr())
        .and_then(|mut c| c.command(&["GET", "k"]))
        .unwrap_err();
    assert!(err.is_reply_code("NOAUTH"), "{err}");
    let old = group.current_primary_addr().unwrap();
    group.failover().unwrap();
    let new = group.wait_for_new_primary(old, FAILOVER_DEADLINE).unwrap();
    assert_eq!(new, group.nodes()[1].addr());
    assert!(
        wait_until(FAILOVER_DEADLINE, || {
            group.nodes()[0].info("replication").is_ok_and(|info| {
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
        }),
        "the old primary did not authenticate to the new one\n{}",
        group.log_tails()
    );
}

#[test]
fn acl_user_group_fails_over() {
    let mut group = SentinelGroup::start(
        SentinelOptions::default()
            .password("default pw")
            .acl_user("app", "app pw"),
    )
    .unwrap();
    assert_eq!(
        group.nodes()[1].cmd(&["ACL", "WHOAMI"]).unwrap().as_str(),
        Some("app")
    );
    let old = group.kill_primary().unwrap();
    let new = group.wait_for_new_primary(old, FAILOVER_DEADLINE).unwrap();
    assert_eq!(new, group.nodes()[1].addr());
    // The restarted node replicates from the new primary as the ACL user.
    group.node_mut(0).unwrap().start_again().unwrap();
    assert!(
        wait_until(FAILOVER_DEADLINE, || {
            group.nodes()[0].info("replication").is_ok_and(|info| {
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
        }),
        "the restarted node did not follow the new primary\n{}",
        group.log_tails()
    );
}

#[test]
fn valkey_group_fails_over_after_kill() {
    let mut group =
        SentinelGroup::start(SentinelOptions::default().kind(ServerKind::Valkey)).unwrap();
    assert_eq!(group.kind(), ServerKind::Valkey);
    assert!(
        group
            .sentinels()
            .iter()
            .all(|s| s.kind() == ServerKind::Valkey)
    );
    let old = group.kill_primary().unwrap();
    let new = group.wait_for_new_primary(old, FAILOVER_DEADLINE).unwrap();
    assert_eq!(new, group.nodes()[1].addr());
}

#[test]
fn invalid_options_fail_before_starting_anything() {
    let err = SentinelGroup::start(SentinelOptions::default().down_after(Duration::from_millis(5)))
        .unwrap_err();
    assert!(matches!(err, TestkitError::InvalidSetting(_)), "{err}");
    assert!(err.to_string().contains("down_after"), "{err}");
}
