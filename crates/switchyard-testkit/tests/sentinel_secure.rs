//! Sentinel groups whose sentinels require a password, and groups where
//! every node and sentinel speaks TLS only on one shared CA: the group
//! starts, the testkit's own probes work, and a `SENTINEL FAILOVER` moves
//! the primary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_testkit::{
    RespConnection, SentinelGroup, SentinelOptions, TestkitError, TlsConnect,
};

const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

/// Moves the primary with `SENTINEL FAILOVER` and checks that the other
/// node took over and the data written before is there.
fn failover_moves_the_primary(group: &SentinelGroup) {
    let old = group.current_primary_addr().unwrap();
    // The write reaches the replica before it is promoted (WAIT counts
    // the writes of its own connection).
    let mut conn = group.primary().unwrap().connect().unwrap();
    conn.command(&["SET", "k", "v"]).unwrap();
    let acked = conn.command(&["WAIT", "1", "10000"]).unwrap();
    assert_eq!(acked.as_int(), Some(1));
    let new = group
        .failover_and_wait(FAILOVER_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}\n{}", group.log_tails()));
    assert_ne!(old, new);
    assert_eq!(group.primary().unwrap().addr(), new);
    let value = group.primary().unwrap().cmd(&["GET", "k"]).unwrap();
    assert_eq!(value.as_str(), Some("v"));
}

#[test]
fn sentinels_with_a_password_refuse_clients_without_it() {
    let group = SentinelGroup::start(
        SentinelOptions::default()
            .master_name("sy-auth")
            .password("node-pw")
            .sentinel_password("sentinel pw \"1\""),
    )
    .unwrap();
    for addr in group.sentinel_addrs() {
        let mut conn = RespConnection::connect(addr).unwrap();
        let reply = conn
            .command_raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sy-auth"])
            .unwrap();
        let error = reply.as_error().unwrap_or_default().to_owned();
        assert!(error.starts_with("NOAUTH"), "{reply:?}");
        let wrong = conn.auth(None, "node-pw").unwrap_err();
        assert!(matches!(wrong, TestkitError::Reply(_)), "{wrong}");
        conn.auth(None, "sentinel pw \"1\"").unwrap();
        let reply = conn
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sy-auth"])
            .unwrap();
        let port = reply.as_array().unwrap()[1].as_int().unwrap();
        assert_eq!(port, i64::from(group.nodes()[0].port()));
    }
    assert!(group.tls_files().is_none());
    assert!(group.pki().is_none());
    failover_moves_the_primary(&group);
}

#[test]
fn a_tls_group_speaks_tls_only_on_one_ca() {
    let group = SentinelGroup::start(
        SentinelOptions::default()
            .master_name("sy-tls")
            .password("node-pw")
            .sentinel_password("sentinel-pw")
            .tls(true),
    )
    .unwrap();
    let files = group.tls_files().unwrap();
    let pki = group.pki().unwrap();
    assert_eq!(files.ca_cert, pki.ca_cert());
    let trusted = TlsConnect::new(&files.ca_cert).client(files.client.clone());
    let processes = group.nodes().iter().chain(group.sentinels());
    for process in processes {
        assert_eq!(process.tls_port(), Some(process.port()));
        assert!(process.url().starts_with("rediss://"));
        // No plain port answers: a plain client gets no reply.
        let plain = RespConnection::connect_timeout(process.addr(), Duration::from_millis(500))
            .and_then(|mut c| c.command(&["PING"]));
        assert!(plain.is_err(), "{plain:?}");
        // The group's CA and client certificate reach it ...
        let mut conn = RespConnection::connect_tls(process.addr(), &trusted).unwrap();
        assert!(conn.is_tls());
        // ... and the unrelated CA does not.
        let other = TlsConnect::new(&files.other_ca_cert).client(files.client.clone());
        assert!(RespConnection::connect_tls(process.addr(), &other).is_err());
        let _ = conn.command_raw(&["PING"]).unwrap();
    }
    for addr in group.sentinel_addrs() {
        let mut conn = RespConnection::connect_tls(addr, &trusted).unwrap();
        conn.auth(None, "sentinel-pw").unwrap();
        let reply = conn
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sy-tls"])
            .unwrap();
        let port = reply.as_array().unwrap()[1].as_int().unwrap();
        assert_eq!(port, i64::from(group.nodes()[0].port()));
    }
    // The replica syncs over TLS.
    let info = group.nodes()[1].info("replication").unwrap();
    assert!(info.contains("master_link_status:up"), "{info}");
    failover_moves_the_primary(&group);
}
