//! Redis plumbing shared by the switchyard Redis adapters
//! (`switchyard-redis-streams` and `switchyard-redis-pubsub`):
//!
//! - [`RedisConfig`]: host, port, db, ACL user and password (never shown in
//!   `Debug`, logs or errors), TLS, namespace and timeouts, parsed from a URL
//!   or built in code;
//! - [`RedisClient`]: the shared multiplexed connection that reconnects by
//!   itself, dedicated connections for blocking reads, and subscribing
//!   connections — each connect ending with a `PING` and bounded by the
//!   connect timeout, with errors such as `could not connect to redis at
//!   127.0.0.1:6390 within 2s: connection refused` (`NOAUTH`, `WRONGPASS`
//!   and `NOPERM` are not transient and say what to fix);
//! - [`classify`]: redis-rs errors as transient (I/O, LOADING, BUSY, TRYAGAIN,
//!   MASTERDOWN, MOVED, ASK, READONLY, CLUSTERDOWN, NOREPLICAS) or fatal;
//! - [`ping_health`]: a bounded health probe on an existing connection;
//! - [`denied`]: `NOPERM` recognised (also inside Lua scripts), turned into
//!   `permission denied: …` errors naming the command and the grant, and
//!   kept for `health()` (docs/security.md);
//! - [`lean`]: hand-encoded commands and flat RESP2 tokens for the hot
//!   paths, and a plain-TCP connect with `AUTH`/`SELECT`/`PING`.

mod config;
mod connect;
pub mod denied;
mod error;
pub mod lean;
mod parse;
pub mod range;

pub use config::{RedisConfig, Secret, parse_duration, validate_namespace};
pub use connect::{RedisClient, ping_health};
pub use error::{TRANSIENT_CODES, classify, code, is_transient, is_transient_code};

/// Re-export of the redis-rs version the adapters are built on.
pub use redis;
