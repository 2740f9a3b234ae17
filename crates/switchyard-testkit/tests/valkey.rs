//! The server kind: Valkey starts and answers like Redis, and
//! `SWITCHYARD_TEST_SERVER` chooses the default kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::env;
use std::process::Command;

use switchyard_testkit::{
    Persistence, RedisOptions, RedisServer, ServerKind, TestkitError, TlsOptions,
};

fn valkey(opts: RedisOptions) -> RedisServer {
    RedisServer::start_with(opts.kind(ServerKind::Valkey)).unwrap()
}

#[test]
fn valkey_is_installed() {
    assert!(
        ServerKind::Valkey.is_available(),
        "valkey-server not found on PATH: run scripts/install-deps"
    );
}

#[test]
fn valkey_kind_starts_and_answers() {
    let server = valkey(RedisOptions::default());
    assert_eq!(server.kind(), ServerKind::Valkey);
    assert!(
        server.binary().ends_with("valkey-server"),
        "{:?}",
        server.binary()
    );
    assert!(server.addr().ip().is_loopback());
    assert_eq!(server.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
    let info = server.info("server").unwrap();
    assert!(info.contains("valkey_version:"), "{info}");
    assert!(server.redis_version().is_ok());
    server.cmd(&["XADD", "s", "*", "f", "v"]).unwrap();
    assert_eq!(server.cmd(&["XLEN", "s"]).unwrap().as_int(), Some(1));

    let cli = RedisServer::cli_path_for(ServerKind::Valkey).expect("valkey-cli on PATH");
    assert!(cli.ends_with("valkey-cli"));
    let out = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{out:?}"
    );
}

#[test]
fn valkey_with_password_and_aof_keeps_data_across_restart() {
    let mut server = valkey(
        RedisOptions::default()
            .persistence(Persistence::Aof)
            .acl_user("app", "app pw"),
    );
    assert_eq!(
        server.cmd(&["ACL", "WHOAMI"]).unwrap().as_str(),
        Some("app")
    );
    server.cmd(&["SET", "k", "v"]).unwrap();
    let port = server.port();
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(server.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
}

#[test]
fn valkey_serves_tls() {
    let server = valkey(RedisOptions::default().tls(TlsOptions::default()));
    let mut conn = server.connect_tls().unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().as_str(), Some("PONG"));

    let pki = server.pki().unwrap();
    let cli = RedisServer::cli_path_for(ServerKind::Valkey).expect("valkey-cli on PATH");
    let out = Command::new(cli)
        .args(["--tls", "-h", "127.0.0.1"])
        .args(["-p", &server.tls_port().unwrap().to_string()])
        .arg("--cacert")
        .arg(pki.ca_cert())
        .arg("--cert")
        .arg(&pki.client().cert)
        .arg("--key")
        .arg(&pki.client().key)
        .arg("PING")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{out:?}"
    );
}

/// Set by [`environment_variable_chooses_the_kind`] for the child run of
/// [`default_kind_follows_the_environment`].
const EXPECT_VAR: &str = "SWITCHYARD_TESTKIT_EXPECT";

/// Starts a server with default options under whatever
/// `SWITCHYARD_TEST_SERVER` says, and checks the outcome: the kind it names
/// (redis when unset or empty), or a clear setting error for an unknown
/// value. When run by [`environment_variable_chooses_the_kind`], the
/// outcome must also be the one expected there.
#[test]
fn default_kind_follows_the_environment() {
    let outcome = match RedisServer::start() {
        Ok(server) => {
            assert_eq!(server.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
            assert_eq!(
                Ok(server.kind()),
                ServerKind::from_env().map_err(|e| e.to_string())
            );
            server.kind().name().to_owned()
        }
        Err(err) => {
            let text = err.to_string();
            assert!(matches!(err, TestkitError::InvalidSetting(_)), "{text}");
            assert!(text.contains(ServerKind::ENV_VAR), "{text}");
            assert!(text.contains("'redis' or 'valkey'"), "{text}");
            "invalid".to_owned()
        }
    };
    if let Ok(expected) = env::var(EXPECT_VAR) {
        assert_eq!(outcome, expected);
    }
}

/// Runs [`default_kind_follows_the_environment`] in a child process of this
/// test binary once per value of `SWITCHYARD_TEST_SERVER` (changing this
/// process' environment is not thread-safe).
#[test]
fn environment_variable_chooses_the_kind() {
    let exe = env::current_exe().unwrap();
    let cases: [(Option<&str>, &str); 5] = [
        (None, "redis"),
        (Some(""), "redis"),
        (Some("redis"), "redis"),
        (Some("VALKEY"), "valkey"),
        (Some("keydb"), "invalid"),
    ];
    for (value, expected) in cases {
        let mut child = Command::new(&exe);
        child
            .args(["--exact", "default_kind_follows_the_environment"])
            .args(["--test-threads", "1"])
            .env(EXPECT_VAR, expected);
        match value {
            Some(v) => child.env(ServerKind::ENV_VAR, v),
            None => child.env_remove(ServerKind::ENV_VAR),
        };
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("test result: ok. 1 passed"),
            "{value:?}: {out:?}"
        );
    }
}
