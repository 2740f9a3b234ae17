//! Redis plumbing shared by the switchyard Redis adapters
//! (`switchyard-redis-streams` and `switchyard-redis-pubsub`):
//!
//! - [`RedisConfig`]: host, port, db, ACL user and password (never shown in
//!   `Debug`, logs or errors), TLS with its trust and identity (`tls_ca`,
//!   `tls_cert`, `tls_key`, `tls_insecure`; see [`tls`]), namespace and
//!   timeouts, parsed from a URL or built in code;
//! - [`RedisClient`]: the shared multiplexed connection that reconnects by
//!   itself, dedicated connections for blocking reads, and subscribing
//!   connections — each connect ending with a `PING` and bounded by the
//!   connect timeout, with errors such as `could not connect to redis at
//!   127.0.0.1:6390 within 2s: connection refused` (`NOAUTH`, `WRONGPASS`
//!   and `NOPERM` are not transient and say what to fix; a refused TLS
//!   certificate is a `switchyard_core::Error::Tls` with its kind);
//! - [`classify`]: redis-rs errors as transient (I/O, LOADING, BUSY, TRYAGAIN,
//!   MASTERDOWN, MOVED, ASK, READONLY, CLUSTERDOWN, NOREPLICAS) or fatal;
//! - [`ping_health`]: a bounded health probe on an existing connection;
//! - [`denied`]: `NOPERM` recognised (also inside Lua scripts), turned into
//!   `permission denied: …` errors naming the command and the grant, and
//!   kept for `health()` (docs/security.md);
//! - [`lean`]: hand-encoded commands and flat RESP2 tokens for the hot
//!   paths, and a connect with `AUTH`/`SELECT`/`PING` returning a
//!   [`lean::RedisStream`], plain TCP or TLS: the hot paths run the same
//!   code over both.

mod config;
mod connect;
pub mod denied;
mod error;
pub mod lean;
mod parse;
pub mod range;
mod stream;
pub mod tls;

pub use config::{RedisConfig, Secret, parse_duration, validate_namespace};
pub use connect::{RedisClient, ping_health};
pub use error::{TRANSIENT_CODES, classify, code, is_transient, is_transient_code};

/// Re-export of the redis-rs version the adapters are built on.
pub use redis;
