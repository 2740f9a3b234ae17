//! The testkit's Redis Cluster: every slot served, keys routed by slot,
//! a manual failover, a SIGKILLed master replaced by its replica, and a
//! live migration of one slot with its keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_testkit::{ClusterGroup, ClusterOptions, SLOTS};

const WAIT: Duration = Duration::from_secs(60);

/// Writes `key` on the master that serves it and reads it back there.
fn set_get(cluster: &ClusterGroup, key: &str, value: &str) {
    let slot = cluster.slot_of(key).unwrap();
    let master = cluster.master_of(slot).unwrap();
    let node = &cluster.nodes()[cluster.index_of(master.addr).unwrap()];
    assert!(node.cmd(&["SET", key, value]).unwrap().is_ok());
    assert_eq!(node.cmd(&["GET", key]).unwrap().as_str(), Some(value));
}

#[test]
fn a_cluster_serves_every_slot_and_survives_failover_kill_and_migration() {
    let mut cluster = ClusterGroup::start(ClusterOptions::default()).expect("cluster");
    let topo = cluster.topology().unwrap();
    assert_eq!(topo.len(), 6);
    let masters: Vec<_> = topo.iter().filter(|n| n.master).collect();
    assert_eq!(masters.len(), 3);
    let covered: u32 = masters
        .iter()
        .flat_map(|m| m.slots.iter())
        .map(|&(a, b)| u32::from(b - a) + 1)
        .sum();
    assert_eq!(covered, u32::from(SLOTS));
    for m in &masters {
        let replicas = topo
            .iter()
            .filter(|n| n.master_id.as_deref() == Some(m.id.as_str()))
            .count();
        assert_eq!(replicas, 1, "{topo:?}");
    }
    // Hash tags put keys in one slot.
    assert_eq!(
        cluster.slot_of("{orders}").unwrap(),
        cluster.slot_of("app:{orders}:dlq").unwrap()
    );
    set_get(&cluster, "{orders}", "1");

    // A manual failover: the replica takes over, the data stays.
    let slot = cluster.slot_of("{orders}").unwrap();
    let old = cluster.master_of(slot).unwrap().addr;
    let new = cluster.failover(slot, WAIT).unwrap();
    assert_ne!(old, new);
    assert_eq!(cluster.master_of(slot).unwrap().addr, new);
    let node = &cluster.nodes()[cluster.index_of(new).unwrap()];
    assert_eq!(node.cmd(&["GET", "{orders}"]).unwrap().as_str(), Some("1"));

    // A live migration of the slot to another master, with its keys.
    let other = cluster
        .topology()
        .unwrap()
        .into_iter()
        .find(|n| n.master && n.addr != new)
        .unwrap()
        .addr;
    set_get(&cluster, "{orders}:b", "2");
    let moved = cluster.migrate_slot(slot, other).unwrap();
    assert_eq!(moved, 2);
    assert_eq!(cluster.master_of(slot).unwrap().addr, other);
    let node = &cluster.nodes()[cluster.index_of(other).unwrap()];
    assert_eq!(
        node.cmd(&["GET", "{orders}:b"]).unwrap().as_str(),
        Some("2")
    );
    // The old owner redirects.
    let src = &cluster.nodes()[cluster.index_of(new).unwrap()];
    let e = src.cmd(&["GET", "{orders}"]).unwrap_err();
    assert!(e.to_string().contains("MOVED"), "{e}");

    // SIGKILL of a master: its replica is promoted.
    let slot = cluster.slot_of("{scans}").unwrap();
    let killed = cluster.kill_master_of(slot).unwrap();
    let promoted = cluster.wait_master_other_than(slot, killed, WAIT).unwrap();
    assert_ne!(promoted, killed);
    set_get(&cluster, "{scans}", "3");
}

#[test]
fn options_out_of_range_are_refused() {
    let e = ClusterGroup::start(ClusterOptions::default().masters(0)).unwrap_err();
    assert!(e.to_string().contains("masters"), "{e}");
}
