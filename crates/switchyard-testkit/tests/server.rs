//! Tests against real `redis-server` processes (install it with
//! `apt-get install -y redis-server`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_testkit::{
    FaultProxy, Persistence, RedisOptions, RedisServer, RespConnection, RespValue, TestkitError,
    redis_server_available,
};

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn ping(addr: SocketAddr) -> Result<RespValue, TestkitError> {
    RespConnection::connect(addr)?.command(&["PING"])
}

#[test]
fn redis_server_is_installed() {
    assert!(
        redis_server_available(),
        "redis-server not found on PATH: install it with 'apt-get install -y redis-server'"
    );
}

#[test]
fn start_answers_ping_on_loopback() {
    let redis = RedisServer::start().unwrap();
    assert!(redis.addr().ip().is_loopback());
    assert_eq!(redis.host(), "127.0.0.1");
    assert_ne!(redis.port(), 0);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
    assert_eq!(ping(redis.addr()).unwrap().as_str(), Some("PONG"));
    assert!(redis.dir().is_dir());
    assert!(redis.pid().is_some());

    let version = redis.redis_version().unwrap();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{version}"
    );

    assert!(redis.cmd(&["SET", "n", "41"]).unwrap().is_ok());
    assert_eq!(redis.cmd(&["INCR", "n"]).unwrap().as_int(), Some(42));
    assert!(redis.cmd(&["GET", "missing"]).unwrap().is_null());
    let err = redis.cmd(&["NOSUCHCOMMAND"]).unwrap_err();
    assert!(err.is_reply_code("ERR"), "{err}");
}

#[test]
fn two_servers_get_different_ports() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    a.cmd(&["SET", "k", "a"]).unwrap();
    assert!(b.cmd(&["GET", "k"]).unwrap().is_null());
}

#[test]
fn restart_with_aof_keeps_data_and_port() {
    let mut redis =
        RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof)).unwrap();
    let port = redis.port();
    let old_pid = redis.pid();
    redis.cmd(&["SET", "k", "v"]).unwrap();
    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), old_pid);
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
}

#[test]
fn restart_with_rdb_keeps_data() {
    let mut redis =
        RedisServer::start_with(RedisOptions::default().persistence(Persistence::Rdb)).unwrap();
    redis.cmd(&["SET", "k", "v"]).unwrap();
    redis.restart().unwrap();
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
}

#[test]
fn restart_without_persistence_loses_data() {
    let mut redis = RedisServer::start().unwrap();
    let port = redis.port();
    redis.cmd(&["SET", "k", "v"]).unwrap();
    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    assert!(redis.cmd(&["GET", "k"]).unwrap().is_null());
}

#[test]
fn password_is_required() {
    let redis = RedisServer::start_with(RedisOptions::default().password("s3cret pw")).unwrap();
    assert_eq!(
        redis.url(),
        format!("redis://:s3cret%20pw@127.0.0.1:{}", redis.port())
    );

    let mut raw = RespConnection::connect(redis.addr()).unwrap();
    let err = raw.command(&["GET", "k"]).unwrap_err();
    assert!(err.is_reply_code("NOAUTH"), "{err}");
    let err = raw.auth(None, "wrong").unwrap_err();
    assert!(err.is_reply_code("WRONGPASS"), "{err}");
    raw.auth(None, "s3cret pw").unwrap();
    assert!(raw.command(&["GET", "k"]).unwrap().is_null());

    assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
}

#[test]
fn acl_user_has_full_access() {
    let redis = RedisServer::start_with(
        RedisOptions::default()
            .password("defaultpw")
            .acl_user("app", "apppw"),
    )
    .unwrap();
    assert_eq!(
        redis.url(),
        format!("redis://app:apppw@127.0.0.1:{}", redis.port())
    );
    assert_eq!(redis.cmd(&["ACL", "WHOAMI"]).unwrap().as_str(), Some("app"));
    redis.cmd(&["XADD", "s", "*", "f", "v"]).unwrap();
    assert_eq!(redis.cmd(&["XLEN", "s"]).unwrap().as_int(), Some(1));

    let mut raw = RespConnection::connect(redis.addr()).unwrap();
    raw.auth(None, "defaultpw").unwrap();
    assert_eq!(
        raw.command(&["ACL", "WHOAMI"]).unwrap().as_str(),
        Some("default")
    );
}

#[test]
fn options_reach_the_server() {
    let redis = RedisServer::start_with(
        RedisOptions::default()
            .maxmemory_policy("allkeys-lru")
            .arg("notify-keyspace-events", "KEA"),
    )
    .unwrap();
    let policy = redis.cmd(&["CONFIG", "GET", "maxmemory-policy"]).unwrap();
    assert_eq!(policy.as_array().unwrap()[1].as_str(), Some("allkeys-lru"));
    let events = redis
        .cmd(&["CONFIG", "GET", "notify-keyspace-events"])
        .unwrap();
    let events = events.as_array().unwrap()[1].as_str().unwrap().to_owned();
    assert!(events.contains('K') && events.contains('E'), "{events}");
}

#[test]
fn bad_config_fails_with_log_tail() {
    let err =
        RedisServer::start_with(RedisOptions::default().arg("no-such-directive", "x")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TestkitError::Startup { .. }), "{text}");
    assert!(text.contains("no-such-directive"), "{text}");
}

#[test]
fn drop_kills_the_process_and_removes_the_dir() {
    let redis = RedisServer::start().unwrap();
    let pid = redis.pid().unwrap();
    let dir = redis.dir().to_path_buf();
    let addr = redis.addr();
    assert!(process_exists(pid));
    drop(redis);
    assert!(
        wait_until(Duration::from_secs(5), || !process_exists(pid)),
        "pid {pid} still alive"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(ping(addr).is_err());
}

#[test]
fn stop_then_start_again() {
    let mut redis =
        RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof)).unwrap();
    let port = redis.port();
    let pid = redis.pid().unwrap();
    redis.cmd(&["SET", "k", "v"]).unwrap();

    redis.stop().unwrap();
    assert_eq!(redis.pid(), None);
    assert!(!redis.is_running());
    assert!(wait_until(Duration::from_secs(5), || !process_exists(pid)));
    assert!(redis.cmd(&["PING"]).is_err(), "server should be down");
    redis.stop().unwrap(); // idempotent

    redis.start_again().unwrap();
    assert!(matches!(
        redis.start_again(),
        Err(TestkitError::AlreadyRunning)
    ));
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
}

#[test]
fn kill_then_start_again() {
    let mut redis = RedisServer::start().unwrap();
    let pid = redis.pid().unwrap();
    redis.kill();
    assert!(wait_until(Duration::from_secs(5), || !process_exists(pid)));
    assert!(redis.cmd(&["PING"]).is_err());
    redis.start_again().unwrap();
    assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
}

#[test]
fn tool_paths() {
    if let Some(cli) = RedisServer::cli_path() {
        assert!(cli.ends_with("redis-cli"));
    }
    if let Some(bench) = RedisServer::benchmark_path() {
        assert!(bench.ends_with("redis-benchmark"));
    }
}

/// A multi-threaded runtime drives the proxy while this (blocking) test
/// thread plays the client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn proxy_forwards_and_cut_resets_connections() {
    let redis = RedisServer::start().unwrap();
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(redis.addr())).unwrap();
    assert!(proxy.addr().ip().is_loopback());
    assert_ne!(proxy.port(), redis.port());
    assert_eq!(proxy.upstream(), redis.addr());

    let mut conn = RespConnection::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().as_str(), Some("PONG"));
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 1));

    proxy.cut();
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 0));
    let err = conn.command(&["PING"]).unwrap_err();
    assert!(err.is_disconnect(), "expected EOF/reset, got {err}");

    // New connections still work.
    let mut fresh = RespConnection::connect(proxy.addr()).unwrap();
    assert_eq!(fresh.command(&["PING"]).unwrap().as_str(), Some("PONG"));
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 1));
    drop(fresh);
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 0));
    drop(proxy);
}

#[test]
fn proxy_stall_blocks_traffic_until_resumed() {
    let redis = RedisServer::start().unwrap();
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(redis.addr())).unwrap();

    let mut conn = RespConnection::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().as_str(), Some("PONG"));

    proxy.stall(true);
    assert!(proxy.is_stalled());
    conn.set_timeout(Duration::from_millis(300)).unwrap();
    let err = conn.command(&["PING"]).unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    assert_eq!(proxy.connections(), 1, "a stalled connection stays open");

    proxy.stall(false);
    conn.set_timeout(Duration::from_secs(5)).unwrap();
    // The held PING is delivered once the stall ends.
    assert_eq!(conn.read_reply().unwrap().as_str(), Some("PONG"));
    assert_eq!(conn.command(&["PING"]).unwrap().as_str(), Some("PONG"));
}

#[test]
fn proxy_refuses_new_connections_on_demand() {
    let redis = RedisServer::start().unwrap();
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(redis.addr())).unwrap();

    let mut existing = RespConnection::connect(proxy.addr()).unwrap();
    assert_eq!(existing.command(&["PING"]).unwrap().as_str(), Some("PONG"));

    proxy.set_refuse(true);
    let refused = RespConnection::connect(proxy.addr()).and_then(|mut c| c.command(&["PING"]));
    let err = refused.unwrap_err();
    assert!(err.is_disconnect() || err.io_kind().is_some(), "{err}");
    assert_eq!(existing.command(&["PING"]).unwrap().as_str(), Some("PONG"));

    proxy.set_refuse(false);
    assert_eq!(ping(proxy.addr()).unwrap().as_str(), Some("PONG"));
}

#[test]
fn proxy_survives_redis_restart() {
    let mut redis = RedisServer::start().unwrap();
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(redis.addr())).unwrap();
    assert_eq!(ping(proxy.addr()).unwrap().as_str(), Some("PONG"));

    redis.stop().unwrap();
    assert!(ping(proxy.addr()).is_err());
    redis.start_again().unwrap();
    assert_eq!(ping(proxy.addr()).unwrap().as_str(), Some("PONG"));
}

#[test]
fn proxy_drop_closes_everything() {
    let redis = RedisServer::start().unwrap();
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(redis.addr())).unwrap();
    let addr = proxy.addr();
    let mut conn = RespConnection::connect(addr).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().as_str(), Some("PONG"));

    drop(proxy);
    // The proxied connection is reset ...
    let mut closed = false;
    assert!(wait_until(Duration::from_secs(5), || {
        closed = closed || conn.command(&["PING"]).is_err();
        closed
    }));
    // ... and the listener is gone.
    assert!(wait_until(Duration::from_secs(5), || {
        RespConnection::connect(addr).is_err()
    }));
}
