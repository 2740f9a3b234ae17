//! Helpers shared by the example tests: a real `redis-server` on a free
//! loopback port (from the testkit; a missing `redis-server` fails the test
//! instead of skipping it) and URLs for it.
#![allow(dead_code)]

use switchyard_testkit::RedisServer;

/// A fresh `redis-server` on `127.0.0.1` and a free port.
pub(crate) fn redis() -> anyhow::Result<RedisServer> {
    Ok(RedisServer::start()?)
}

/// The server's URL with the adapter's scheme: `redis+streams://127.0.0.1:PORT`.
pub(crate) fn url(server: &RedisServer, scheme: &str) -> String {
    let url = server.url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    format!("{scheme}://{rest}")
}

/// An integer reply of `args` on `server`.
pub(crate) fn int(server: &RedisServer, args: &[&str]) -> anyhow::Result<i64> {
    let reply = server.cmd(args)?;
    reply
        .as_int()
        .ok_or_else(|| anyhow::anyhow!("{args:?}: expected an integer, got {reply:?}"))
}

/// The number of pending entries of `group` on the stream `key` (`XPENDING`).
pub(crate) fn pending(server: &RedisServer, key: &str, group: &str) -> anyhow::Result<i64> {
    let reply = server.cmd(&["XPENDING", key, group])?;
    reply
        .as_array()
        .and_then(|summary| summary.first())
        .and_then(|count| count.as_int())
        .ok_or_else(|| anyhow::anyhow!("XPENDING {key} {group}: unexpected reply {reply:?}"))
}
